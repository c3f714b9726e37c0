"""The Open Inference Protocol (KServe V2) body format, mapped onto a version's signature.

A V2 request carries tensors: either one 1-D tensor per input column, named like the
signature's inputs (MLServer's pandas codec), or a single 2-D tensor of shape [rows, k] whose
columns are the inputs in the model's declared positional order (`signature.positional_order`,
the same for every version a stage can serve), never in whatever order a version happens to
list its inputs. Anything else (a name that is no input, a width that does not fit) is
refused, not guessed. Tensor data comes as JSON (`data`) or as raw bytes after the JSON header
(the binary extension, see v2_binary.py). Both become the same `InputBatch` the predict route
uses, with the same validation; errors name the tensor and element, e.g.
`$.inputs[1].data[3]: expected number, got string`.
"""

from __future__ import annotations

import math
import re
from typing import Any

import msgspec
import numpy as np

from gateway.errors import InputValidationError, MalformedRequestError
from gateway.http.v2_binary import (
    NUMERIC_DATATYPES,
    decode_tensor_bytes,
    encode_tensor_bytes,
    split_body,
)
from gateway.schema.duplicate_keys import refuse_duplicate_keys
from gateway.schema.request_schema import InputBatch, RequestSchema
from gateway.schema.validation_errors import validation_error

__all__ = [
    "V2Request",
    "V2Response",
    "decode_v2",
    "encode_v2_response",
    "v2_datatype",
    "v2_metadata",
]

# Signature column types -> V2 datatypes (of outputs, and what metadata advertises).
_DATATYPES = {
    "double": "FP64",
    "float": "FP32",
    "long": "INT64",
    "integer": "INT32",
    "boolean": "BOOL",
    "string": "BYTES",
}
# The tensor datatypes each column type accepts: any number for a number (a long input takes
# floats only when they are integral, checked with the values), BOOL for booleans, BYTES for
# strings. Everything else, and names that are no V2 datatype, get a 422 naming the tensor.
_ACCEPTED = {
    "double": NUMERIC_DATATYPES,
    "float": NUMERIC_DATATYPES,
    "long": NUMERIC_DATATYPES,
    "integer": NUMERIC_DATATYPES,
    "boolean": frozenset({"BOOL"}),
    "string": frozenset({"BYTES"}),
}
_KNOWN = NUMERIC_DATATYPES | {"BOOL", "BYTES"}
_FLOATS = frozenset({"FP16", "FP32", "FP64", "BF16"})
_COLUMN_PATH = re.compile(r"^\$\.(\w+)(?:\[(\d+)\])?(.*)$")


