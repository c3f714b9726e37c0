"""`GET /metrics`: prometheus-client's own ASGI exposition of the app's registry.

It picks the format from `Accept` (OpenMetrics when the scraper asks, else the text format
0.0.4 with one `charset`), gzips when `Accept-Encoding` allows, and honours `?name[]=`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from litestar import asgi
from litestar.handlers import ASGIRouteHandler
from litestar.types import Receive, Scope, Send
from prometheus_client import make_asgi_app

from gateway.access import Access
from gateway.telemetry.merge import Family, MergedCollector
from gateway.telemetry.metrics import GatewayMetrics
from registry_sync.sync.exposition import WithoutCreated

__all__ = ["metrics_route"]


def metrics_route(
    metrics: GatewayMetrics,
    access: Access | None = None,
    others: Callable[[], Awaitable[list[Family]]] | None = None,
) -> ASGIRouteHandler:
    """With `access.metrics_auth`, a scrape needs a credential allowed the `metrics` action.
    `others` (with --workers N): every other process's families, merged into this one's."""
    local = WithoutCreated(metrics.registry)
    exposition = make_asgi_app(local)

    @asgi("/metrics", copy_scope=False)
    async def prometheus(scope: Scope, receive: Receive, send: Send) -> None:
        if access is not None and access.metrics_auth:
            access.check_metrics(access.authenticate_headers(scope["headers"]))
        if others is None:
            await exposition(scope, receive, send)
            return
        merged = MergedCollector(local, await others())
        await make_asgi_app(merged)(scope, receive, send)

    return prometheus
