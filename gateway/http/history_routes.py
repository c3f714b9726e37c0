"""History over HTTP: `POST /feedback/{model}` (outcomes) and `GET /models/{model}/performance`
(quality per version over time). Neither is on the predict path."""

from __future__ import annotations

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
from gateway.history.query import model_performance, performance_window
from gateway.history.store import GatewayHistory
from gateway.http.request_io import media_type
from gateway.pool.model_pool import ModelPool

__all__ = ["history_routes"]

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
        since, until, bucket_s = performance_window(dict(request.query_params))
        report = await model_performance(
            history, pool, model, since=since, until=until, bucket_s=bucket_s
        )
        if not report.versions and model not in pool.wanted_models():
            raise UnknownModelError(
                f"no model {shown(model)!r} is served, and none was in the window",
                {"models": pool.wanted_models()},
            )
        return msgspec.to_builtins(report)  # type: ignore[no-any-return]

    return [post_feedback, get_performance]
