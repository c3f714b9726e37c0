"""Build a RegistrySync for a registry location (local path or git URL)."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from registry_sync.errors import SettingsError
from registry_sync.registry.trust.policy import TrustRule
from registry_sync.sync.history import HISTORY_FILE, HistoryRecorder
from registry_sync.sync.loop import SyncLoop
from registry_sync.sync.metrics import SyncMetrics
from registry_sync.sync.registry_sync import RegistryReader, RegistrySync

__all__ = [
    "build_loop",
    "build_sync",
    "default_cache_dir",
    "split_list",
    "watch_path_for",
]

log = logging.getLogger(__name__)

# Where older versions kept a remote registry's mirror: inside the cache, which a sidecar
# shares with the gateway, with the URL (and its credentials) in the mirror's git config.
_LEGACY_MIRROR_DIRNAME = ".registry-mirror"


def default_cache_dir() -> Path:
    """`$XDG_CACHE_HOME/stageserve`, else ~/.cache/stageserve: where embedded `serve` syncs
    to when not told otherwise (and where `registry which` looks for an MLflow history)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "stageserve"


def build_sync(
    location: str,
    cache_dir: Path,
    *,
    stages: Sequence[str] | None = None,
    models: Sequence[str] | None = None,
    gc_grace_s: float = 600.0,
    trust: Sequence[TrustRule] = (),
    mlflow_stages: Mapping[str, str] | None = None,
    mirror_dir: Path | None = None,
) -> RegistrySync:
    """`mirror_dir`: where a remote git registry is mirrored (default: one folder per URL
    under `$XDG_CACHE_HOME/stageserve/mirrors/`, never in the cache)."""
    from registry_sync.mlflow.location import is_mlflow_uri
    from registry_sync.registry.remote import default_mirror_dir
    from registry_sync.registry.trust import TrustPolicy
    from registry_sync.sync.reader import open_reader

    _remove_legacy_mirror(cache_dir)
    reader: RegistryReader
    if is_mlflow_uri(location):
        from registry_sync.mlflow.source import MlflowRegistry

        if trust:
            # Refused, not ignored: a policy that silently stopped applying would be worse.
            raise SettingsError(
                "trust_policy",
                "settings",
                "signed assignments are git tags; an MLflow "
                "registry has none (restrict who may set aliases in MLflow instead)",
            )
        # Credentials (MLFLOW_TRACKING_TOKEN, ...) are read here, once, from the environment.
        reader = MlflowRegistry.open(
            location, cache_dir, environ=os.environ, stage_map=mlflow_stages
        )
    else:
        policy = TrustPolicy(trust) if trust else None
        mirror = mirror_dir or default_mirror_dir(location)
        reader = open_reader(location, mirror_dir=mirror, trust=policy)
    return RegistrySync.create(
        reader, cache_dir, stages=stages, models=models, gc_grace_s=gc_grace_s
    )


def _remove_legacy_mirror(cache_dir: Path) -> None:
    legacy = cache_dir / _LEGACY_MIRROR_DIRNAME
    if legacy.is_dir():
        log.warning("removing %s: a registry mirror does not belong in the cache", legacy)
        shutil.rmtree(legacy, ignore_errors=True)


def build_loop(
    location: str,
    cache_dir: Path,
    *,
    stages: str | None,
    models: str | None,
    gc_grace_s: float,
    poll_interval_s: float,
    watch: bool,
    metrics: SyncMetrics | None,
    trust: Sequence[TrustRule] = (),
    mlflow_stages: Mapping[str, str] | None = None,
    mirror_dir: str | None = None,
) -> SyncLoop:
    """The sync loop both modes run (sidecar `stageserve sync`, embedded `serve --registry`);
    `stages` and `models` are comma-separated lists as flags and env give them."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    sync = build_sync(
        location,
        cache_dir,
        stages=split_list(stages),
        models=split_list(models),
        gc_grace_s=gc_grace_s,
        trust=trust,
        mlflow_stages=mlflow_stages,
        mirror_dir=Path(mirror_dir) if mirror_dir else None,
    )
    return SyncLoop(
        sync,
        cache_dir,
        poll_interval_s=poll_interval_s,
        watch_path=watch_path_for(location) if watch else None,
        metrics=metrics,
        history=HistoryRecorder(
            cache_dir / HISTORY_FILE, sync.reader, stages=sync.stages, models=sync.models
        ),
    )


def watch_path_for(location: str) -> Path | None:
    """The git directory of a local registry (where new tags land), or None for a URL."""
    path = Path(location)
    if "://" in location or not path.is_dir():
        return None
    try:
        out = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "--absolute-git-dir"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return Path(out.stdout.strip())


def split_list(value: str | None) -> list[str] | None:
    """ "dev, prod" -> ["dev", "prod"]; empty or None -> None (meaning: all)."""
    items = [v.strip() for v in (value or "").split(",") if v.strip()]
    return items or None
