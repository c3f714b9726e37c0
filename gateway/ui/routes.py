"""The console's routes, all under one Router at /ui. With access control on, the Router's one
guard authenticates every request (401 without a credential); each page then shows only the
models and stages the caller may `read` (403/404 for a model page it may not)."""

from __future__ import annotations

import asyncio
import math
from datetime import datetime
from importlib import resources
from typing import Any

from litestar import Request, Response, Router, get
from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler
from litestar.params import FromPath, FromQuery

from gateway.access import Access, Principal
from gateway.errors import MalformedRequestError, UnknownModelError
from gateway.errors import shown as shown_name
from gateway.history.query import performance_window
from gateway.telemetry.journal import parse_time
from gateway.ui.pages import ConsoleData, MayRead
from gateway.ui.performance import nice_bucket_s
from gateway.ui.render import Renderer

__all__ = ["UI_PREFIX", "ui_router"]

UI_PREFIX = "/ui"
# Pages load nothing from elsewhere and run no inline script; nobody may frame them.
_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; style-src-attr 'unsafe-inline'; "
        "img-src 'self'; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}
_STATIC = {
    "console.css": "text/css",
    "console.js": "text/javascript",
    "favicon.svg": "image/svg+xml",
}


# The live page's performance window unless the query names one (the page links others).
_LIVE_WINDOW_S = 86400.0


def _page(html: str) -> Response[str]:
    return Response(html, media_type="text/html", headers=_HEADERS)


_PRINCIPAL = "console_principal"


def _everything(model: str, stage: str | None) -> bool:
    return True


def ui_router(data: ConsoleData, *, access: Access | None = None) -> Router:
    renderer = Renderer()

    def authenticate(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        """The one check every console request passes: who is asking."""
        if access is not None:
            principal = access.authenticate_headers(connection.scope["headers"])
            connection.scope.setdefault("state", {})[_PRINCIPAL] = principal

    def reader(request: Request[Any, Any, Any]) -> MayRead:
        if access is None:
            return _everything
        principal: Principal = request.scope["state"][_PRINCIPAL]
        policy = access.policy

        def may_read(model: str, stage: str | None) -> bool:
            if stage is None:
                return policy.allows_some_stage(principal, "read", model)
            return policy.allows(principal, "read", model, stage)

        return may_read

    def check_model(request: Request[Any, Any, Any], model: str) -> None:
        if access is not None:
            principal: Principal = request.scope["state"][_PRINCIPAL]
            access.check_model(principal, "read", model, data.pool.wanted_models())

    @get("/", sync_to_thread=False)
    def models_page(request: Request[Any, Any, Any], q: FromQuery[str] = "") -> Response[str]:
        rows = data.models(data.history(), reader(request))
        shown = [r for r in rows if r.matches(q)] if q else rows
        return _page(renderer.render("models.html", rows=shown, total=len(rows), q=q))

    @get("/models/{model:str}")
    async def model_page(
        request: Request[Any, Any, Any], model: FromPath[str], at: FromQuery[str | None] = None
    ) -> Response[str]:
        check_model(request, model)
        moment: datetime | None = None
        if at:
            try:
                moment = parse_time(at)
            except ValueError:
                raise MalformedRequestError(
                    f"at={shown_name(at)!r} is not an ISO 8601 time"
                ) from None
        may_read = reader(request)
        # Files (registry history, journal) are read off the event loop.
        page = await asyncio.to_thread(data.model, model, moment, may_read)
        if page is None:
            raise UnknownModelError(
                f"no model {shown_name(model)!r}", {"models": data.pool.wanted_models()}
            )
        # Performance on the timeline's own axis, so a change in quality lines up with the
        # swap that caused it.
        timeline = page["timeline"]
        since = math.floor(timeline.start.timestamp())
        until = math.ceil(timeline.end.timestamp())
        page["performance"] = await data.performance(
            [model],
            since=since,
            until=until,
            bucket_s=nice_bucket_s(until - since),
            may_read=may_read,
        )
        return _page(renderer.render("model.html", **page))

    @get("/live")
    async def live_page(
        request: Request[Any, Any, Any], fragment: FromQuery[bool] = False
    ) -> Response[str]:
        may_read = reader(request)
        context: dict[str, Any] = data.live(may_read)
        if fragment:  # the traffic tables, refreshed every few seconds: counters only
            return _page(renderer.render("live_tables.html", **context))
        # `window`, `bucket`, `from`, `to` as GET /models/{m}/performance takes them.
        since, until, bucket_s = performance_window(
            dict(request.query_params), default_window_s=_LIVE_WINDOW_S
        )
        context["performance"] = await data.performance(
            list(data.pool.wanted_models()), since=since, until=until, bucket_s=bucket_s,
            may_read=may_read,
        )  # fmt: skip
        return _page(renderer.render("live.html", **context))

    @get("/static/{name:str}", sync_to_thread=False)
    def static(name: FromPath[str]) -> Response[bytes]:
        media = _STATIC.get(name)
        if media is None:
            raise UnknownModelError(
                f"no console file {shown_name(name)!r}", {"files": sorted(_STATIC)}
            )
        body = resources.files("gateway.ui").joinpath("static", name).read_bytes()
        return Response(
            body, media_type=media, headers={**_HEADERS, "cache-control": "max-age=300"}
        )

    return Router(
        path=UI_PREFIX,
        route_handlers=[models_page, model_page, live_page, static],
        guards=[authenticate] if access is not None else [],
        include_in_schema=False,
    )
