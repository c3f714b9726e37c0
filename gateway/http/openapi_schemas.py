"""JSON Schemas of a served version's request and response bodies, from its signature.

They say exactly what the predict routes accept where JSON Schema can say it (types,
categories, required fields, no unknown fields, at least one row, known and distinct column
names); what it cannot (columns of equal length, a row as long as `columns`) is in the
descriptions and answered 422.
"""

from __future__ import annotations

from typing import Any

from registry_sync.package.manifest import ColumnSpec, Signature

__all__ = [
    "ERROR",
    "V2_DATATYPES",
    "column_schema",
    "predict_request",
    "predict_response",
    "v2_request",
    "v2_response",
]

_JSON_TYPES: dict[str, dict[str, Any]] = {
    "double": {"type": "number"},
    "float": {"type": "number"},
    "long": {"type": "integer", "minimum": -(2**63), "maximum": 2**63 - 1},
    "integer": {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1},
    "boolean": {"type": "boolean"},
    "string": {"type": "string"},
}
V2_DATATYPES = [
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
    "FP16", "FP32", "FP64", "BF16", "BYTES",
]  # fmt: skip
ERROR = {
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
    "required": ["error"],
}
_SCALAR = {"type": ["number", "string", "boolean", "null"]}


def column_schema(col: ColumnSpec, nullable: bool = False) -> dict[str, Any]:
    schema: dict[str, Any] = dict(_JSON_TYPES[col.type])
    if col.categories is not None:
        schema = {"enum": list(col.categories)}
    if col.description:
        schema["description"] = col.description
    if nullable:
        schema = {"anyOf": [schema, {"type": "null"}]}
    return schema


def _one_key(key: str, value: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {key: value},
        "required": [key],
        "additionalProperties": False,
    }


def predict_request(sig: Signature) -> dict[str, Any]:
    names = [c.name for c in sig.inputs]
    required = [c.name for c in sig.inputs if c.required]
    row = {
        "type": "object",
        "properties": {c.name: column_schema(c, not c.required) for c in sig.inputs},
        "required": required,
        "additionalProperties": False,
    }
    rows = {"type": "array", "items": row, "minItems": 1}
    columns = {
        "type": "object",
        "description": "One array per input, all of the same length.",
        "properties": {
            c.name: {"type": "array", "items": column_schema(c, not c.required), "minItems": 1}
            for c in sig.inputs
        },
        "required": required,
        "additionalProperties": False,
    }
    positional = {
        "type": "array",
        "description": f"Rows of values in the signature's order: {', '.join(names)}.",
        "items": {"type": "array", "items": _SCALAR, "minItems": 1, "maxItems": len(names)},
        "minItems": 1,
    }
    split = {
        "type": "object",
        "description": "MLflow's split orientation: every row as long as `columns`.",
        "properties": {
            "columns": {
                "type": "array",
                "items": {"enum": names},
                "minItems": len(required) or 1,
                "uniqueItems": True,
            },
            "data": {
                "type": "array",
                "items": {"type": "array", "items": _SCALAR, "maxItems": len(names)},
                "minItems": 1,
            },
            "index": {"type": "array"},
        },
        "required": ["columns", "data"],
        "additionalProperties": False,
    }
    return {
        "anyOf": [
            _one_key("inputs", {"anyOf": [rows, columns, positional]}),
            _one_key("dataframe_split", split),
            _one_key("dataframe_records", rows),
            _one_key("instances", {"anyOf": [rows, columns, positional]}),
        ]
    }


def _prediction_item(sig: Signature) -> dict[str, Any]:
    if len(sig.outputs) == 1:
        return column_schema(sig.outputs[0])
    return {
        "type": "object",
        "properties": {c.name: column_schema(c) for c in sig.outputs},
        "required": [c.name for c in sig.outputs],
    }


def predict_response(sig: Signature) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "model": {"type": "string"},
            "stage": {"type": "string"},
            "version": {"type": "string"},
            "request_id": {"type": "string"},
            "predictions": {"type": "array", "items": _prediction_item(sig)},
        },
        "required": ["model", "stage", "version", "request_id", "predictions"],
    }


def v2_request(sig: Signature) -> dict[str, Any]:
    tensor = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
            "datatype": {"enum": V2_DATATYPES},
            "data": {"type": "array"},
            "parameters": {"type": "object"},
        },
        "required": ["name", "shape", "datatype"],
    }
    return {
        "type": "object",
        "description": "One tensor per input (named as the signature's inputs: "
        + ", ".join(c.name for c in sig.inputs)
        + "), or one [rows, inputs] tensor in the positional order.",
        "properties": {
            "id": {"type": "string"},
            "parameters": {"type": "object"},
            "inputs": {"type": "array", "items": tensor, "minItems": 1},
            "outputs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"name": {"type": "string"}, "parameters": {"type": "object"}},
                    "required": ["name"],
                },
            },
        },
        "required": ["inputs"],
    }


def v2_response() -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "model_name": {"type": "string"},
            "model_version": {"type": "string"},
            "id": {"type": "string"},
            "parameters": {"type": "object"},
            "outputs": {"type": "array", "items": {"type": "object"}},
        },
        "required": ["model_name", "outputs"],
    }
