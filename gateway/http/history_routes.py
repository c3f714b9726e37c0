"""History over HTTP: `POST /feedback/{model}` (outcomes) and `GET /models/{model}/performance`
(quality per version over time). Neither is on the predict path."""

from __future__ import annotations

import time
from typing import Any

import msgspec
from litestar import Request, get, post
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath

from gateway.access import Access, Principal
from gateway.errors import (
    InputValidationError,
    MalformedRequestError,
    PayloadTooLargeError,
    UnknownModelError,
    UnsupportedMediaTypeError,
    shown,
)
from gateway.history.feedback import Feedback, FeedbackBody
from gateway.history.performance import parse_duration_s, performance
from gateway.history.store import GatewayHistory
from gateway.http.request_io import media_type
from gateway.pool.model_pool import ModelPool
from registry_sync.history.events import parse_time

__all__ = ["history_routes"]

_DEFAULT_WINDOW_S = 7 * 86400.0
_MAX_BUCKETS = 2000
_LATEST_S = 253402300799.0  # 9999-12-31T23:59:59Z
_body_decoder = msgspec.json.Decoder(FeedbackBody)


def history_routes(
    pool: ModelPool,
    history: GatewayHistory,
    feedback: Feedback,
    *,
    access: Access | None,
    max_body_bytes: int,
    max_items: int,
) -> list[HTTPRouteHandler]:
    def caller(request: Request[Any, Any, Any]) -> Principal | None:
        return access.authenticate_headers(request.scope["headers"]) if access else None

    @post("/feedback/{model:str}", status_code=200)
    async def post_feedback(
        model: FromPath[str], request: Request[Any, Any, Any]
    ) -> dict[str, Any]:
        principal = caller(request)
        mt = media_type(request.headers.get("content-type", "").encode() or None)
        if mt is not None and mt != b"application/json":
            raise UnsupportedMediaTypeError(
                "content-type must be application/json", {"expected": "application/json"}
            )
        body = await request.body()
        if len(body) > max_body_bytes:
            raise PayloadTooLargeError(
                f"request body of {len(body)} bytes is over the limit of {max_body_bytes}",
                {"max_body_bytes": max_body_bytes},
            )
        try:
            parsed = _body_decoder.decode(body)
        except msgspec.ValidationError as exc:
            raise InputValidationError("$", str(exc), "shape") from None
        except msgspec.DecodeError:
            raise MalformedRequestError("the body is not JSON") from None
        items, batch = parsed.items(max_items)
        return await feedback.submit(model, items, principal, batch=batch)

    @get("/models/{model:str}/performance")
    async def get_performance(
        model: FromPath[str], request: Request[Any, Any, Any]
    ) -> dict[str, Any]:
        principal = caller(request)
        if access is not None and principal is not None:
            access.check_model(principal, "read", model, pool.wanted_models())
        reader = history.need_reader()
        since, until, bucket_s = _window(dict(request.query_params))
        current = [lv for lv in pool.loaded_versions() if lv.model == model]
        signature = list(current[0].manifest.signature.outputs) if current else None
        report = await history.run(
            lambda: performance(
                reader, model, since=since, until=until, bucket_s=bucket_s, outputs=signature
            )
        )
        if not report.versions and model not in pool.wanted_models():
            raise UnknownModelError(
                f"no model {shown(model)!r} is served, and none was in the window",
                {"models": pool.wanted_models()},
            )
        return msgspec.to_builtins(report)  # type: ignore[no-any-return]

    return [post_feedback, get_performance]


def _window(query: dict[str, Any]) -> tuple[float, float, float]:
    """(since, until, bucket_s) from `window` (a duration ending now) or `from`/`to` (ISO
    8601), and `bucket` (a duration; default 1h up to a 2-day window, else 1d)."""
    try:
        until = parse_time(query["to"]).timestamp() if query.get("to") else time.time()
        if query.get("from"):
            since = parse_time(query["from"]).timestamp()
        else:
            since = until - (
                parse_duration_s(query["window"]) if query.get("window") else _DEFAULT_WINDOW_S
            )
        span = until - since
        bucket_s = (
            parse_duration_s(query["bucket"])
            if query.get("bucket")
            else 3600.0
            if span <= 2 * 86400
            else 86400.0
        )
    except ValueError as exc:
        raise InputValidationError("query", str(exc), "shape") from None
    if span <= 0:
        raise InputValidationError("query", "`from` must be before `to`", "shape")
    if since < 0 or until > _LATEST_S:
        raise InputValidationError("query", "the window must lie between 1970 and 9999", "shape")
    if span / bucket_s > _MAX_BUCKETS:
        raise InputValidationError(
            "query.bucket", f"more than {_MAX_BUCKETS} buckets in the window; use a larger one"
        )
    return since, until, bucket_s
