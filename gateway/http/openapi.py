"""The OpenAPI document at `/schema`: one predict operation per served model, from its signature."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway.pool.model_pool import ModelPool
from registry_sync.package.manifest import ColumnSpec, Signature

__all__ = ["openapi_document"]

_JSON_TYPES = {
    "double": {"type": "number"},
    "float": {"type": "number"},
    "long": {"type": "integer"},
    "integer": {"type": "integer"},
    "boolean": {"type": "boolean"},
    "string": {"type": "string"},
}
_ERROR = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "details": {"type": "object"},
            },
            "required": ["code", "message", "details"],
        }
    },
}


def _column(col: ColumnSpec, nullable: bool = False) -> dict[str, Any]:
    schema: dict[str, Any] = dict(_JSON_TYPES[col.type])
    if col.categories is not None:
        schema["enum"] = list(col.categories)
    if col.description:
        schema["description"] = col.description
    if nullable:
        schema = {"anyOf": [schema, {"type": "null"}]}
    return schema


def _request_schema(sig: Signature) -> dict[str, Any]:
    row = {
        "type": "object",
        "properties": {c.name: _column(c, not c.required) for c in sig.inputs},
        "required": [c.name for c in sig.inputs if c.required],
        "additionalProperties": False,
    }
    columns = {
        "type": "object",
        "properties": {
            c.name: {"type": "array", "items": _column(c, not c.required)} for c in sig.inputs
        },
        "required": [c.name for c in sig.inputs if c.required],
        "additionalProperties": False,
    }
    rows = {"type": "array", "items": row, "minItems": 1}
    split = {
        "type": "object",
        "properties": {
            "columns": {"type": "array", "items": {"type": "string"}},
            "data": {"type": "array", "items": {"type": "array"}},
        },
        "required": ["columns", "data"],
    }
    return {
        "oneOf": [
            {
                "type": "object",
                "properties": {"inputs": {"oneOf": [rows, columns]}},
                "required": ["inputs"],
                "additionalProperties": False,
            },
            {
                "type": "object",
                "properties": {"dataframe_split": split},
                "required": ["dataframe_split"],
                "additionalProperties": False,
            },
            {
                "type": "object",
                "properties": {"dataframe_records": rows},
                "required": ["dataframe_records"],
                "additionalProperties": False,
            },
            {
                "type": "object",
                "properties": {"instances": rows},
                "required": ["instances"],
                "additionalProperties": False,
            },
        ]
    }


def _response_schema(sig: Signature) -> dict[str, Any]:
    if len(sig.outputs) == 1:
        item = _column(sig.outputs[0])
    else:
        item = {
            "type": "object",
            "properties": {c.name: _column(c) for c in sig.outputs},
        }
    return {
        "type": "object",
        "properties": {
            "model": {"type": "string"},
            "stage": {"type": "string"},
            "version": {"type": "string"},
            "request_id": {"type": "string"},
            "predictions": {"type": "array", "items": item},
        },
        "required": ["model", "stage", "version", "request_id", "predictions"],
    }


def _operation(model: str, stages: dict[str, Any], default_stage: str) -> dict[str, Any]:
    # Stages may serve versions with different signatures; document the default stage's (or
    # the first served one's) and list every stage.
    route = stages.get(default_stage) or next(iter(stages.values()))
    manifest = route.loaded.manifest
    error = {"content": {"application/json": {"schema": _ERROR}}}
    return {
        "post": {
            "operationId": f"predict_{model}",
            "summary": f"Predict with {model}",
            "description": manifest.card.description or f"Predictions from {model}.",
            "parameters": [
                {
                    "name": "stage",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "string", "enum": sorted(stages), "default": default_stage},
                }
            ],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _request_schema(manifest.signature)}},
            },
            "responses": {
                "200": {
                    "description": "Predictions, stamped with the version that made them.",
                    "content": {
                        "application/json": {"schema": _response_schema(manifest.signature)}
                    },
                },
                **{
                    code: {"description": text, **error}
                    for code, text in (
                        ("400", "Malformed JSON"),
                        ("404", "Unknown model or stage"),
                        ("413", "Body or row count over the limit"),
                        ("415", "Content-type is not application/json"),
                        ("422", "Inputs do not match the signature"),
                        ("500", "Model output failed validation"),
                        ("503", "The stage has no loaded version yet"),
                    )
                },
            },
        }
    }


def openapi_document(
    pool: ModelPool,
    default_stage: str,
    stages_of: Callable[[str, list[str]], set[str]] | None = None,
) -> dict[str, Any]:
    """`stages_of(model, stages)`: the stages to document (all by default; with auth, those
    the caller may read)."""
    paths: dict[str, Any] = {}
    for model, stages in sorted(pool.routes.items()):
        shown = stages_of(model, sorted(stages)) if stages_of is not None else set(stages)
        kept = {stage: route for stage, route in stages.items() if stage in shown}
        if kept:
            paths[f"/predict/{model}"] = _operation(model, kept, default_stage)
    for path, summary in (
        ("/models", "Every model and stage: active version, load state, signature, card"),
        ("/models/{model}", "One model's stages"),
        ("/healthz", "The process is alive"),
        ("/readyz", "Every assigned (model, stage) is loaded"),
        ("/metrics", "Prometheus metrics"),
    ):
        paths[path] = {"get": {"summary": summary, "responses": {"200": {"description": "OK"}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "stageserve", "version": "1"},
        "paths": paths,
    }
