"""The OpenAPI 3.1 document at `/schema`: every route, each served model's bodies from its
signature (openapi_schemas.py). Tests validate it with openapi-spec-validator and fuzz the
server from it (schemathesis), so the document and the behaviour agree."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway.http.openapi_schemas import (
    ERROR,
    predict_request,
    predict_response,
    v2_request,
    v2_response,
)
from gateway.pool.model_pool import ModelPool
from gateway.pool.route_table import Route

__all__ = ["openapi_document"]

_JSON = "application/json"
_V2_ERROR = {
    "type": "object",
    "properties": {"error": {"type": "string"}},
    "required": ["error"],
}
_MLFLOW_ERROR = {
    "type": "object",
    "properties": {"error_code": {"type": "string"}, "message": {"type": "string"}},
    "required": ["error_code", "message"],
}
# Refusals any predict route may answer (ours, V2's and MLflow's, each in its error shape).
_REFUSALS = (
    ("400", "Malformed body: not JSON (or gzip/deflate), or nested too deeply"),
    ("401", "auth on: no valid credential"),
    ("403", "auth on: not allowed for this stage"),
    ("404", "Unknown model, stage or version"),
    ("405", "Method not allowed"),
    ("408", "The headers or the body did not arrive in time"),
    ("410", "as_of: the past version's package is gone or no longer verifies"),
    ("413", "Body or row count over the limit"),
    ("415", "Unsupported content type or content encoding"),
    ("422", "Inputs do not match the signature, or are out of the model's range"),
    ("431", "Request headers too large"),
    ("500", "The model failed, or its output failed validation"),
    ("503", "No loaded version yet, overloaded, or audit records cannot be written"),
)
_ID = {"name": "x-request-id", "in": "header", "required": False, "schema": {"type": "string"}}
# `?as_of=` on every predict route (gateway/http/asof_route.py).
_AS_OF = [
    {
        "name": "as_of",
        "in": "query",
        "required": False,
        "description": "Answer with the version that served (or was assigned to) the stage "
        "at this ISO 8601 instant.",
        "schema": {"type": "string", "format": "date-time"},
    },
    {
        "name": "basis",
        "in": "query",
        "required": False,
        "schema": {"enum": ["served", "assigned"], "default": "served"},
    },
]
_WINDOW = [
    {"name": name, "in": "query", "required": False, "schema": {"type": "string"}}
    for name in ("window", "bucket", "from", "to")
]
_FEEDBACK_ITEM: dict[str, Any] = {
    "type": "object",
    "properties": {
        "request_id": {"type": "string"},
        "client_request_id": {"type": "string"},
        "outcome": {"type": "array"},
    },
}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {_JSON: {"schema": schema}}}


def _refusals(error: dict[str, Any]) -> dict[str, Any]:
    return {code: {"description": text, **_json(error)} for code, text in _REFUSALS}


def _stage(stages: list[str], default_stage: str) -> dict[str, Any]:
    return {
        "name": "stage",
        "in": "query",
        "required": False,
        "description": "The stage to answer from (an empty or unknown one is a 404).",
        "schema": {"type": "string", "enum": stages, "default": default_stage},
    }


def _path_param(name: str, values: list[str] | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"} if values is None else {"enum": values}
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _get(summary: str, op_id: str, **extra: Any) -> dict[str, Any]:
    responses = extra.pop("responses", None) or {"200": {"description": "OK"}}
    return {"get": {"operationId": op_id, "summary": summary, "responses": responses, **extra}}


def _predict(model: str, route: Route, stages: list[str], default_stage: str) -> dict[str, Any]:
    manifest = route.loaded.manifest
    return {
        "post": {
            "operationId": f"predict_{model}",
            "summary": f"Predict with {model}",
            "description": manifest.card.description or f"Predictions from {model}.",
            "parameters": [_stage(stages, default_stage), _ID, *_AS_OF],
            "requestBody": {"required": True, **_json(predict_request(manifest.signature))},
            "responses": {
                "200": {
                    "description": "Predictions, stamped with the version that made them.",
                    **_json(predict_response(manifest.signature)),
                },
                **_refusals(ERROR),
            },
        }
    }


def _v2_model(
    model: str, route: Route, stages: list[str], versions: list[str], default_stage: str
) -> dict[str, Any]:
    """The V2 routes of one model: metadata, readiness, inference (by stage or version)."""
    sig = route.loaded.manifest.signature
    infer = {
        "requestBody": {
            "required": True,
            "content": {
                _JSON: {"schema": v2_request(sig)},
                "application/octet-stream": {"schema": {"type": "string"}},
            },
        },
        "responses": {
            "200": {"description": "One output tensor per output", **_json(v2_response())},
            **_refusals(_V2_ERROR),
        },
    }
    base = f"/v2/models/{model}"
    stage = _stage(stages, default_stage)
    version = _path_param("version", versions)
    ready = {"200": {"description": "Ready"}, "404": {"description": "Unknown"}}
    ready["503"] = {"description": "Not ready"}
    meta = {"200": {"description": "Model metadata"}, **_refusals(_V2_ERROR)}
    return {
        base: _get("V2 model metadata", f"v2_{model}", parameters=[stage], responses=meta),
        f"{base}/ready": _get(
            "V2 model ready", f"v2_{model}_ready", parameters=[stage], responses=ready
        ),
        f"{base}/infer": {
            "post": {
                "operationId": f"v2_{model}_infer",
                "parameters": [stage, _ID, *_AS_OF],
                **infer,
            }
        },
        f"{base}/versions/{{version}}": _get(
            "V2 model version metadata", f"v2_{model}_version", parameters=[version], responses=meta
        ),
        f"{base}/versions/{{version}}/ready": _get(
            "V2 model version ready",
            f"v2_{model}_version_ready",
            parameters=[version],
            responses=ready,
        ),
        f"{base}/versions/{{version}}/infer": {
            "post": {
                "operationId": f"v2_{model}_version_infer",
                "parameters": [version, _ID],
                **infer,
            }
        },
    }


def _html() -> dict[str, Any]:
    return {
        "200": {"description": "OK"},
        "401": {"description": "auth on: no valid credential"},
        "403": {"description": "auth on: not allowed"},
        "404": {"description": "No such model or file"},
    }


def _fixed_routes(models: list[str]) -> dict[str, Any]:
    model = _path_param("model")
    not_found = {
        "200": {"description": "OK"},
        "404": {"description": "No such model", **_json(ERROR)},
    }
    ready = {"200": {"description": "Ready"}, "503": {"description": "Not ready", **_json(ERROR)}}
    return {
        "/models": _get("Every model and stage: versions, load state, signature, card", "models"),
        "/models/{model}": _get(
            "One model's stages", "model", parameters=[model], responses=not_found
        ),
        "/models/{model}/shadow": _get(
            "Shadow traffic report of a model",
            "model_shadow",
            parameters=[model],
            responses=not_found,
        ),
        "/models/{model}/performance": _get(
            "Quality per version and time window, from the outcomes",
            "model_performance",
            parameters=[model, *_WINDOW],
            responses={
                **not_found,
                "422": {"description": "A window, bucket or instant that does not parse"},
                "503": {"description": "The history store cannot be read", **_json(ERROR)},
            },
        ),
        "/feedback/{model}": {
            "post": {
                "operationId": "feedback",
                "summary": "Observed outcomes of earlier predictions",
                "parameters": [model],
                "requestBody": {
                    "required": True,
                    **_json(
                        {
                            **_FEEDBACK_ITEM,
                            "properties": {
                                **_FEEDBACK_ITEM["properties"],
                                "outcomes": {"type": "array", "items": _FEEDBACK_ITEM},
                            },
                        }
                    ),
                },
                "responses": {
                    "200": {"description": "Recorded (or unchanged; a batch: each item's result)"},
                    **{
                        code: {"description": text, **_json(ERROR)}
                        for code, text in (
                            ("400", "Not JSON"),
                            ("401", "auth on: no valid credential"),
                            ("403", "auth on: not allowed the feedback action"),
                            ("404", "No such prediction (or no history kept)"),
                            ("409", "A different outcome was recorded, or an ambiguous id"),
                            ("413", "Too many outcomes in one body"),
                            ("415", "Not JSON"),
                            ("422", "The outcome does not fit the output signature"),
                            ("503", "The history store cannot be read or written"),
                        )
                    },
                },
            }
        },
        "/healthz": _get("The process is alive", "healthz"),
        "/readyz": _get("Every assigned (model, stage) can answer", "readyz", responses=ready),
        "/metrics": _get("Prometheus metrics", "metrics"),
        "/schema": _get("This document", "schema"),
        "/schema/openapi.json": _get("This document", "schema_json"),
        "/v2": _get("V2 server metadata", "v2_server"),
        "/v2/health/live": _get("V2 liveness", "v2_live"),
        "/v2/health/ready": _get("V2 readiness", "v2_ready", responses=ready),
        "/invocations": {
            "post": {
                "operationId": "mlflow_invocations",
                "summary": "MLflow scoring protocol",
                "parameters": [
                    {"name": "model", "in": "query", "required": False, "schema": {"enum": models}},
                    {
                        "name": "stage",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string"},
                    },
                    *_AS_OF,
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        _JSON: {"schema": {"type": "object"}},
                        "text/csv": {"schema": {"type": "string"}},
                    },
                },
                "responses": {
                    "200": {"description": "Predictions", **_json({"type": "object"})},
                    **_refusals(_MLFLOW_ERROR),
                },
            }
        },
        "/ui": _get("The read-only console (HTML)", "ui", responses=_html()),
        "/ui/models/{model}": _get(
            "One model in the console (HTML)",
            "ui_model",
            parameters=[model, {"name": "at", "in": "query", "schema": {"type": "string"}}],
            responses={**_html(), "400": {"description": "`at` is not ISO 8601"}},
        ),
        "/ui/live": _get("The console's live view (HTML)", "ui_live", responses=_html()),
        "/ui/static/{name}": _get(
            "A console asset", "ui_static", parameters=[_path_param("name")], responses=_html()
        ),
        "/ping": _get("MLflow readiness", "mlflow_ping", responses=ready),
        "/health": _get("MLflow readiness", "mlflow_health", responses=ready),
        "/version": _get("Server version", "mlflow_version"),
    }


def openapi_document(
    pool: ModelPool,
    default_stage: str,
    stages_of: Callable[[str, list[str]], set[str]] | None = None,
) -> dict[str, Any]:
    """`stages_of(model, stages)`: the stages to document (all by default; with auth, those
    the caller may read)."""
    paths: dict[str, Any] = {}
    models: list[str] = []
    for model, stages in sorted(pool.routes.items()):
        shown = stages_of(model, sorted(stages)) if stages_of is not None else set(stages)
        kept = {stage: route for stage, route in stages.items() if stage in shown}
        if not kept:
            continue
        models.append(model)
        # Stages may serve versions with different signatures: the default stage's (or the
        # first one's) is documented, every stage listed.
        route = kept.get(default_stage) or kept[min(kept)]
        names = sorted(kept)
        paths[f"/predict/{model}"] = _predict(model, route, names, default_stage)
        versions = sorted({r.loaded.version for r in kept.values()})
        paths.update(_v2_model(model, route, names, versions, default_stage))
    paths.update(_fixed_routes(models))
    return {
        "openapi": "3.1.0",
        "info": {"title": "stageserve", "version": "1"},
        "paths": dict(sorted(paths.items())),
    }
