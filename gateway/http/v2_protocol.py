"""The Open Inference Protocol (KServe V2) body format, mapped onto a version's signature.

A V2 request carries tensors: either one 1-D tensor per input column, named like the
signature's inputs (MLServer's pandas codec), or a single 2-D tensor of shape [rows, inputs]
in signature order (its numpy codec). Both become the same `InputBatch` the predict route
uses, with the same validation; errors name the tensor and element, e.g.
`$.inputs[1].data[3]: expected number, got string`.
"""

from __future__ import annotations

import math
import re
from typing import Any

import msgspec

from gateway.errors import InputValidationError, MalformedRequestError
from gateway.schema.request_schema import InputBatch, RequestSchema
from gateway.schema.validation_errors import validation_error

__all__ = ["V2Request", "decode_v2", "encode_v2_response", "v2_datatype", "v2_metadata"]

# Signature column types -> V2 datatypes.
_DATATYPES = {
    "double": "FP64",
    "float": "FP32",
    "long": "INT64",
    "integer": "INT32",
    "boolean": "BOOL",
    "string": "BYTES",
}
_COLUMN_PATH = re.compile(r"^\$\.(\w+)(?:\[(\d+)\])?(.*)$")


class V2Tensor(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    shape: list[int]
    datatype: str
    data: list[Any]
    parameters: dict[str, Any] | None = None


class V2Request(msgspec.Struct, frozen=True, kw_only=True):
    inputs: list[V2Tensor]
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[dict[str, Any]] | None = None


_decoder = msgspec.json.Decoder(V2Request)


def v2_datatype(column_type: str) -> str:
    return _DATATYPES.get(column_type, "BYTES")


def decode_v2(schema: RequestSchema, body: bytes) -> tuple[V2Request, InputBatch]:
    """Decode and validate a V2 inference request against one version's signature."""
    try:
        request = _decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise validation_error(exc) from None
    except msgspec.DecodeError:
        raise MalformedRequestError("request body is not valid JSON") from None
    if not request.inputs:
        raise InputValidationError("$.inputs", "no input tensors", "shape")
    tensors = request.inputs
    first = tensors[0]
    if (
        len(tensors) == 1
        and first.name not in schema.names
        and len(first.shape) == 2
        and first.shape[1] == len(schema.names)
    ):
        columns, where = _split_matrix(first, schema.names)
    else:
        columns, where = _by_name(tensors, schema.names)
    try:
        return request, schema.decode_columns(columns)
    except InputValidationError as exc:
        raise _relocate(exc, where) from None


def _rows_of(tensor: V2Tensor, index: int) -> list[Any]:
    """The tensor's elements, flattened row-major, checked against its shape."""
    data = tensor.data
    if data and isinstance(data[0], list):
        data = _flatten(data)
    expected = math.prod(tensor.shape) if tensor.shape else len(data)
    if any(d < 0 for d in tensor.shape) or expected != len(data):
        raise InputValidationError(
            f"$.inputs[{index}].shape",
            f"shape {tensor.shape} does not match {len(data)} data elements",
            "shape",
        )
    return data


def _flatten(nested: list[Any]) -> list[Any]:
    flat: list[Any] = []
    stack = [iter(nested)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            flat.append(item)
        else:
            stack.pop()
    return flat


def _by_name(
    tensors: list[V2Tensor], names: tuple[str, ...]
) -> tuple[dict[str, list[Any]], dict[str, int]]:
    columns: dict[str, list[Any]] = {}
    where: dict[str, int] = {}
    for i, tensor in enumerate(tensors):
        if tensor.name not in names:
            raise InputValidationError(f"$.inputs[{i}].name", "unknown input", "unknown")
        if tensor.name in columns:
            raise InputValidationError(f"$.inputs[{i}].name", "input given twice", "shape")
        if len(tensor.shape) > 2 or (len(tensor.shape) == 2 and tensor.shape[1] != 1):
            raise InputValidationError(
                f"$.inputs[{i}].shape", "expected shape [rows] or [rows, 1]", "shape"
            )
        columns[tensor.name] = _rows_of(tensor, i)
        where[tensor.name] = i
    return columns, where


def _split_matrix(
    tensor: V2Tensor, names: tuple[str, ...]
) -> tuple[dict[str, list[Any]], dict[str, int]]:
    k = len(names)
    flat = _rows_of(tensor, 0)
    columns = {name: flat[j::k] for j, name in enumerate(names)}
    return columns, dict.fromkeys(names, 0)


def _relocate(exc: InputValidationError, where: dict[str, int]) -> InputValidationError:
    """`$.hp[3]` (a column path) -> `$.inputs[1].data[3]` (where the client sent it)."""
    m = _COLUMN_PATH.match(exc.path)
    if m is None or m[1] not in where:
        return exc
    path = f"$.inputs[{where[m[1]]}]" + (f".data[{m[2]}]" if m[2] else ".data") + m[3]
    return InputValidationError(path, exc.reason, exc.kind)


def encode_v2_response(
    schema: RequestSchema,
    *,
    model: str,
    version: str,
    request_id: str,
    stage: str,
    digest: str,
    predictions: list[Any],
) -> dict[str, Any]:
    n = len(predictions)
    outputs = []
    if len(schema.outputs) == 1:
        spec = schema.outputs[0]
        outputs.append(_tensor(spec.name, spec.type, n, predictions))
    else:
        for spec in schema.outputs:
            values = [row[spec.name] for row in predictions]
            outputs.append(_tensor(spec.name, spec.type, n, values))
    return {
        "model_name": model,
        "model_version": version,
        "id": request_id,
        "parameters": {"stage": stage, "digest": digest},
        "outputs": outputs,
    }


def _tensor(name: str, column_type: str, n: int, data: list[Any]) -> dict[str, Any]:
    return {"name": name, "shape": [n], "datatype": v2_datatype(column_type), "data": data}


def v2_metadata(
    schema: RequestSchema, *, model: str, versions: list[str], engine: str
) -> dict[str, Any]:
    """`GET /v2/models/{model}`: the model metadata response of the protocol."""
    return {
        "name": model,
        "versions": versions,
        "platform": f"stageserve-{engine}",
        "inputs": [
            {"name": c.name, "datatype": v2_datatype(c.type), "shape": [-1]} for c in schema.inputs
        ],
        "outputs": [
            {"name": c.name, "datatype": v2_datatype(c.type), "shape": [-1]} for c in schema.outputs
        ],
    }