class V2Tensor(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    shape: list[int]
    datatype: str
    data: list[Any] | None = None
    parameters: dict[str, Any] | None = None


class V2RequestedOutput(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    parameters: dict[str, Any] | None = None


class V2Request(msgspec.Struct, frozen=True, kw_only=True):
    inputs: list[V2Tensor]
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[V2RequestedOutput] | None = None


class V2Response:
    """An encoded answer: the body, and the JSON header's length when binary tensors follow."""

    __slots__ = ("body", "header_length")

    def __init__(self, body: bytes, header_length: int | None) -> None:
        self.body = body
        self.header_length = header_length


_decoder = msgspec.json.Decoder(V2Request)
_encode = msgspec.json.Encoder().encode


def v2_datatype(column_type: str) -> str:
    return _DATATYPES.get(column_type, "BYTES")


def decode_v2(
    schema: RequestSchema, body: bytes, header_length: bytes | None = None
) -> tuple[V2Request, InputBatch]:
    """Decode and validate a V2 inference request against one version's signature;
    `header_length` is the Inference-Header-Content-Length header (binary extension)."""
    header, binary = split_body(body, header_length)
    try:
        request = _decoder.decode(header)
    except msgspec.ValidationError as exc:
        raise validation_error(exc) from None
    except msgspec.DecodeError:
        raise MalformedRequestError("request body is not valid JSON") from None
    except RecursionError:  # arrays nested ~1000 deep in `parameters` or `data`
        raise MalformedRequestError("request body nests too deeply") from None
    refuse_duplicate_keys(header, _distinct_keys(request))
    if not request.inputs:
        raise InputValidationError("$.inputs", "no input tensors", "shape")
    _check_outputs(schema, request)
    arrays = _tensor_values(request.inputs, binary)
    tensors = request.inputs
    first = tensors[0]
    if len(tensors) == 1 and first.name not in schema.names and len(first.shape) == 2:
        columns, where = _split_positional(schema, first, arrays[0])
    else:
        columns, where = _by_name(schema, tensors, arrays)
    try:
        return request, schema.decode_columns(columns)
    except InputValidationError as exc:
        raise _relocate(exc, where) from None


def _distinct_keys(request: V2Request) -> int:
    """The keys the decoder saw at least (an explicit null counts as absent)."""
    params, outputs = request.parameters, request.outputs
    n = 1 + (request.id is not None) + (params is not None) + len(params or ())
    for o in outputs or ():
        n += 1 + (o.parameters is not None) + len(o.parameters or ())
    n += outputs is not None
    for t in request.inputs:
        n += 3 + (t.data is not None) + (t.parameters is not None) + len(t.parameters or ())
    return n


def _check_outputs(schema: RequestSchema, request: V2Request) -> None:
    for i, wanted in enumerate(request.outputs or ()):
        if wanted.name not in schema.output_names:
            raise InputValidationError(
                f"$.outputs[{i}].name",
                f"unknown output; this model's outputs are {', '.join(schema.output_names)}",
                "unknown",
            )


def _tensor_values(tensors: list[V2Tensor], binary: memoryview) -> list[np.ndarray | list[Any]]:
    """Each tensor's elements, flat and row-major, checked against its shape and datatype:
    a list (JSON `data`) or an array (binary)."""
    values: list[np.ndarray | list[Any]] = []
    offset = 0
    for i, tensor in enumerate(tensors):
        if tensor.datatype not in _KNOWN:
            raise InputValidationError(
                f"$.inputs[{i}].datatype", "not a datatype of the protocol", "type"
            )
        if tensor.shape and min(tensor.shape) < 0:
            raise InputValidationError(f"$.inputs[{i}].shape", "negative dimension", "shape")
        count = math.prod(tensor.shape)
        size = (tensor.parameters or {}).get("binary_data_size")
        if size is not None:
            if tensor.data is not None:
                raise InputValidationError(
                    f"$.inputs[{i}]", "both data and binary_data_size", "shape"
                )
            if type(size) is not int or size < 0 or offset + size > len(binary):
                raise InputValidationError(
                    f"$.inputs[{i}].parameters.binary_data_size",
                    "not a size within the binary part of the body",
                    "shape",
                )
            raw = binary[offset : offset + size]
            offset += size
            values.append(decode_tensor_bytes(tensor.datatype, raw, count, f"$.inputs[{i}].data"))
            continue
        if tensor.data is None:
            raise InputValidationError(
                f"$.inputs[{i}].data", "required field is missing", "missing"
            )
        data = (
            _flatten(tensor.data)
            if tensor.data and isinstance(tensor.data[0], list)
            else tensor.data
        )
        if count != len(data):
            # No values quoted back: the shape's numbers are the client's.
            raise InputValidationError(
                f"$.inputs[{i}].shape", "shape does not match the number of data elements", "shape"
            )
        values.append(data)
    if offset != len(binary):
        raise InputValidationError(
            "$.inputs", "the body has binary data that no tensor's binary_data_size covers", "shape"
        )
    return values


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


# A column's origin in the request: (tensor index, stride, offset) so that row r of the column
# is element r * stride + offset of the tensor's flat data.
_Where = dict[str, tuple[int, int, int]]


def _by_name(
    schema: RequestSchema, tensors: list[V2Tensor], arrays: list[np.ndarray | list[Any]]
) -> tuple[dict[str, list[Any]], _Where]:
    columns: dict[str, list[Any]] = {}
    where: _Where = {}
    for i, tensor in enumerate(tensors):
        if tensor.name not in schema.names:
            raise InputValidationError(
                f"$.inputs[{i}].name",
                f"unknown input; send one tensor per input ({', '.join(schema.names)}) or one "
                f"[rows, {len(schema.positional)}] tensor in the positional order "
                f"({', '.join(schema.positional)})",
                "unknown",
            )
        if tensor.name in columns:
            raise InputValidationError(f"$.inputs[{i}].name", "input given twice", "shape")
        if len(tensor.shape) > 2 or (len(tensor.shape) == 2 and tensor.shape[1] != 1):
            raise InputValidationError(
                f"$.inputs[{i}].shape", "expected shape [rows] or [rows, 1]", "shape"
            )
        column_type = schema.types[tensor.name]
        _check_datatype(tensor.datatype, column_type, i)
        columns[tensor.name] = _values(
            schema, arrays[i], tensor.datatype, column_type, at=(i, 1, 0)
        )
        where[tensor.name] = (i, 1, 0)
    return columns, where


def _split_positional(
    schema: RequestSchema, tensor: V2Tensor, flat: np.ndarray | list[Any]
) -> tuple[dict[str, list[Any]], _Where]:
    order = schema.positional
    k = tensor.shape[1]
    if not schema.min_positional <= k <= len(order):
        width = (
            str(len(order))
            if schema.min_positional == len(order)
            else f"{schema.min_positional} to {len(order)}"
        )
        raise InputValidationError(
            "$.inputs[0].shape",
            f"a [rows, k] tensor needs k = {width}: its columns are the inputs in the "
            f"positional order ({', '.join(order)})",
            "shape",
        )
    columns: dict[str, list[Any]] = {}
    where: _Where = {}
    for j, name in enumerate(order[:k]):
        column_type = schema.types[name]
        _check_datatype(tensor.datatype, column_type, 0)
        columns[name] = _values(schema, flat[j::k], tensor.datatype, column_type, at=(0, k, j))
        where[name] = (0, k, j)
    return columns, where


def _check_datatype(datatype: str, column_type: str, index: int) -> None:
    if datatype not in _ACCEPTED[column_type]:
        expected = (
            "a numeric datatype"
            if column_type not in ("boolean", "string")
            else ("BOOL" if column_type == "boolean" else "BYTES")
        )
        raise InputValidationError(
            f"$.inputs[{index}].datatype",
            f"{datatype} does not fit a {column_type} input: expected {expected}",
            "type",
        )


def _values(
    schema: RequestSchema,
    values: np.ndarray | list[Any],
    datatype: str,
    column_type: str,
    *,
    at: tuple[int, int, int],
) -> list[Any]:
    """The column's values as a list; binary floats must be finite (JSON cannot carry NaN, so
    only the binary extension can bring one) unless the input allows non-finite values."""
    if isinstance(values, list):
        return values
    result: list[Any] = values.tolist()
    if datatype in _FLOATS and not (schema.allow_non_finite and column_type in ("double", "float")):
        # A Python loop over a few values beats numpy's per-call overhead (as in outputs.py).
        finite = all(map(math.isfinite, result)) if len(result) <= 64 else np.isfinite(values).all()
        if not finite:
            index, stride, offset = at
            first = next(i for i, value in enumerate(result) if not math.isfinite(value))
            raise InputValidationError(
                f"$.inputs[{index}].data[{first * stride + offset}]",
                "non-finite value",
                "non_finite",
            )
    return result


def _relocate(exc: InputValidationError, where: _Where) -> InputValidationError:
    """`$.hp[3]` (a column path) -> `$.inputs[1].data[3]` (where the client sent it)."""
    m = _COLUMN_PATH.match(exc.path)
    if m is None or m[1] not in where:
        return exc
    tensor, stride, offset = where[m[1]]
    element = f".data[{int(m[2]) * stride + offset}]" if m[2] else ".data"
    return InputValidationError(f"$.inputs[{tensor}]{element}{m[3]}", exc.reason, exc.kind)


def encode_v2_response(
    schema: RequestSchema,
    *,
    model: str,
    version: str,
    request_id: str,
    stage: str,
    digest: str,
    predictions: list[Any],
    request: V2Request | None = None,
    parameters: dict[str, Any] | None = None,
) -> V2Response:
    """The inference response: every output (or those the request names, in its order), as
    JSON data or, when asked for (`binary_data`), as raw bytes after the JSON header."""
    n = len(predictions)
    if len(schema.outputs) == 1:
        spec = schema.outputs[0]
        by_name = {spec.name: (spec.type, predictions)}
    else:
        by_name = {
            spec.name: (spec.type, [row[spec.name] for row in predictions])
            for spec in schema.outputs
        }
    binary_default = False
    wanted: list[tuple[str, bool]]
    if request is not None:
        binary_default = bool((request.parameters or {}).get("binary_data_output", False))
    if request is not None and request.outputs:
        wanted = [
            (o.name, bool((o.parameters or {}).get("binary_data", binary_default)))
            for o in request.outputs
        ]
    else:
        wanted = [(spec.name, binary_default) for spec in schema.outputs]
    outputs = []
    chunks: list[bytes] = []
    for name, binary in wanted:
        column_type, values = by_name[name]
        datatype = v2_datatype(column_type)
        tensor: dict[str, Any] = {"name": name, "shape": [n], "datatype": datatype}
        if binary:
            raw = encode_tensor_bytes(datatype, values)
            tensor["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            tensor["data"] = values
        outputs.append(tensor)
    header = _encode(
        {
            "model_name": model,
            "model_version": version,
            "id": request_id,
            "parameters": {"stage": stage, "digest": digest, **(parameters or {})},
            "outputs": outputs,
        }
    )
    if not chunks:
        return V2Response(header, None)
    return V2Response(b"".join([header, *chunks]), len(header))


def v2_metadata(
    schema: RequestSchema, *, model: str, versions: list[str], engine: str
) -> dict[str, Any]:
    """`GET /v2/models/{model}`: the model metadata response of the protocol. `parameters`
    says how a single [rows, k] tensor is read: its columns in `positional_order`."""
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
        "parameters": {
            "positional_order": list(schema.positional),
            "positional_min_columns": schema.min_positional,
        },
    }
