"""The gateway's settings: one frozen object per process, from flags → env → file → defaults."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import msgspec
import yaml

from gateway.errors import SettingsError

__all__ = ["ENV_PREFIX", "Settings", "load_settings"]

ENV_PREFIX = "STAGESERVE_"


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Everything the gateway reads from its environment; built once in `main()`."""

    host: str = "127.0.0.1"
    """Address uvicorn binds to."""
    port: int = 8000
    """TCP port uvicorn binds to."""
    cache_dir: str | None = None
    """Sidecar: watch `<cache_dir>/snapshot.json` (from `stageserve sync`). Embedded: where
    packages are materialized (default `$XDG_CACHE_HOME/stageserve`, else ~/.cache/stageserve)."""
    registry: str | None = None
    """Embedded mode: the registry (path or URL) the gateway syncs from itself."""
    poll_interval_s: float = 10.0
    """Embedded mode: seconds between registry polls."""
    stages: str | None = None
    """Embedded mode: comma-separated stages to follow (default: all)."""
    models: str | None = None
    """Embedded mode: comma-separated models to follow (default: all)."""
    gc_grace_s: float = 600.0
    """Embedded mode: keep unassigned packages in the cache this long before deleting them."""
    watch_registry: bool = True
    """Embedded mode: wake the sync loop when a local registry's git directory changes."""
    journal_path: str | None = None
    """Activation journal (JSON lines: when each version really started/stopped serving)."""
    default_stage: str = "prod"
    """Stage used by `POST /predict/{model}` when the query has no `stage`."""
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    """Log level of the gateway and uvicorn."""
    max_body_bytes: int = 1_048_576
    """Largest predict request body accepted (413 above it)."""
    max_rows: int = 10_000
    """Most rows accepted in one predict request (413 above it)."""
    allow_non_finite: bool = False
    """Accept null for required double/float inputs (sent to the model as NaN); off: 422."""
    retry_after_s: int = 5
    """`Retry-After` seconds sent with 503 while a stage has no loaded version."""
    retry_failed_load_s: float = 60.0
    """While a version is failed, its load is retried every this many seconds (not sooner)."""
    inference_threads: int = 4
    """Inference threads for what must not run on the event loop (slow versions, big batches)."""
    drain_s: float = 5.0
    """On SIGTERM: fail readiness at once, keep serving this long, then stop accepting."""
    shutdown_timeout_s: int = 30
    """After draining: how long in-flight requests may take before they are cut."""
    audit_path: str | None = None
    """JSON-lines audit file (rotated by size); none when unset."""
    audit_stdout: bool = False
    """Also write audit records to stdout."""
    audit_max_bytes: int = 100 * 1_048_576
    """Rotate the audit file when it grows past this size."""
    audit_backups: int = 5
    """Rotated audit files kept (`audit.jsonl.1` ... `.N`)."""
    audit_include_inputs: bool = False
    """Put the decoded inputs themselves in each audit record (off: only their sha256)."""
    audit_queue_max: int = 100_000
    """Audit records waiting for the writer before requests wait for it (never dropped)."""


_FIELDS: dict[str, Any] = {f.name: f.type for f in msgspec.structs.fields(Settings)}


def _cast(key: str, value: Any, source: str) -> Any:
    try:
        return msgspec.convert(value, type=_FIELDS[key], strict=False)
    except msgspec.ValidationError as exc:
        raise SettingsError(key, source, str(exc)) from None


def _read_file(path: Path) -> dict[str, Any]:
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


def load_settings(
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    config_file: str | Path | None = None,
) -> Settings:
    """Resolve each setting from flags (None = not given), then `STAGESERVE_*`, file, default.

    The config file comes from `config_file` or else `STAGESERVE_CONFIG`; unknown keys in it
    (and unknown flags) are errors, so a typo never silently falls back to a default.
    """
    flags = flags or {}
    environ = environ if environ is not None else {}
    if config_file is None:
        config_file = environ.get(ENV_PREFIX + "CONFIG")
    file_values = _read_file(Path(config_file)) if config_file else {}
    for key in file_values:
        if key not in _FIELDS:
            raise SettingsError(str(key), str(config_file), "unknown setting")
    values: dict[str, Any] = {}
    for key in _FIELDS:
        env_key = ENV_PREFIX + key.upper()
        if flags.get(key) is not None:
            values[key] = _cast(key, flags[key], "the command line")
        elif env_key in environ:
            values[key] = _cast(key, environ[env_key], f"environment variable {env_key}")
        elif key in file_values:
            values[key] = _cast(key, file_values[key], str(config_file))
    for key in flags:
        if key not in _FIELDS:
            raise SettingsError(key, "the command line", "unknown setting")
    settings = Settings(**values)
    _check(settings)
    return settings


def _check(settings: Settings) -> None:
    for key in ("max_body_bytes", "max_rows", "audit_max_bytes", "inference_threads"):
        if getattr(settings, key) < 1:
            raise SettingsError(key, "settings", "must be at least 1")
