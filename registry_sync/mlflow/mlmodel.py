"""Read an `MLmodel` file: which flavor stageserve serves it with, and its signature.

The signature becomes the request schema: column specs keep their names, types and
`required`; a column without a name, or a tensor spec, becomes `prediction` (or
`prediction_<i>`) on the output side and `input_<i>` columns on the input side.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from registry_sync.errors import ManifestError, UnsupportedFlavorError
from registry_sync.package.manifest import ColumnSpec, ColumnType, Signature

__all__ = ["MODEL_FILE", "Flavor", "example_rows", "pick_flavor", "read_signature"]

MODEL_FILE = "MLmodel"

# numpy dtype names of tensor specs -> column types (MLflow's own ColSpec names).
_DTYPES: dict[str, ColumnType] = {
    "float64": "double",
    "float32": "float",
    "int64": "long",
    "int32": "integer",
    "bool": "boolean",
    "str": "string",
    "object": "string",
}
_COLUMN_TYPES = {"double", "float", "long", "integer", "boolean", "string"}
_SERVED = "sklearn, statsmodels, onnx"


@dataclass(frozen=True)
class Flavor:
    """How to serve a version: stageserve's package format and the artifact file it reads."""

    format: str  # "sklearn", "statsmodels" or "onnx"
    model_file: str
    mlflow_flavor: str


def pick_flavor(mlmodel: dict[str, Any], where: str) -> Flavor:
    """The first flavor stageserve can serve (sklearn, statsmodels, onnx), else an error
    naming the flavors the version has."""
    flavors = mlmodel.get("flavors")
    if not isinstance(flavors, dict):
        raise ManifestError(where, f"{MODEL_FILE} has no flavors")
    sklearn = flavors.get("sklearn")
    if isinstance(sklearn, dict) and sklearn.get("pickled_model"):
        serialization = str(sklearn.get("serialization_format") or "pickle")
        if serialization not in ("pickle", "cloudpickle", "skops"):
            raise UnsupportedFlavorError(where, [f"sklearn ({serialization})"], _SERVED)
        return Flavor("sklearn", _relative(sklearn["pickled_model"], where), "sklearn")
    statsmodels = flavors.get("statsmodels")
    if isinstance(statsmodels, dict) and statsmodels.get("data"):
        return Flavor("statsmodels", _relative(statsmodels["data"], where), "statsmodels")
    onnx = flavors.get("onnx")
    if isinstance(onnx, dict) and onnx.get("data"):
        return Flavor("onnx", _relative(onnx["data"], where), "onnx")
    raise UnsupportedFlavorError(where, sorted(str(name) for name in flavors), _SERVED)


def read_signature(mlmodel: dict[str, Any], where: str) -> Signature:
    raw = mlmodel.get("signature")
    if not isinstance(raw, dict) or not raw.get("inputs"):
        raise ManifestError(
            where, f"{MODEL_FILE} has no signature: log the model with signature= or input_example="
        )
    inputs = _inputs(_specs(raw["inputs"], where, "inputs"), where)
    if not raw.get("outputs"):
        raise ManifestError(where, f"{MODEL_FILE}'s signature has no outputs")
    outputs = _outputs(_specs(raw["outputs"], where, "outputs"), where)
    # MLflow reads a list-of-lists (or a tensor) in the signature's column order: that order
    # is the version's positional contract.
    return Signature(
        inputs=inputs, outputs=outputs, positional_order=[spec.name for spec in inputs]
    )


def example_rows(data: Any, inputs: list[ColumnSpec]) -> list[dict[str, Any]]:
    """The rows of a saved input example (pandas split or records orient, or a tensor)."""
    if isinstance(data, dict) and "dataframe_split" in data:
        data = data["dataframe_split"]
    if isinstance(data, dict) and isinstance(data.get("columns"), list):
        columns = [str(c) for c in data["columns"]]
        return [dict(zip(columns, row, strict=True)) for row in data.get("data") or []]
    if isinstance(data, dict) and "inputs" in data:
        data = data["inputs"]
    if isinstance(data, list) and all(isinstance(row, dict) for row in data):
        return [dict(row) for row in data]
    if isinstance(data, list) and all(isinstance(row, list) for row in data):
        names = [spec.name for spec in inputs]
        return [dict(zip(names, row, strict=True)) for row in data]
    if isinstance(data, list) and len(inputs) == 1:
        return [{inputs[0].name: value} for value in data]
    raise ValueError("an input example in a shape stageserve does not read")


