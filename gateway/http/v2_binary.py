"""The binary tensor extension of the Open Inference Protocol: raw tensor bytes after a JSON
header of `Inference-Header-Content-Length` bytes (what tritonclient and kserve send with
`binary_data=True`, and what they ask for in answers).

Tensor bytes are little-endian and row-major; BYTES elements are each a 4-byte little-endian
length and that many bytes; BF16 is the high half of a float32.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

from gateway.errors import InputValidationError, MalformedRequestError

__all__ = ["NUMERIC_DATATYPES", "decode_tensor_bytes", "encode_tensor_bytes", "split_body"]

_DTYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
NUMERIC_DATATYPES = frozenset(set(_DTYPES) - {"BOOL"} | {"BF16"})
_LENGTH = struct.Struct("<I")


def split_body(body: bytes, header_length: bytes | None) -> tuple[bytes, memoryview]:
    """The JSON header and the binary part of a body (all JSON when the header is absent)."""
    if header_length is None:
        return body, memoryview(b"")
    if not header_length.isdigit() or int(header_length) > len(body):
        raise MalformedRequestError(
            "Inference-Header-Content-Length is not a length within the body",
            {"body_bytes": len(body)},
        )
    n = int(header_length)
    return body[:n], memoryview(body)[n:]


def decode_tensor_bytes(datatype: str, raw: memoryview, count: int, where: str) -> np.ndarray:
    """`count` elements of `datatype` from exactly the bytes of one tensor (a 1-D array)."""
    if datatype == "BYTES":
        return _decode_bytes(raw, count, where)
    if datatype == "BF16":
        halves = _frombuffer(raw, np.dtype("<u2"), count, where)
        return (halves.astype(np.uint32) << 16).view(np.float32)
    dtype = _DTYPES.get(datatype)
    if dtype is None:  # checked by the caller; a safe refusal all the same
        raise InputValidationError(where, "unknown datatype", "type")
    array = _frombuffer(raw, dtype, count, where)
    if datatype == "BOOL" and array.view(np.uint8).max(initial=0) > 1:
        raise InputValidationError(where, "BOOL bytes must be 0 or 1", "type")
    return array


def encode_tensor_bytes(datatype: str, values: list[Any]) -> bytes:
    """The binary form of an output tensor's values."""
    if datatype == "BYTES":
        parts = []
        for value in values:
            data = value.encode() if isinstance(value, str) else bytes(value)
            parts.append(_LENGTH.pack(len(data)))
            parts.append(data)
        return b"".join(parts)
    return np.asarray(values, dtype=_DTYPES[datatype]).tobytes()


def _frombuffer(raw: memoryview, dtype: np.dtype[Any], count: int, where: str) -> np.ndarray:
    if len(raw) != count * dtype.itemsize:
        raise InputValidationError(
            where,
            # No numbers quoted back: the shape and the size are the client's values.
            "binary_data_size does not match the tensor's shape and datatype",
            "shape",
        )
    return np.frombuffer(raw, dtype=dtype, count=count)


def _decode_bytes(raw: memoryview, count: int, where: str) -> np.ndarray:
    values: list[str] = []
    offset, end = 0, len(raw)
    while offset < end:
        if offset + 4 > end:
            raise InputValidationError(where, "BYTES element length is cut off", "shape")
        (length,) = _LENGTH.unpack_from(raw, offset)
        offset += 4
        if offset + length > end:
            raise InputValidationError(where, "BYTES element is longer than the tensor", "shape")
        try:
            values.append(bytes(raw[offset : offset + length]).decode("utf-8"))
        except UnicodeDecodeError:
            raise InputValidationError(
                f"{where}[{len(values)}]", "BYTES element is not UTF-8 text", "type"
            ) from None
        offset += length
    if len(values) != count:
        raise InputValidationError(
            where, "the number of BYTES elements does not match the shape", "shape"
        )
    array = np.empty(count, dtype=object)
    array[:] = values
    return array
