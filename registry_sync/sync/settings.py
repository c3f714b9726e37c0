"""The sync's settings (`stageserve sync`, and the embedded sync inside `serve`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import msgspec

from registry_sync.registry.trust.policy import TrustRule
from registry_sync.settings_layers import load_layered

__all__ = [
    "SYNC_JSON_FIELDS",
    "LogLevel",
    "SyncSettings",
    "history_requests_dir",
    "load_sync_settings",
]

LogLevel = Literal["critical", "error", "warning", "info", "debug"]


class SyncSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What registry sync reads; `gateway.settings.Settings` extends it (embedded mode runs
    the same sync in-process), so one settings file serves both containers of a pod."""

    registry: str | None = None
    """The registry (a path or a git URL) to follow: required by `sync`; for `serve`, it
    selects embedded mode (the gateway syncs from it itself)."""
    cache_dir: str | None = None
    """Where packages are materialized and `snapshot.json` is written. `serve` without a
    registry (sidecar mode) watches `<cache_dir>/snapshot.json`; embedded `serve` defaults it
    to `$XDG_CACHE_HOME/stageserve`, else ~/.cache/stageserve."""
    mirror_dir: str | None = None
    """A remote registry's local git mirror (sync only; holds no credential). Default:
    `$XDG_CACHE_HOME/stageserve/mirrors/<name>-<hash>`, one per URL. Never inside a cache a
    gateway shares: on Kubernetes the sync gets its own emptyDir for it."""
    poll_interval_s: float = 10.0
    """Seconds between registry polls (±10 % jitter)."""
    stages: str | None = None
    """Comma-separated stages to follow (default: all)."""
    models: str | None = None
    """Comma-separated models to follow (default: all)."""
    gc_grace_s: float = 600.0
    """Keep unassigned packages in the cache this long before deleting them."""
    mlflow_stages: dict[str, str] | None = None
    """An MLflow registry: which alias (`@champion`) or legacy stage (`Production`) feeds which
    stage, e.g. `{"@champion": "prod", "@challenger": "staging"}`. Default: each alias is the
    stage of its name, `Production` is `prod`, `Staging` is `staging`."""
    watch_registry: bool = True
    """Wake the sync loop when a local registry's git directory changes (else poll only)."""
    log_level: LogLevel = "info"
    """Log level (JSON lines on stderr)."""
    sync_metrics_port: int | None = None
    """`sync` only: serve its Prometheus metrics on this port (embedded mode shows them on the
    gateway's /metrics)."""
    sync_metrics_host: str = "127.0.0.1"
    """`sync` only: the address for `sync_metrics_port`."""
    sync_metrics_tokens_file: str | None = None
    """`sync` only: /metrics on `sync_metrics_port` needs `Authorization: Bearer <token>`, a
    token whose sha256 this file lists (one per line; `sha256sum` output; a mounted Secret,
    re-read when it changes). /healthz stays open."""
    history_requests_dir: str | None = None
    """Sidecar mode: the folder (shared by both containers, writable by both) where the
    gateway asks the sync for packages of past versions (`?as_of=` requests); default
    `<cache_dir>/history-requests`."""
    trust_policy: list[TrustRule] = msgspec.field(default_factory=list)
    """Protected stages and whose signatures count there: in a stage a rule covers, only
    assignments signed by an allowed signer are followed (see the README's Security). Its
    files (allowed_signers, keys) come from the sync's own mounts, never from the registry.
    JSON in the environment."""


def load_sync_settings(
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    config_file: str | Path | None = None,
) -> SyncSettings:
    """Flags → `STAGESERVE_*` → file → defaults. Keys of the file that are not the sync's are
    `serve`'s (one file per pod) and are skipped here; `serve` refuses unknown keys."""
    return load_layered(
        SyncSettings,
        flags,
        environ,
        config_file,
        foreign_file_keys_ok=True,
        json_fields=SYNC_JSON_FIELDS,
    )


# Lists of structs and mappings: an environment variable gives them as one JSON value
# (STAGESERVE_MLFLOW_STAGES='{"@champion": "prod"}').
SYNC_JSON_FIELDS = frozenset({"trust_policy", "mlflow_stages"})


def history_requests_dir(settings: SyncSettings, cache_dir: Path) -> Path:
    """Where as-of package requests go (both sides compute it the same way)."""
    if settings.history_requests_dir:
        return Path(settings.history_requests_dir)
    return cache_dir / "history-requests"
