"""`stageserve serve`: build the settings once, then run the app under uvicorn: in this
process (one worker), or in `--workers N` processes under a supervisor (gateway/workers/)."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.errors import GatewayError
from gateway.settings import ENV_PREFIX, Settings, load_settings
from gateway.telemetry.metrics import GatewayMetrics
from gateway.workers.cpus import worker_count
from registry_sync.registry.git import redact_url

if TYPE_CHECKING:
    from registry_sync.sync.loop import SyncLoop

__all__ = ["add_commands", "serve"]

log = logging.getLogger("stageserve.serve")


def add_commands(sub: Any) -> None:
    """Add `serve` to the `stageserve` parser's sub-parsers."""
    p = sub.add_parser(
        "serve",
        help="serve each stage's model version over HTTP",
        description="Serve POST /predict/{model}?stage=... from a snapshot (--cache) "
        "or a registry synced in-process (--registry). Flags beat STAGESERVE_* "
        "environment variables, which beat the --config file.",
        epilog=_environment_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--host", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="TCP port (default 8000)")
    p.add_argument("--cache", dest="cache_dir", metavar="DIR", help="watch DIR/snapshot.json")
    p.add_argument("--registry", metavar="PATH_OR_URL", help="sync from this registry in-process")
    p.add_argument("--config", metavar="FILE", help="YAML settings file (env STAGESERVE_CONFIG)")
    p.add_argument("--default-stage", help="stage when the request names none (default prod)")
    p.add_argument(
        "--default-model",
        help="model of MLflow's POST /invocations without ?model= (default: the only one served)",
    )
    p.add_argument(
        "--log-level",
        choices=["critical", "error", "warning", "info", "debug"],
        default=None,
        help="least severe JSON log lines written to stderr (default info)",
    )
    p.add_argument("--audit-path", metavar="FILE", help="JSON-lines audit file (rotated)")
    p.add_argument("--journal-path", metavar="FILE", help="activation journal (JSON lines)")
    p.add_argument(
        "--drain-s",
        type=float,
        help="on SIGTERM: fail readiness, keep serving this long, then stop (default 5)",
    )
    p.add_argument(
        "--workers",
        help="worker processes serving the port: a number, or auto (the CPUs this process "
        "may use, after its affinity and cgroup CPU quota); default 1",
    )
    p.add_argument("--poll-interval-s", type=float, help="embedded: seconds between polls")
    p.add_argument("--stages", help="embedded: comma-separated stages to follow (default all)")
    p.add_argument("--models", help="embedded: comma-separated models to follow (default all)")
    p.add_argument("--gc-grace-s", type=float, help="embedded: keep unassigned packages this long")
    p.add_argument(
        "--no-watch",
        dest="watch_registry",
        action="store_const",
        const=False,
        default=None,
        help="embedded: poll only, do not watch a local registry for changes",
    )
    p.set_defaults(handler=serve)


def _environment_help() -> str:
    """Every setting's environment variable and default, for `serve --help`."""
    import msgspec

    lines = [
        "environment: every setting is also read from STAGESERVE_<KEY> (below the flags, above",
        "the --config file, or STAGESERVE_CONFIG); mappings are JSON. Keys and their defaults:",
    ]
    for field in msgspec.structs.fields(Settings):
        default = field.default_factory() if field.default is msgspec.NODEFAULT else field.default
        shown = (
            "unset"
            if default is None
            else str(default).lower()
            if isinstance(default, bool)
            else default
        )
        lines.append(f"  {ENV_PREFIX}{field.name.upper():<32} {shown}")
    lines.append("See the README's configuration table for what each one does.")
    return "\n".join(lines)


def serve(args: argparse.Namespace) -> int:
    flags = {
        key: getattr(args, key, None)
        for key in (
            "host",
            "port",
            "cache_dir",
            "registry",
            "default_stage",
            "default_model",
            "log_level",
            "audit_path",
            "drain_s",
            "journal_path",
            "poll_interval_s",
            "stages",
            "models",
            "gc_grace_s",
            "watch_registry",
            "workers",
        )
    }
    settings = load_settings(flags, environ=os.environ, config_file=args.config)
    return run(settings)


def default_cache_dir() -> Path:
    """Where embedded mode materializes packages when --cache is not given."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "stageserve"


def _registry_source(settings: Settings, metrics: GatewayMetrics) -> SyncLoop:
    """Embedded mode (`--registry`): the sync loop runs in this process, feeding the pool,
    its metrics on the app's registry so /metrics shows them too."""
    from gateway.embedded_sync import sync_loop_for

    return sync_loop_for(settings, _cache_dir(settings), metrics.registry)


def _past_packages(settings: Settings, source: Any) -> Any:
    """Embedded mode: packages of past versions (`?as_of=`) straight from the registry the
    sync loop reads, under the same trust policy; sidecar mode asks the sync (None here)."""
    opener = getattr(source.sync.reader, "registry", None) if source is not None else None
    if opener is None:
        return None
    from registry_sync.sync.past import RegistryPastPackages

    return RegistryPastPackages(opener, _cache_dir(settings), gc_grace_s=settings.gc_grace_s)


def _cache_dir(settings: Settings) -> Path:
    return Path(settings.cache_dir) if settings.cache_dir else default_cache_dir()


def run(settings: Settings) -> int:
    from registry_sync.logs import configure_logging

    configure_logging(settings.log_level)
    if settings.cache_dir is None and settings.registry is None:
        raise GatewayError("nothing to serve: give --cache DIR (sidecar) or --registry PATH_OR_URL")
    workers = worker_count(settings.workers)
    if workers > 1:
        from gateway.workers.supervisor import supervise

        return supervise(settings, workers, _cache_dir(settings))
    return _run_alone(settings)


def _run_alone(settings: Settings) -> int:
    """One process: the sync loop (embedded), the app and uvicorn, all in this one."""
    from gateway.app import create_app
    from gateway.server import bind, http_server
    from gateway.telemetry.journal import ActivationJournal
    from registry_sync.sync.snapshot import STATUS_FILE

    # Bound before anything else happens: a busy port is one clear line, not a sync and model
    # loads that end in uvicorn's exit 3.
    listener = bind(settings.host, settings.port)
    metrics = GatewayMetrics()
    source = _registry_source(settings, metrics) if settings.registry else None
    journal = ActivationJournal(Path(settings.journal_path)) if settings.journal_path else None
    app = create_app(
        settings,
        past_packages=_past_packages(settings, source),
        state_source=source,
        metrics=metrics,
        activation_listeners=[journal] if journal is not None else [],
        sync_status_path=_cache_dir(settings) / STATUS_FILE,
        sync_status=(lambda: source.status) if source is not None else None,
        # A package that fails to load is re-hashed by the sync and repaired if corrupt.
        on_load_failure=(lambda e: source.request_full_check(e.package_path))
        if source is not None
        else None,
    )
    log.info(
        "serving on http://%s:%d (%s)",
        settings.host,
        settings.port,
        f"registry {redact_url(settings.registry)}"
        if settings.registry
        else f"cache {settings.cache_dir}",
    )
    server = http_server(settings, app, metrics)
    try:
        server.run_until_stopped(sockets=[listener])
    finally:
        if journal is not None:
            journal.close()
    return 0
