"""`/v2/...`: the Open Inference Protocol (KServe V2), so MLServer/KServe/Triton clients work.

`POST /v2/models/{model}/infer` predicts with the version serving the default stage (or
`?stage=`), `POST /v2/models/{model}/versions/{version}/infer` with that exact version (if some
stage serves it). Both run through the predict route (same validation, metrics, audit,
shadow, version headers); only the body format differs. Metadata and health follow the
protocol: `GET /v2`, `/v2/health/live|ready`, `/v2/models/{model}[/versions/{v}][/ready]`.
"""

from __future__ import annotations

import time
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import msgspec
from litestar import Request, Response, get
from litestar.exceptions import HTTPException
from litestar.handlers import ASGIRouteHandler, HTTPRouteHandler, asgi
from litestar.types import Receive, Scope, Send

from gateway.edge.direct import DirectExchange
from gateway.errors import (
    MethodNotAllowedError,
    ModelNotReadyError,
    RequestError,
    UnknownModelError,
    UnsupportedMediaTypeError,
    not_started,
    shown,
)
from gateway.http.body_format import Headers, RequestHead
from gateway.http.predict_errors import send_error
from gateway.http.predict_route import PredictRoute
from gateway.http.request_io import stage_of
from gateway.http.v2_protocol import V2Request, decode_v2, encode_v2_response, v2_metadata
from gateway.pool.model_pool import ModelPool
from gateway.pool.route_table import Route
from gateway.schema.request_schema import InputBatch

__all__ = [
    "V2_MODELS_PREFIX",
    "V2_MODELS_ROUTE",
    "V2Body",
    "V2Infer",
    "v2_infer_target",
    "v2_routes",
]

V2_MODELS_ROUTE = "v2-models"  # the mount's route name (the fast lane finds it by name)
V2_MODELS_PREFIX = "/v2/models/"

_JSON = [(b"content-type", b"application/json")]
_JSON_HEADERS: Headers = ((b"content-type", b"application/json"),)
_OCTETS = b"application/octet-stream"
# What a V2 body may be declared as: JSON; the binary extension's framing (a JSON header of
# Inference-Header-Content-Length bytes, or the whole body when that header is absent; what
# tritonclient.http.aio and kserve declare); or nothing (what tritonclient.http sends).
_MEDIA_TYPES = (None, b"application/json", _OCTETS)


class V2Body:
    """The V2 inference request/response body format for the predict route."""

    usage = "POST /v2/models/{model}/infer"

    def check_media_type(self, media_type: bytes | None) -> None:
        if media_type not in _MEDIA_TYPES:
            raise UnsupportedMediaTypeError(
                "content-type must be application/json or application/octet-stream",
                {"expected": ["application/json", "application/octet-stream"]},
            )

    def decode(self, route: Route, body: bytes, head: RequestHead) -> tuple[InputBatch, Any]:
        request, batch = decode_v2(route.loaded.schema, body, head.header_length)
        return batch, request

    def encode(
        self, route: Route, rid: str, predictions: list[Any], context: Any
    ) -> tuple[bytes, Headers]:
        request: V2Request = context
        lv = route.loaded
        response = encode_v2_response(
            lv.schema,
            model=route.model,
            version=lv.version,
            request_id=request.id or rid,
            stage=route.stage,
            digest=lv.digest,
            predictions=predictions,
            request=request,
        )
        if response.header_length is None:
            return response.body, _JSON_HEADERS
        return response.body, (
            (b"content-type", _OCTETS),
            (b"inference-header-content-length", str(response.header_length).encode()),
        )

    def error_body(self, code: str, message: str, details: dict[str, Any]) -> bytes:
        # The protocol's error shape: clients (tritonclient, kserve) read one string.
        del code, details
        return _encode_error(message)


def v2_infer_target(rest: str) -> tuple[str, str | None] | None:
    """(model, pinned version or None) of an infer path under /v2/models
    (`/{model}/infer`, `/{model}/versions/{version}/infer`); None for any other path."""
    parts = rest.strip("/").split("/")
    if len(parts) not in (2, 4) or parts[-1] != "infer":
        return None
    return parts[0], parts[2] if len(parts) == 4 and parts[1] == "versions" else None


class V2Infer:
    """`POST /v2/models/{model}[/versions/{version}]/infer` through the predict route."""

    def __init__(self, predict: PredictRoute) -> None:
        self.predict = predict
        self.body_format = V2Body()
        self._cut = len(V2_MODELS_PREFIX) - 1

    def direct(self, exchange: DirectExchange) -> None:
        """On the direct lane (gateway/http/direct_lane.py)."""
        started = time.perf_counter()
        target = v2_infer_target(exchange.path[self._cut :])
        assert target is not None  # the lane takes only infer paths
        model, pinned = target
        query = exchange.query
        stage = "" if pinned else stage_of(query, self.predict.default_stage)
        self.predict.serve_direct(
            exchange, self.body_format, model=model, stage=stage, started=started, version=pinned
        )

    async def serve(
        self, scope: Scope, receive: Receive, send: Send, model: str, pinned: str | None
    ) -> None:
        started = time.perf_counter()
        query = scope["query_string"]
        as_of = self.predict.as_of
        if query and as_of is not None and b"as_of=" in query:
            await as_of.serve(
                scope, receive, send, model=model, started=started, body_format=self.body_format,
                version=pinned,
            )  # fmt: skip
            return
        stage = stage_of(query, self.predict.default_stage)
        await self.predict.serve(
            scope, receive, send, model=model, stage="" if pinned else stage,
            started=started, body_format=self.body_format, version=pinned,
        )  # fmt: skip


