"""The uvicorn server around one app: its listening socket, the edge protocol, the drain.

Shared by `stageserve serve` with one process (gateway/serve_cli.py) and by each worker of a
multi-process server (gateway/workers/).
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

from gateway.drain import DrainingServer
from gateway.edge.limits import EdgeLimits, fit_to_fd_limit
from gateway.errors import GatewayError
from gateway.settings import Settings
from gateway.telemetry.metrics import GatewayMetrics

if TYPE_CHECKING:
    from litestar import Litestar

    from gateway.edge.direct import DirectLane
    from gateway.edge.protocol import BoundedHttpToolsProtocol

__all__ = ["bind", "http_server"]


def bind(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A listening socket bound as uvicorn would bind it; a busy port is one clear error.

    `reuse_port`: several sockets on one port (SO_REUSEPORT), one per worker process; the
    kernel spreads new connections over them (a shared socket would let whichever worker
    wakes first take every connection of a burst)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        reason = exc.strerror or str(exc)
        raise GatewayError(
            f"cannot listen on {host}:{port}: {reason} (is another server on that port? "
            "choose one with --port or STAGESERVE_PORT)"
        ) from None
    sock.set_inheritable(True)
    return sock


def _edge(settings: Settings, lane: DirectLane | None) -> type[BoundedHttpToolsProtocol]:
    """uvicorn's httptools protocol with the edge's limits (see gateway/edge/), answering the
    predict routes itself (`lane`, gateway/edge/direct.py)."""
    from gateway.edge.protocol import EdgeCounters, bounded_protocol

    limits = fit_to_fd_limit(
        EdgeLimits(
            max_header_bytes=settings.max_header_bytes,
            max_headers=settings.max_headers,
            header_timeout_s=settings.header_timeout_s,
            body_timeout_s=settings.body_timeout_s,
            max_connections=settings.max_connections,
            retry_after_s=settings.retry_after_s,
        )
    )
    return bounded_protocol(limits, EdgeCounters(), lane)


def http_server(settings: Settings, app: Litestar, metrics: GatewayMetrics) -> DrainingServer:
    """The server for `app`, with the edge's metrics on the app's registry."""
    import uvicorn

    from gateway.app import gateway_of
    from gateway.edge.protocol import EdgeCollector, sweep

    edge = _edge(settings, gateway_of(app).lane)
    config = uvicorn.Config(
        app,
        http=edge,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        log_config=None,
        # Per-request access lines would cost more than the prediction; the audit log has them.
        access_log=False,
        server_header=False,
        # Client addresses are not used (audit records carry request ids, never addresses),
        # so uvicorn's X-Forwarded-For middleware would be work on every request for nothing.
        proxy_headers=False,
        lifespan="on",
        timeout_graceful_shutdown=settings.shutdown_timeout_s,
    )
    server = DrainingServer(
        config,
        gateway_of(app).drain,
        settings.drain_s,
        every_second=lambda s: sweep(s.server_state.connections),
    )
    metrics.registry.register(
        EdgeCollector(edge.counters, lambda: len(server.server_state.connections))
    )
    return server
