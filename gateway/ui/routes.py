"""The console's routes, all under one Router at /ui, so one guard (the `read` action of the
access policy) gates every page: `ui_router(data, guards=[...])`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from importlib import resources
from typing import Any

from litestar import Response, Router, get
from litestar.params import FromPath
from litestar.types import Guard

from gateway.errors import MalformedRequestError, UnknownModelError
from gateway.telemetry.journal import parse_time
from gateway.ui.pages import ConsoleData
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


def _page(html: str) -> Response[str]:
    return Response(html, media_type="text/html", headers=_HEADERS)


def ui_router(data: ConsoleData, *, guards: Sequence[Guard] = ()) -> Router:
    renderer = Renderer()

    @get("/", sync_to_thread=False)
    def models_page(q: str = "") -> Response[str]:
        rows = data.models(data.history())
        shown = [r for r in rows if r.matches(q)] if q else rows
        return _page(renderer.render("models.html", rows=shown, total=len(rows), q=q))

    @get("/models/{model:str}", sync_to_thread=True)
    def model_page(model: FromPath[str], at: str | None = None) -> Response[str]:
        moment: datetime | None = None
        if at:
            try:
                moment = parse_time(at)
            except ValueError:
                raise MalformedRequestError(f"at={at!r} is not an ISO 8601 time") from None
        page = data.model(model, moment)
        if page is None:
            raise UnknownModelError(f"no model {model!r}", {"models": data.pool.wanted_models()})
        return _page(renderer.render("model.html", **page))

    @get("/live", sync_to_thread=False)
    def live_page(fragment: bool = False) -> Response[str]:
        context: dict[str, Any] = data.live()
        return _page(renderer.render("live_tables.html" if fragment else "live.html", **context))

    @get("/static/{name:str}", sync_to_thread=False)
    def static(name: FromPath[str]) -> Response[bytes]:
        media = _STATIC.get(name)
        if media is None:
            raise UnknownModelError(f"no console file {name!r}", {"files": sorted(_STATIC)})
        body = resources.files("gateway.ui").joinpath("static", name).read_bytes()
        return Response(
            body, media_type=media, headers={**_HEADERS, "cache-control": "max-age=300"}
        )

    return Router(
        path=UI_PREFIX,
        route_handlers=[models_page, model_page, live_page, static],
        guards=list(guards),
        include_in_schema=False,
    )
