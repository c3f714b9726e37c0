"""The non-predict routes: /models, /models/{model}, /healthz, /readyz, /schema.

(`/metrics` is metrics_route.py: prometheus-client's own exposition.)"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
from litestar import Request, Response, get
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath

from gateway.access import Access, Principal
from gateway.drain import Drain
from gateway.errors import UnknownModelError, shown
from gateway.http.errors import error_payload
from gateway.http.openapi import openapi_document
from gateway.http.status import model_status, models_status, sync_health, sync_overview
from gateway.pool.model_pool import ModelPool
from gateway.shadow.worker import Shadow
from gateway.telemetry.audit import AuditWriter
from registry_sync.sync.snapshot import SyncStatus

__all__ = ["models_routes"]


def models_routes(
    pool: ModelPool,
    *,
    default_stage: str = "prod",
    drain: Drain | None = None,
    sync_status_path: Path | None = None,
    shadow: Shadow | None = None,
    access: Access | None = None,
    audit: AuditWriter | None = None,
    sync_status: Callable[[], SyncStatus | None] | None = None,
    history: Callable[[], dict[str, Any] | None] | None = None,
) -> list[HTTPRouteHandler]:
    def audit_health() -> dict[str, Any] | None:
        return msgspec.to_builtins(audit.health()) if audit is not None else None

    def sync_now() -> dict[str, Any] | None:
        return sync_overview(sync_status_path, sync_status)

    def draining() -> bool:
        return drain is not None and drain.draining

    def caller(request: Request[Any, Any, Any]) -> Principal | None:
        """The verified principal (None while auth is off); 401 without a credential."""
        return access.authenticate_headers(request.scope["headers"]) if access else None

    def readable(principal: Principal | None, status: dict[str, Any]) -> dict[str, Any]:
        if access is None or principal is None:
            return status
        stages = access.readable_stages(principal, status["name"], status["stages"])
        return {**status, "stages": {s: v for s, v in status["stages"].items() if s in stages}}

    def check_read(principal: Principal | None, model: str) -> None:
        if access is not None and principal is not None:
            access.check_model(principal, "read", model, pool.wanted_models())

    @get("/models", sync_to_thread=False)
    def list_models(request: Request[Any, Any, Any]) -> dict[str, Any]:
        principal = caller(request)
        found = models_status(pool, shadow)
        if access is not None and principal is not None:
            found = [
                readable(principal, s)
                for s in found
                if access.policy.allows_some_stage(principal, "read", s["name"])
            ]
        return {
            "models": found,
            "sync": sync_now(),
            "audit": audit_health(),
            # Where history goes: the files, or the PostgreSQL sink's state (connected,
            # backlog per stream, shipped, last error).
            "history": history() if history is not None else None,
        }

    @get("/models/{model:str}", sync_to_thread=False)
    def show_model(model: FromPath[str], request: Request[Any, Any, Any]) -> dict[str, Any]:
        principal = caller(request)
        check_read(principal, model)
        status = model_status(pool, model, shadow)
        if status is None:
            raise UnknownModelError(f"no model {shown(model)!r}", {"models": visible(principal)})
        status["sync"]["last_poll"] = sync_now()
        return readable(principal, status)

    def visible(principal: Principal | None) -> dict[str, list[str]]:
        models = pool.wanted_models()
        return access.visible(principal, models) if access and principal else models

    @get("/models/{model:str}/shadow", sync_to_thread=False)
    def shadow_report(model: FromPath[str], request: Request[Any, Any, Any]) -> dict[str, Any]:
        principal = caller(request)
        check_read(principal, model)
        configured = shadow is not None and model in shadow.plans
        if not configured and model_status(pool, model) is None:
            raise UnknownModelError(f"no model {shown(model)!r}", {"models": visible(principal)})
        if shadow is None:
            return {"model": model, "config": [], "pairs": []}
        return shadow.report(model)

    @get("/healthz", sync_to_thread=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @get("/readyz", sync_to_thread=False)
    def readyz() -> Response[bytes]:
        ready, missing = pool.ready() if not draining() else (False, ["shutting down"])
        audit_now = audit_health()
        if audit is not None and audit.refusing:  # fail_closed: predict answers 503 now
            ready, missing = False, [*missing, "audit records cannot be written"]
        # The sync's health is a detail, never a reason to be unready: a registry outage or a
        # failing sync loop changes nothing that serves (and would hit every replica at once).
        # Probes are unauthenticated: counts only; the messages are in /models.
        sync = sync_health(sync_now())
        if ready:
            body = msgspec.json.encode(
                {"status": "ready", "pending": pool.pending(), "audit": audit_now, "sync": sync}
            )
            return Response(body, media_type="application/json")
        body = error_payload(
            "not_ready",
            "a stage has no loaded version to answer with",
            {"missing": missing, "audit": audit_now, "sync": sync},
        )
        return Response(body, status_code=503, media_type="application/json")

    schema = schema_route(pool, default_stage, access)
    return [list_models, show_model, shadow_report, healthz, readyz, schema]


def schema_route(pool: ModelPool, default_stage: str, access: Access | None) -> HTTPRouteHandler:
    """`/schema`: the OpenAPI document of what the caller may read."""
    schema_cache: dict[tuple[int, tuple[str, ...] | None], dict[str, Any]] = {}

    @get(["/schema", "/schema/openapi.json"], sync_to_thread=False)
    def schema(request: Request[Any, Any, Any]) -> dict[str, Any]:
        principal = access.authenticate_headers(request.scope["headers"]) if access else None
        roles = principal.roles if principal is not None else None
        # Rebuilt only when the route table changed (pool.generation bumps on every swap),
        # per set of roles when auth is on (each sees only what it may read).
        key = (pool.generation, roles)
        doc = schema_cache.get(key)
        if doc is None:
            if len(schema_cache) > 64 or any(g != pool.generation for g, _ in schema_cache):
                schema_cache.clear()
            stages_of = None
            if access is not None and principal is not None:
                who = principal
                stages_of = lambda m, stages: access.readable_stages(who, m, stages)  # noqa: E731
            doc = schema_cache[key] = openapi_document(pool, default_stage, stages_of)
        return doc

    return schema
