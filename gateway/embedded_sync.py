"""Embedded mode's sync loop (`serve --registry`), built from registry_sync's public pieces.

One process serving runs it in-process, feeding its pool; a `--workers N` server runs it in
the parent, whose snapshot every worker follows. Either way it writes `<cache>/snapshot.json`
and `sync-status.json`, so a restart in sidecar mode sees the same state.
"""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry

from gateway.settings import Settings
from registry_sync.sync.loop import SyncLoop

__all__ = ["sync_loop_for"]


def sync_loop_for(settings: Settings, cache_dir: Path, registry: CollectorRegistry) -> SyncLoop:
    """The loop for `settings.registry`, its metrics (`SyncMetrics`) on `registry`."""
    from registry_sync.sync.metrics import SyncMetrics
    from registry_sync.sync.setup import build_loop

    assert settings.registry is not None
    return build_loop(
        settings.registry,
        cache_dir,
        stages=settings.stages,
        models=settings.models,
        gc_grace_s=settings.gc_grace_s,
        poll_interval_s=settings.poll_interval_s,
        watch=settings.watch_registry,
        metrics=SyncMetrics(registry),
        trust=settings.trust_policy,
        mlflow_stages=settings.mlflow_stages,
        mirror_dir=settings.mirror_dir,
    )