def v2_routes(
    pool: ModelPool, predict: PredictRoute, infer: V2Infer
) -> list[HTTPRouteHandler | ASGIRouteHandler]:
    body_format = infer.body_format

    async def models(scope: Scope, receive: Receive, send: Send) -> None:
        target = v2_infer_target(scope["path"])
        if target is not None:
            await infer.serve(scope, receive, send, *target)
            return
        parts = scope["path"].strip("/").split("/")
        query = scope["query_string"]
        stage = stage_of(query, predict.default_stage)
        model = parts[0]
        pinned = parts[2] if len(parts) >= 3 and parts[1] == "versions" else None
        action = parts[-1] if len(parts) in (2, 4) else ""
        try:
            known = pool.wanted_models
            if predict.access is not None:
                access, principal = (
                    predict.access,
                    predict.access.authenticate_headers(scope["headers"]),
                )
                if pinned is not None:
                    access.check_model(principal, "read", model, pool.wanted_models())
                else:
                    access.check(principal, "read", model, stage, pool.wanted_models)
                known = lambda: access.visible(principal, pool.wanted_models())  # noqa: E731
            if scope["method"] != "GET":  # type: ignore[typeddict-item]
                raise MethodNotAllowedError(scope["method"], ("GET",))  # type: ignore[typeddict-item]
            status, body, extra = _describe(pool, model, stage, action, pinned, known=known())
            await _send_json(send, status, body, extra)
        except RequestError as exc:
            rid = predict.ids.next()
            await send_error(send, exc, rid, predict.retry_after_s, fmt=body_format)

    handlers: dict[int | type[Exception], Any] = {HTTPException: _litestar_error}

    @get("/v2", sync_to_thread=False, exception_handlers=handlers)
    def server_metadata() -> dict[str, Any]:
        return {"name": "stageserve", "version": _version(), "extensions": ["binary_tensor_data"]}

    @get("/v2/health/live", sync_to_thread=False, exception_handlers=handlers)
    def live() -> dict[str, bool]:
        return {"live": True}

    @get("/v2/health/ready", sync_to_thread=False, exception_handlers=handlers)
    def ready() -> Response[dict[str, bool]]:
        ok, _ = pool.ready()
        return Response({"ready": ok}, status_code=200 if ok else 503)

    mount = asgi("/v2/models", is_mount=True, copy_scope=False, name=V2_MODELS_ROUTE)(models)
    return [server_metadata, live, ready, mount]


def _encode_error(message: str) -> bytes:
    return msgspec.json.encode({"error": message})


def _litestar_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    # Litestar's own 404/405 on the /v2 routes, in the protocol's shape.
    return Response(
        _encode_error(exc.detail if exc.status_code in (404, 405) else "bad request"),
        status_code=exc.status_code,
        media_type="application/json",
        headers=dict(exc.headers or {}),
    )


def _describe(
    pool: ModelPool,
    model: str,
    stage: str,
    action: str,
    pinned: str | None,
    *,
    known: dict[str, list[str]],
) -> tuple[int, dict[str, Any] | None, list[tuple[bytes, bytes]]]:
    """Model metadata (`GET .../{model}[/versions/{v}]`) or readiness (`.../ready`) of the
    version the stage serves (or the pinned version); a model or stage without a loaded
    version is not ready (503, what KServe answers)."""
    if action not in ("", "ready"):
        raise UnknownModelError(
            "no such route; see GET /v2/models/{model}, .../ready, POST .../infer",
            {"models": known},
        )
    if pool.desired is None:
        if action == "ready":
            return 503, None, []
        raise not_started()
    stages = pool.routes.get(model, {})
    if not stages and not pool.wanted_stages(model):
        raise UnknownModelError(f"no model {shown(model)!r}", {"models": known})
    route = _route_for(pool, model, stage, pinned)
    if action == "ready":
        # The protocol's answer is the status alone, with an empty body: clients read only the
        # status (tritonclient.http.aio does not even read the body, and would leave its
        # connection unreleased). The version answering is in x-model-version.
        if route is None:
            return 503, None, []
        return 200, None, [(b"x-model-version", route.loaded.version.encode())]
    if route is None:
        raise ModelNotReadyError(
            f"{model} has no loaded version for stage {stage!r}", {"model": model, "stage": stage}
        )
    lv = route.loaded
    versions = sorted({r.loaded.version for r in stages.values()})
    return 200, v2_metadata(lv.schema, model=model, versions=versions, engine=lv.engine), []


def _route_for(pool: ModelPool, model: str, stage: str, pinned: str | None) -> Route | None:
    stages = pool.routes.get(model, {})
    if pinned is None:
        if stage not in stages and stage not in pool.wanted_stages(model):
            raise UnknownModelError(
                f"model {shown(model)!r} has no stage {shown(stage)!r}",
                {"model": shown(model), "stages": pool.wanted_stages(model)},
            )
        return stages.get(stage)
    for _, route in sorted(stages.items()):
        if route.loaded.version == pinned:
            return route
    served = sorted({r.loaded.version for r in stages.values()})
    raise UnknownModelError(
        f"no stage of {shown(model)!r} serves {shown(pinned)}",
        {"model": shown(model), "served": served},
    )


async def _send_json(
    send: Send, status: int, body: dict[str, Any] | None, extra: list[tuple[bytes, bytes]]
) -> None:
    """`body` as JSON, or no body at all (None)."""
    payload = msgspec.json.encode(body) if body is not None else b""
    kind = _JSON if body is not None else []
    headers = [*kind, (b"content-length", str(len(payload)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload, "more_body": False})


def _version() -> str:
    try:
        return version("stageserve")
    except PackageNotFoundError:
        return "unknown"
