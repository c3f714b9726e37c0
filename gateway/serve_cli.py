"""`stageserve serve`: build the settings once, then run the app under uvicorn (one worker)."""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from gateway.errors import GatewayError
from gateway.metrics import GatewayMetrics
from gateway.settings import Settings, load_settings
from gateway.snapshot_source import DesiredStateSource

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
    )
    p.add_argument("--host", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="TCP port (default 8000)")
    p.add_argument("--cache", dest="cache_dir", metavar="DIR", help="watch DIR/snapshot.json")
    p.add_argument("--registry", metavar="PATH_OR_URL", help="sync from this registry in-process")
    p.add_argument("--config", metavar="FILE", help="YAML settings file")
    p.add_argument("--default-stage", help="stage when the request names none (default prod)")
    p.add_argument(
        "--log-level", choices=["critical", "error", "warning", "info", "debug"], default=None
    )
    p.add_argument("--audit-path", metavar="FILE", help="JSON-lines audit file (rotated)")
    p.set_defaults(handler=serve)


def serve(args: argparse.Namespace) -> int:
    flags = {
        key: getattr(args, key, None)
        for key in (
            "host",
            "port",
            "cache_dir",
            "registry",
            "default_stage",
            "log_level",
            "audit_path",
        )
    }
    settings = load_settings(flags, environ=os.environ, config_file=args.config)
    return run(settings)


def _registry_source(settings: Settings, metrics: GatewayMetrics) -> DesiredStateSource:
    """Embedded mode (`--registry`): the in-process sync loop (lead's registry_sync.sync)."""
    if importlib.util.find_spec("registry_sync.sync") is None:
        raise GatewayError("--registry needs registry_sync.sync, which is not installed")
    from registry_sync import sync

    embedded = getattr(sync, "embedded_source", None)
    if embedded is None:
        raise GatewayError(
            "embedded registry sync (--registry) is not available in this build; "
            "run `stageserve sync` and `stageserve serve --cache DIR` instead"
        )
    source: DesiredStateSource = embedded(settings, registry=metrics.registry)
    return source


def _redact(location: str) -> str:
    """A registry URL without its userinfo (tokens are often passed as https://x:TOKEN@...)."""
    parts = urlsplit(location)
    if parts.username is None and parts.password is None:
        return location
    host = parts.hostname or ""
    netloc = f"***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def run(settings: Settings) -> int:
    import uvicorn

    from gateway.app import create_app
    from gateway.logs import configure_logging

    configure_logging(settings.log_level)
    if settings.cache_dir is None and settings.registry is None:
        raise GatewayError("nothing to serve: give --cache DIR (sidecar) or --registry PATH_OR_URL")
    metrics = GatewayMetrics()
    source = _registry_source(settings, metrics) if settings.registry else None
    app = create_app(settings, state_source=source, metrics=metrics)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        log_config=None,
        # Per-request access lines would cost more than the prediction; the audit log has them.
        access_log=False,
        server_header=False,
        lifespan="on",
        timeout_graceful_shutdown=30,
    )
    log.info(
        "serving on http://%s:%d (%s)",
        settings.host,
        settings.port,
        f"registry {_redact(settings.registry)}"
        if settings.registry
        else f"cache {settings.cache_dir}",
    )
    uvicorn.Server(config).run()
    return 0
