"""Settings from flags → `STAGESERVE_*` environment → YAML file → defaults, for any Struct.

`stageserve serve` (gateway.settings.Settings) and `stageserve sync`
(registry_sync.sync.settings.SyncSettings) resolve their settings here, so one settings file
(a ConfigMap mounted into both containers of a pod) configures both processes.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import yaml

from registry_sync.errors import SettingsError

__all__ = ["CONFIG_ENV", "ENV_PREFIX", "load_layered", "read_settings_file"]

ENV_PREFIX = "STAGESERVE_"
CONFIG_ENV = ENV_PREFIX + "CONFIG"

S = TypeVar("S", bound=msgspec.Struct)


def read_settings_file(path: Path) -> dict[str, Any]:
    """The YAML mapping in `path` ({} for an empty file); errors name the file."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SettingsError("config", str(path), f"cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise SettingsError("config", str(path), f"not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingsError("config", str(path), "must be a mapping of setting names to values")
    return data


def load_layered(
    cls: type[S],
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    config_file: str | Path | None = None,
    *,
    json_fields: Collection[str] = (),
    foreign_file_keys_ok: bool = False,
) -> S:
    """Resolve each field of `cls` from flags (None = not given), then `STAGESERVE_<KEY>`,
    then the file, then the field's default.

    The file comes from `config_file`, else `STAGESERVE_CONFIG`. Unknown flags are errors,
    and so are unknown keys in the file, so a typo never silently falls back to a default;
    unless `foreign_file_keys_ok`: the sync reads the pod's shared file, whose other keys are
    `serve`'s (and `serve`, which knows every key, refuses typos). `json_fields` are mappings:
    the environment or a flag gives them as one JSON object.
    """
    fields: dict[str, Any] = {f.name: f.type for f in msgspec.structs.fields(cls)}
    flags = flags or {}
    environ = environ if environ is not None else {}
    if config_file is None:
        config_file = environ.get(CONFIG_ENV)
    file_values = read_settings_file(Path(config_file)) if config_file else {}
    if not foreign_file_keys_ok:
        for key in file_values:
            if key not in fields:
                raise SettingsError(str(key), str(config_file), "unknown setting")
    for key in flags:
        if key not in fields:
            raise SettingsError(key, "the command line", "unknown setting")
    values: dict[str, Any] = {}
    for key, kind in fields.items():
        env_key = ENV_PREFIX + key.upper()
        if flags.get(key) is not None:
            value, source = flags[key], "the command line"
        elif env_key in environ:
            value, source = environ[env_key], f"environment variable {env_key}"
        elif key in file_values:
            value, source = file_values[key], str(config_file)
        else:
            continue
        values[key] = _cast(key, value, kind, source, key in json_fields)
    return cls(**values)


def _cast(key: str, value: Any, kind: Any, source: str, is_json: bool) -> Any:
    try:
        if is_json and isinstance(value, str | bytes):
            value = msgspec.json.decode(value)
        return msgspec.convert(value, type=kind, strict=False)
    except msgspec.DecodeError as exc:
        raise SettingsError(key, source, f"not a JSON object: {exc}") from None
    except msgspec.ValidationError as exc:
        raise SettingsError(key, source, str(exc)) from None
