"""The non-predict routes: /models, /models/{model}, /healthz, /readyz, /metrics, /schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
from litestar import Response, get
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath
from prometheus_client import CONTENT_TYPE_LATEST

from gateway.drain import Drain
from gateway.errors import UnknownModelError
from gateway.http.errors import error_payload
from gateway.http.openapi import openapi_document
from gateway.http.status import model_status, models_status, sync_overview
from gateway.pool.model_pool import ModelPool
from gateway.shadow.worker import Shadow
from gateway.telemetry.metrics import GatewayMetrics

__all__ = ["models_routes"]


def models_routes(
    pool: ModelPool,
    metrics: GatewayMetrics,
    *,
    default_stage: str = "prod",
    drain: Drain | None = None,
    sync_status_path: Path | None = None,
    shadow: Shadow | None = None,
) -> list[HTTPRouteHandler]:
    schema_cache: dict[int, dict[str, Any]] = {}

    def draining() -> bool:
        return drain is not None and drain.draining

    @get("/models", sync_to_thread=False)
    def list_models() -> dict[str, Any]:
        return {"models": models_status(pool, shadow), "sync": sync_overview(sync_status_path)}

    @get("/models/{model:str}", sync_to_thread=False)
    def show_model(model: FromPath[str]) -> dict[str, Any]:
        status = model_status(pool, model, shadow)
        if status is None:
            raise UnknownModelError(f"no model {model!r}", {"models": pool.wanted_models()})
        status["sync"]["last_poll"] = sync_overview(sync_status_path)
        return status

    @get("/models/{model:str}/shadow", sync_to_thread=False)
    def shadow_report(model: FromPath[str]) -> dict[str, Any]:
        configured = shadow is not None and model in shadow.plans
        if not configured and model_status(pool, model) is None:
            raise UnknownModelError(f"no model {model!r}", {"models": pool.wanted_models()})
        if shadow is None:
            return {"model": model, "config": [], "pairs": []}
        return shadow.report(model)

    @get("/healthz", sync_to_thread=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @get("/readyz", sync_to_thread=False)
    def readyz() -> Response[bytes]:
        ready, missing = pool.ready() if not draining() else (False, ["shutting down"])
        if ready:
            body = msgspec.json.encode({"status": "ready", "pending": pool.pending()})
            return Response(body, media_type="application/json")
        body = error_payload(
            "not_ready", "a stage has no loaded version to answer with", {"missing": missing}
        )
        return Response(body, status_code=503, media_type="application/json")

    @get("/metrics", sync_to_thread=False)
    def prometheus() -> Response[bytes]:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    @get(["/schema", "/schema/openapi.json"], sync_to_thread=False)
    def schema() -> dict[str, Any]:
        # Rebuilt only when the route table changed (pool.generation bumps on every swap).
        doc = schema_cache.get(pool.generation)
        if doc is None:
            schema_cache.clear()
            doc = schema_cache[pool.generation] = openapi_document(pool, default_stage)
        return doc

    return [list_models, show_model, shadow_report, healthz, readyz, prometheus, schema]
