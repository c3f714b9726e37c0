"""`GET /metrics`: prometheus-client's own ASGI exposition of the app's registry.

It picks the format from `Accept` (OpenMetrics when the scraper asks, else the text format
0.0.4 with one `charset`), gzips when `Accept-Encoding` allows, and honours `?name[]=`.
"""

from __future__ import annotations

from litestar import asgi
from litestar.handlers import ASGIRouteHandler
from litestar.types import Receive, Scope, Send
from prometheus_client import make_asgi_app

from gateway.access import Access
from gateway.telemetry.metrics import GatewayMetrics
from registry_sync.sync.exposition import WithoutCreated

__all__ = ["metrics_route"]


def metrics_route(metrics: GatewayMetrics, access: Access | None = None) -> ASGIRouteHandler:
    """With `access.metrics_auth`, a scrape needs a credential allowed the `metrics` action."""
    exposition = make_asgi_app(WithoutCreated(metrics.registry))

    @asgi("/metrics", copy_scope=False)
    async def prometheus(scope: Scope, receive: Receive, send: Send) -> None:
        if access is not None and access.metrics_auth:
            access.check_metrics(access.authenticate_headers(scope["headers"]))
        await exposition(scope, receive, send)

    return prometheus