def _relative(value: Any, where: str) -> str:
    text = str(value)
    if not text or text.startswith("/") or ".." in text.split("/"):
        raise ManifestError(where, f"{MODEL_FILE} names the model file {text!r}")
    return text


def _specs(value: Any, where: str, side: str) -> list[dict[str, Any]]:
    try:
        specs = json.loads(value) if isinstance(value, str) else value
    except json.JSONDecodeError as exc:
        raise ManifestError(where, f"{MODEL_FILE} signature {side}: {exc}") from None
    if not isinstance(specs, list) or not all(isinstance(s, dict) for s in specs):
        raise ManifestError(where, f"{MODEL_FILE} signature {side} is not a list of specs")
    return specs


def _inputs(specs: list[dict[str, Any]], where: str) -> list[ColumnSpec]:
    if all(spec.get("type") != "tensor" for spec in specs):
        columns = [_column(spec, where, "inputs") for spec in specs]
        if any(not column.name for column in columns):
            raise ManifestError(where, "a signature input column without a name")
        return columns
    if len(specs) == 1:
        dtype, width = _tensor(specs[0], where, "inputs")
        if width is None:
            return [ColumnSpec(name=str(specs[0].get("name") or "input"), type=dtype)]
        return [ColumnSpec(name=f"input_{i}", type=dtype) for i in range(width)]
    columns = []
    for spec in specs:
        dtype, width = _tensor(spec, where, "inputs")
        if not spec.get("name") or width not in (None, 1):
            raise ManifestError(
                where, "several tensor inputs must each be named and hold one column"
            )
        columns.append(ColumnSpec(name=str(spec["name"]), type=dtype))
    return columns


def _outputs(specs: list[dict[str, Any]], where: str) -> list[ColumnSpec]:
    if len(specs) == 1 and specs[0].get("type") == "tensor":
        dtype, width = _tensor(specs[0], where, "outputs")
        if width is None or width == 1:
            return [ColumnSpec(name="prediction", type=dtype)]
        return [ColumnSpec(name=f"prediction_{i}", type=dtype) for i in range(width)]
    columns = []
    for index, spec in enumerate(specs):
        if spec.get("type") == "tensor":
            dtype, _ = _tensor(spec, where, "outputs")
            column = ColumnSpec(name=str(spec.get("name") or ""), type=dtype)
        else:
            column = _column(spec, where, "outputs")
        if not column.name:
            name = "prediction" if len(specs) == 1 else f"prediction_{index}"
            column = ColumnSpec(name=name, type=column.type, required=column.required)
        columns.append(column)
    return columns


def _column(spec: dict[str, Any], where: str, side: str) -> ColumnSpec:
    kind = spec.get("type")
    if kind not in _COLUMN_TYPES:
        raise ManifestError(
            where,
            f"signature {side}: column {spec.get('name', '')!r} has type {kind!r}, not one of "
            "double, float, long, integer, boolean, string",
        )
    return ColumnSpec(
        name=str(spec.get("name") or ""),
        type=kind,
        required=bool(spec.get("required", True)),
    )


def _tensor(spec: dict[str, Any], where: str, side: str) -> tuple[ColumnType, int | None]:
    """The column type and width of a tensor spec: shape (-1,) has width None, (-1, k) k."""
    tensor = spec.get("tensor-spec") or {}
    dtype = _DTYPES.get(str(tensor.get("dtype")))
    shape = tensor.get("shape")
    if dtype is None:
        raise ManifestError(where, f"signature {side}: tensor dtype {tensor.get('dtype')!r}")
    if isinstance(shape, list) and len(shape) == 1:
        return dtype, None
    if isinstance(shape, list) and len(shape) == 2 and isinstance(shape[1], int) and shape[1] > 0:
        return dtype, shape[1]
    raise ManifestError(
        where, f"signature {side}: a tensor of shape {shape} is not rows of columns"
    )
