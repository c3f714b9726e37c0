"""Send `/predict/...` (and `/v2/models/...`) straight to their handlers, past Litestar's
per-request layers.

The predict route stays a Litestar ASGI route (routing, the route table, and the fallback when
a root path is in play all go through Litestar), but a request to it would also pass the
app-wide exception middleware, the router (host check, path normalisation, route lookup) and
the route's scope copy: ~20 µs of a ~70 µs in-process request on this machine (measured with
the numbers in the issue 3 report). The predict handler catches every exception itself, so
none of those layers has work to do for it. Everything else is served by Litestar unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping

from litestar import Litestar
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send

from gateway.http.predict_route import PredictRoute

__all__ = ["PREDICT_PREFIX", "V2_MODELS_PREFIX", "install_fast_lane"]

PREDICT_PREFIX = "/predict/"
# The V2 routes under a mount that, like predict, catches every exception itself (infer goes
# through PredictRoute.serve; metadata and readiness answer their own errors).
V2_MODELS_PREFIX = "/v2/models/"


def install_fast_lane(
    app: Litestar, route: PredictRoute, mounts: Mapping[str, str] | None = None
) -> None:
    """Wrap `app.asgi_handler` (what `Litestar.__call__` awaits after setting up the scope).

    `/predict/...` goes to the predict handler; a path under a prefix of `mounts` goes to the
    handler of the mount route of that name, with the path the mount would see (the prefix cut
    to its last "/")."""
    inner = app.asgi_handler
    handle = route.handle
    cut = len(PREDICT_PREFIX) - 1
    lanes: list[tuple[str, int, ASGIApp]] = []
    for prefix, name in (mounts or {}).items():
        index = app.get_handler_index_by_name(name)
        if index is None:
            raise ValueError(f"no route named {name!r} to send {prefix} to")
        lanes.append((prefix, len(prefix) - 1, index["handler"].fn))

    async def dispatch(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP and not scope.get("root_path"):
            path = scope["path"]
            if path.startswith(PREDICT_PREFIX):
                scope["path"] = path[cut:]  # what the mounted route would see: "/<model>"
                await handle(scope, receive, send)
                return
            for prefix, prefix_cut, handler in lanes:
                if path.startswith(prefix):
                    scope["path"] = path[prefix_cut:]
                    await handler(scope, receive, send)
                    return
        await inner(scope, receive, send)

    app.asgi_handler = dispatch
