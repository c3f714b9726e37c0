"""`stageserve sync`: the registry-sync sidecar (and, with --once, the init container)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server

from registry_sync.sync.loop import SyncLoop
from registry_sync.sync.metrics import SyncMetrics
from registry_sync.sync.setup import build_loop
from registry_sync.sync.snapshot import SNAPSHOT_FILE, STATUS_FILE, write_snapshot

__all__ = ["add_commands"]

log = logging.getLogger("stageserve.sync")


def add_commands(sub: Any) -> None:
    p = sub.add_parser(
        "sync",
        help="follow a registry and materialize assigned versions into a cache (sidecar)",
        description=(
            "Resolve every (model, stage) of the registry, materialize and verify each "
            "assigned package under --cache, and write <cache>/snapshot.json atomically for "
            "`stageserve serve --cache` to follow. Runs until SIGTERM, or once with --once."
        ),
    )
    add_sync_options(p)
    p.add_argument(
        "--once",
        action="store_true",
        help="sync once and exit: 0 when everything assigned was materialized, 1 otherwise",
    )
    p.add_argument(
        "--metrics-port",
        type=int,
        default=_env_int("STAGESERVE_SYNC_METRICS_PORT"),
        help="serve the sync metrics on this port (env STAGESERVE_SYNC_METRICS_PORT)",
    )
    p.add_argument(
        "--metrics-host",
        default=os.environ.get("STAGESERVE_SYNC_METRICS_HOST", "127.0.0.1"),
        help="address for --metrics-port (default 127.0.0.1)",
    )
    p.set_defaults(handler=run)


def add_sync_options(p: argparse.ArgumentParser) -> None:
    """Options the sidecar shares with embedded mode."""
    p.add_argument(
        "--registry",
        default=os.environ.get("STAGESERVE_REGISTRY"),
        required="STAGESERVE_REGISTRY" not in os.environ,
        help="registry git repository: a local path or a git URL (env STAGESERVE_REGISTRY)",
    )
    p.add_argument(
        "--cache",
        type=Path,
        default=os.environ.get("STAGESERVE_CACHE_DIR"),
        required="STAGESERVE_CACHE_DIR" not in os.environ,
        help="cache folder for packages and the snapshot (env STAGESERVE_CACHE_DIR)",
    )
    p.add_argument(
        "--poll-interval-s",
        type=float,
        default=_env_float("STAGESERVE_POLL_INTERVAL_S", 10.0),
        help="seconds between registry polls, ±10%% jitter (env STAGESERVE_POLL_INTERVAL_S)",
    )
    p.add_argument(
        "--stages",
        default=os.environ.get("STAGESERVE_STAGES"),
        help="comma-separated stages to follow (default: all) (env STAGESERVE_STAGES)",
    )
    p.add_argument(
        "--models",
        default=os.environ.get("STAGESERVE_MODELS"),
        help="comma-separated models to follow (default: all) (env STAGESERVE_MODELS)",
    )
    p.add_argument(
        "--gc-grace-s",
        type=float,
        default=_env_float("STAGESERVE_GC_GRACE_S", 600.0),
        help="keep unassigned packages this long before deleting them (env STAGESERVE_GC_GRACE_S)",
    )
    p.add_argument(
        "--no-watch",
        action="store_true",
        help="do not watch a local registry for changes; poll only",
    )


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    cache: Path = args.cache
    registry = CollectorRegistry()
    loop = build_loop(
        args.registry,
        cache,
        stages=args.stages,
        models=args.models,
        gc_grace_s=args.gc_grace_s,
        poll_interval_s=args.poll_interval_s,
        watch=not args.no_watch,
        metrics=SyncMetrics(registry),
    )
    if args.once:
        return _run_once(loop, cache)
    if args.metrics_port is not None:
        start_http_server(args.metrics_port, addr=args.metrics_host, registry=registry)
    return asyncio.run(_run_forever(loop))


def _run_once(loop: SyncLoop, cache: Path) -> int:
    state = asyncio.run(loop.poll())
    if state is None:
        print(f"sync failed: see {cache / STATUS_FILE}", file=sys.stderr)
        return 1
    write_snapshot(state, cache / SNAPSHOT_FILE)
    for entry in state.entries:
        print(f"{entry.model}#{entry.stage} -> {entry.version} ({entry.package_path})")
    for err in state.errors:
        print(f"error: {err.model}#{err.stage} {err.version}: {err.message}", file=sys.stderr)
    return 1 if state.errors else 0


async def _run_forever(loop: SyncLoop) -> int:
    stop = asyncio.Event()
    running = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        running.add_signal_handler(sig, stop.set)
    async for state in loop.updates(stop):
        log.info(
            "snapshot written: %s",
            ", ".join(f"{e.model}#{e.stage}={e.version}" for e in state.entries) or "nothing",
        )
    return 0


def _env_float(key: str, default: float) -> float:
    raw = os.environ.get(key)
    return float(raw) if raw else default


def _env_int(key: str) -> int | None:
    raw = os.environ.get(key)
    return int(raw) if raw else None
