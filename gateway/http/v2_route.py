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
from litestar import Response, get
from litestar.handlers import ASGIRouteHandler, HTTPRouteHandler, asgi
from litestar.types import Receive, Scope, Send

from gateway.errors import MethodNotAllowedError, RequestError, UnknownModelError
from gateway.http.predict_errors import send_error
from gateway.http.predict_route import PredictRoute
from gateway.http.request_io import stage_of
from gateway.http.v2_protocol import V2Request, decode_v2, encode_v2_response, v2_metadata
from gateway.pool.model_pool import ModelPool
from gateway.pool.route_table import Route
from gateway.schema.request_schema import InputBatch

__all__ = ["V2Body", "v2_routes"]

_JSON = [(b"content-type", b"application/json")]


class V2Body:
    """The V2 inference request/response body format for the predict route."""

    usage = "POST /v2/models/{model}/infer"

    def __init__(self) -> None:
        self._encode = msgspec.json.Encoder().encode

    def decode(self, route: Route, body: bytes) -> tuple[InputBatch, Any]:
        request, batch = decode_v2(route.loaded.schema, body)
        return batch, request

    def encode(self, route: Route, rid: str, predictions: list[Any], context: Any) -> bytes:
        request: V2Request = context
        lv = route.loaded
        return self._encode(
            encode_v2_response(
                lv.schema,
                model=route.model,
                version=lv.version,
                request_id=request.id or rid,
                stage=route.stage,
                digest=lv.digest,
                predictions=predictions,
            )
        )


def v2_routes(pool: ModelPool, predict: PredictRoute) -> list[HTTPRouteHandler | ASGIRouteHandler]:
    body_format = V2Body()

    async def models(scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        parts = scope["path"].strip("/").split("/")
        query = scope["query_string"]
        stage = (stage_of(query) if query else "") or predict.default_stage
        model = parts[0]
        pinned = parts[2] if len(parts) >= 3 and parts[1] == "versions" else None
        action = parts[-1] if len(parts) in (2, 4) else ""
        try:
            if pinned is not None:
                stage = _stage_serving(pool, model, pinned)
            if action == "infer":
                await predict.serve(
                    scope, receive, send, model=model, stage=stage, started=started,
                    body_format=body_format, version=pinned,
                )  # fmt: skip
                return
            if scope["method"] != "GET":  # type: ignore[typeddict-item]
                raise MethodNotAllowedError(scope["method"], ("GET",))  # type: ignore[typeddict-item]
            await _send_json(send, 200, _describe(pool, model, stage, action))
        except RequestError as exc:
            await send_error(send, exc, predict.ids.keep_or_new(None), predict.retry_after_s)

    @get("/v2", sync_to_thread=False)
    def server_metadata() -> dict[str, Any]:
        return {"name": "stageserve", "version": _version(), "extensions": []}

    @get("/v2/health/live", sync_to_thread=False)
    def live() -> dict[str, bool]:
        return {"live": True}

    @get("/v2/health/ready", sync_to_thread=False)
    def ready() -> Response[dict[str, bool]]:
        ok, _ = pool.ready()
        return Response({"ready": ok}, status_code=200 if ok else 503)

    mount = asgi("/v2/models", is_mount=True, copy_scope=False, name="v2-models")(models)
    return [server_metadata, live, ready, mount]


def _stage_serving(pool: ModelPool, model: str, version: str) -> str:
    for stage, route in sorted(pool.routes.get(model, {}).items()):
        if route.loaded.version == version:
            return stage
    served = sorted({r.loaded.version for r in pool.routes.get(model, {}).values()})
    raise UnknownModelError(
        f"no stage of {model!r} serves {version}", {"model": model, "served": served}
    )


def _describe(pool: ModelPool, model: str, stage: str, action: str) -> dict[str, Any]:
    if action not in ("", "ready"):
        raise UnknownModelError(
            "no such route; see GET /v2/models/{model}, .../ready, POST .../infer",
            {"models": pool.wanted_models()},
        )
    stages = pool.routes.get(model)
    if not stages:
        raise UnknownModelError(f"no model {model!r}", {"models": pool.wanted_models()})
    route = stages.get(stage) or next(iter(stages.values()))
    if action == "ready":
        return {"name": model, "ready": True}
    lv = route.loaded
    versions = sorted({r.loaded.version for r in stages.values()})
    return v2_metadata(lv.schema, model=model, versions=versions, engine=lv.engine)


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    payload = msgspec.json.encode(body)
    headers = [*_JSON, (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload, "more_body": False})


def _version() -> str:
    try:
        return version("stageserve")
    except PackageNotFoundError:
        return "unknown"
