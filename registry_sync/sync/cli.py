"""`stageserve sync`: the registry-sync sidecar (and, with --once, the init container)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from registry_sync.errors import SettingsError
from registry_sync.logs import configure_logging
from registry_sync.sync.http_server import Health, start_sync_http_server
from registry_sync.sync.loop import SyncLoop
from registry_sync.sync.metrics import SyncMetrics
from registry_sync.sync.metrics_tokens import MetricsTokens
from registry_sync.sync.past import RegistryPastPackages, serve_requests
from registry_sync.sync.settings import SyncSettings, history_requests_dir, load_sync_settings
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
            "`stageserve serve --cache` to follow. Runs until SIGTERM, or once with --once. "
            "Flags beat STAGESERVE_* environment variables, which beat the --config file "
            "(the same file `serve` reads; keys that are serve's are skipped here)."
        ),
    )
    p.add_argument(
        "--registry",
        metavar="PATH_OR_URL",
        help="registry git repository: a local path or a git URL (env STAGESERVE_REGISTRY)",
    )
    p.add_argument(
        "--cache",
        dest="cache_dir",
        metavar="DIR",
        help="cache folder for packages and the snapshot (env STAGESERVE_CACHE_DIR)",
    )
    p.add_argument(
        "--mirror-dir",
        metavar="DIR",
        help="where a remote registry is mirrored (no credentials are stored in it; default "
        "$XDG_CACHE_HOME/stageserve/mirrors/<name>-<hash>; env STAGESERVE_MIRROR_DIR). Keep it "
        "out of a cache the gateway shares",
    )
    p.add_argument("--config", metavar="FILE", help="YAML settings file (env STAGESERVE_CONFIG)")
    p.add_argument(
        "--poll-interval-s",
        type=float,
        help="seconds between registry polls, ±10%% jitter (default 10; env "
        "STAGESERVE_POLL_INTERVAL_S)",
    )
    p.add_argument(
        "--stages",
        help="comma-separated stages to follow (default: all; env STAGESERVE_STAGES)",
    )
    p.add_argument(
        "--models",
        help="comma-separated models to follow (default: all; env STAGESERVE_MODELS)",
    )
    p.add_argument(
        "--gc-grace-s",
        type=float,
        help="keep unassigned packages this long before deleting them (default 600; env "
        "STAGESERVE_GC_GRACE_S)",
    )
    p.add_argument(
        "--no-watch",
        dest="watch_registry",
        action="store_const",
        const=False,
        default=None,
        help="do not watch a local registry for changes; poll only (env "
        "STAGESERVE_WATCH_REGISTRY=false)",
    )
    p.add_argument(
        "--log-level",
        choices=["critical", "error", "warning", "info", "debug"],
        help="log level of the JSON log lines on stderr (default info; env STAGESERVE_LOG_LEVEL)",
    )
    p.add_argument(
        "--once",
        action="store_true",
        help="sync once and exit: 0 when everything assigned was materialized, 1 otherwise",
    )
    p.add_argument(
        "--metrics-port",
        dest="sync_metrics_port",
        type=int,
        help="serve the sync metrics on this port (env STAGESERVE_SYNC_METRICS_PORT)",
    )
    p.add_argument(
        "--metrics-host",
        dest="sync_metrics_host",
        help="address for --metrics-port (default 127.0.0.1; env STAGESERVE_SYNC_METRICS_HOST)",
    )
    p.add_argument(
        "--metrics-tokens-file",
        dest="sync_metrics_tokens_file",
        metavar="FILE",
        help="/metrics needs a bearer token whose sha256 this file lists (env "
        "STAGESERVE_SYNC_METRICS_TOKENS_FILE)",
    )
    p.set_defaults(handler=run)


_FLAGS = (
    "registry",
    "cache_dir",
    "mirror_dir",
    "poll_interval_s",
    "stages",
    "models",
    "gc_grace_s",
    "watch_registry",
    "log_level",
    "sync_metrics_port",
    "sync_metrics_host",
    "sync_metrics_tokens_file",
)


def run(args: argparse.Namespace) -> int:
    flags = {key: getattr(args, key, None) for key in _FLAGS}
    settings = load_sync_settings(flags, environ=os.environ, config_file=args.config)
    if not settings.registry:
        raise SettingsError("registry", "sync", "required: --registry or STAGESERVE_REGISTRY")
    if not settings.cache_dir:
        raise SettingsError("cache_dir", "sync", "required: --cache or STAGESERVE_CACHE_DIR")
    configure_logging(settings.log_level)
    # Read before anything starts: a missing or broken token file stops the sync, never
    # leaves /metrics open (`--once` serves no metrics: the init container needs no file).
    tokens = None
    if settings.sync_metrics_tokens_file and not args.once:
        tokens = MetricsTokens(settings.sync_metrics_tokens_file)
    cache = Path(settings.cache_dir)
    registry = CollectorRegistry()
    loop = build_loop(
        settings.registry,
        cache,
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
    log.info(
        "sync %s -> %s (%s)",
        loop.sync.reader.display_location,
        cache,
        "once" if args.once else f"every {settings.poll_interval_s:g} s",
    )
    if args.once:
        return _run_once(loop, cache)
    if settings.sync_metrics_port is not None:
        start_sync_http_server(
            settings.sync_metrics_host,
            settings.sync_metrics_port,
            registry,
            _health(loop),
            tokens,
        )
    return asyncio.run(_run_forever(loop, history_requests_dir(settings, cache), settings))


def _health(loop: SyncLoop) -> Health:
    def check() -> tuple[bool, dict[str, Any]]:
        stalled_s = loop.stalled_for_s()
        return stalled_s == 0, {
            "registry": loop.sync.reader.display_location,
            "last_success_at": loop.last_success_at,
            "consecutive_failures": loop.failures,
            "stalled_s": round(stalled_s, 1),
        }

    return check


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


async def _run_forever(loop: SyncLoop, requests_dir: Path, settings: SyncSettings) -> int:
    """Until SIGTERM: a crash here would put the pod in a crash loop and stop every model's
    updates, so whatever escapes the loop is logged, counted and the loop started again."""
    stop = asyncio.Event()
    running = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        running.add_signal_handler(sig, stop.set)
    # The gateway's as-of requests for past versions' packages (it has no registry access);
    # a git registry's reader can answer them.
    opener = getattr(loop.sync.reader, "registry", None)
    answering = None
    if opener is not None:
        past = RegistryPastPackages(opener, loop.cache_dir, gc_grace_s=settings.gc_grace_s)
        answering = asyncio.create_task(serve_requests(past, requests_dir, stop), name="history")
    while not stop.is_set():
        try:
            async for state in loop.updates(stop):
                log.info(
                    "snapshot: %s",
                    ", ".join(f"{e.model}#{e.stage}={e.version}" for e in state.entries)
                    or "nothing",
                )
        except Exception as exc:
            log.exception("sync loop stopped; starting it again")
            loop.record_loop_failure(f"{type(exc).__name__}: {exc}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), loop.next_delay_s())
    stop.set()
    if answering is not None:
        await answering
    return 0
