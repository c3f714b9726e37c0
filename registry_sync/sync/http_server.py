"""The sync sidecar's HTTP port: `/metrics` (prometheus-client's exposition) and `/healthz`.

`/healthz` answers 200 while the sync loop keeps starting and finishing polls (a registry
outage is not a failure: the loop keeps polling, with backoff) and 503 once it is stuck (a
hung fetch), so the kubelet restarts the container. There is no readiness: the sidecar never
takes traffic, and a pod must not turn unready because the registry is away. With
`sync_metrics_tokens_file`, `/metrics` needs `Authorization: Bearer <token>` (401 otherwise),
as the gateway's does with `metrics_auth`; `/healthz` stays open for the kubelet.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import msgspec
from prometheus_client import make_wsgi_app
from prometheus_client.registry import CollectorRegistry

from registry_sync.sync.exposition import WithoutCreated
from registry_sync.sync.metrics_tokens import MetricsTokens

__all__ = ["Health", "start_sync_http_server"]

# (healthy, details) — details are shown in the body: no secrets, the registry is redacted.
Health = Callable[[], tuple[bool, dict[str, Any]]]
StartResponse = Callable[..., Any]


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Probes and scrapes every few seconds would flood the JSON log."""


_UNAUTHORIZED = b'{"error": {"code": "unauthorized", "message": "a bearer token is required"}}'


def _app(
    registry: CollectorRegistry, health: Health, tokens: MetricsTokens | None = None
) -> Callable[..., Iterable[bytes]]:
    metrics = make_wsgi_app(WithoutCreated(registry))

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            ok, details = health()
            body = msgspec.json.encode({"status": "ok" if ok else "stalled", **details})
            start_response(
                "200 OK" if ok else "503 Service Unavailable",
                [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
            )
            return [body]
        if path == "/metrics":
            if tokens is not None and not tokens.accepts(environ.get("HTTP_AUTHORIZATION")):
                start_response(
                    "401 Unauthorized",
                    [
                        ("Content-Type", "application/json"),
                        ("Content-Length", str(len(_UNAUTHORIZED))),
                        ("WWW-Authenticate", 'Bearer realm="stageserve-sync"'),
                    ],
                )
                return [_UNAUTHORIZED]
            result: Iterable[bytes] = metrics(environ, start_response)
            return result
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
        return [b"not found: /metrics and /healthz only\n"]

    return app


def start_sync_http_server(
    host: str,
    port: int,
    registry: CollectorRegistry,
    health: Health,
    tokens: MetricsTokens | None = None,
) -> WSGIServer:
    """Serve in a daemon thread; `shutdown()` stops it. `tokens`: what /metrics accepts."""
    server = make_server(host, port, _app(registry, health, tokens), _Server, _QuietHandler)
    threading.Thread(target=server.serve_forever, name="sync-http", daemon=True).start()
    return server
