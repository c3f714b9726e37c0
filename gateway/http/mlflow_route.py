"""MLflow's scoring routes, so a client of `mlflow models serve` switches by changing the URL.

`POST /invocations` predicts with the model named by `?model=` (else `default_model`, else
the only model served) and the stage `?stage=` (else the default stage), through the predict
route like every predict request (validation, metrics, audit, shadow, version headers, and
the one place per-request checks hook in: `PredictRoute.serve`). `GET /ping` and `/health` are
200 once that model's stage has a loaded version (503 before; with access control, a
`?model=` needs the `read` action), `GET /version` is stageserve's version.
"""

from __future__ import annotations

import time
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from litestar import Request, Response, get
from litestar.exceptions import HTTPException
from litestar.handlers import ASGIRouteHandler, HTTPRouteHandler, asgi
from litestar.types import Receive, Scope, Send

from gateway.edge.direct import DirectExchange
from gateway.http.mlflow_protocol import MlflowBody, mlflow_error_body
from gateway.http.predict_route import PredictRoute
from gateway.http.request_io import query_value
from gateway.pool.model_pool import ModelPool
from gateway.telemetry.metrics import GatewayMetrics

__all__ = ["Invocations", "mlflow_routes"]


class Invocations:
    """`POST /invocations`: MLflow's scoring route, through the predict route."""

    def __init__(
        self,
        pool: ModelPool,
        predict: PredictRoute,
        metrics: GatewayMetrics,
        *,
        default_model: str | None = None,
    ) -> None:
        self.pool = pool
        self.predict = predict
        self.default_model = default_model
        self.body_format = MlflowBody(metrics)

    def model_of(self, query: bytes) -> str:
        named = query_value(query, "model") if query else ""
        if named or self.default_model:
            return named or self.default_model or ""
        # A gateway serving one model needs no ?model= (nor default_model).
        models = list(self.pool.wanted_models())
        return models[0] if len(models) == 1 else ""

    def stage_of(self, query: bytes) -> str:
        return (query_value(query, "stage") if query else "") or self.predict.default_stage

    def direct(self, exchange: DirectExchange) -> None:
        """On the direct lane (gateway/http/direct_lane.py)."""
        started = time.perf_counter()
        query = exchange.query
        model, stage = self.model_of(query), self.stage_of(query)
        self.predict.serve_direct(
            exchange, self.body_format, model=model, stage=stage, started=started
        )

    async def serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        query = scope["query_string"]
        if query and self.predict.as_of is not None and b"as_of=" in query:
            await self.predict.as_of.serve(
                scope, receive, send, model=self.model_of(query), started=started,
                body_format=self.body_format,
            )  # fmt: skip
            return
        await self.predict.serve(
            scope, receive, send, model=self.model_of(query), stage=self.stage_of(query),
            started=started, body_format=self.body_format,
        )  # fmt: skip


def mlflow_routes(
    pool: ModelPool, invocations: Invocations
) -> list[HTTPRouteHandler | ASGIRouteHandler]:
    model_of, stage_of = invocations.model_of, invocations.stage_of
    predict = invocations.predict

    handlers: dict[int | type[Exception], Any] = {HTTPException: _litestar_error}

    @get(["/ping", "/health"], sync_to_thread=False, exception_handlers=handlers)
    def ping(request: Request[Any, Any, Any]) -> Response[bytes]:
        query = request.scope["query_string"]
        model = model_of(query)
        if predict.access is not None and query_value(query, "model"):
            # A named model's readiness tells whether it exists: only to callers that may
            # read it (plain /ping stays an open probe).
            principal = predict.access.authenticate_headers(request.scope["headers"])
            predict.access.check(principal, "read", model, stage_of(query), pool.wanted_models)
        if model:
            ready = stage_of(query) in pool.routes.get(model, {})
        else:
            ready, _ = pool.ready()
        return Response(b"\n", status_code=200 if ready else 503, media_type="application/json")

    @get("/version", sync_to_thread=False, exception_handlers=handlers)
    def server_version() -> Response[str]:
        return Response(_version(), media_type="text/plain")

    mount = asgi("/invocations", copy_scope=False, name="mlflow-invocations")(invocations.serve)
    return [mount, ping, server_version]


def _litestar_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    # Litestar's own 404/405 on these routes, in MLflow's error shape.
    code = "method_not_allowed" if exc.status_code == 405 else "not_found"
    message = exc.detail if exc.status_code in (404, 405) else "bad request"
    return Response(
        mlflow_error_body(code, message),
        status_code=exc.status_code,
        media_type="application/json",
        headers=dict(exc.headers or {}),
    )


def _version() -> str:
    try:
        return version("stageserve")
    except PackageNotFoundError:
        return "unknown"
