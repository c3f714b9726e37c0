"""Turn prediction input into typed columns and frames that match a model's signature."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from registry_sync.errors import InvalidInputError
from registry_sync.package.manifest import ColumnSpec
from registry_sync.package.signature import to_python

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["NUMERIC_TYPES", "is_numeric", "to_columns", "typed_columns", "typed_frame"]

NUMERIC_TYPES = frozenset({"double", "float", "long", "integer"})


def is_numeric(inputs: Sequence[ColumnSpec]) -> bool:
    """True when every input is a plain number, so a float64 matrix can carry them."""
    return all(spec.type in NUMERIC_TYPES and spec.categories is None for spec in inputs)


def to_columns(data: Any, inputs: Sequence[ColumnSpec]) -> dict[str, np.ndarray]:
    """A DataFrame, a list of row dicts, or a dict of columns -> input name -> 1-D array.

    Columns the signature does not name are ignored (a training frame still has its target).
    """
    # pandas is imported only where a frame is built (typed_frame, the sklearn and statsmodels
    # runtimes): a gateway serving ONNX models never loads it (~50 MiB resident). Data cannot
    # be a DataFrame unless pandas was imported.
    pandas = sys.modules.get("pandas")
    if pandas is not None and isinstance(data, pandas.DataFrame):
        source: Mapping[str, Any] = {str(c): data[c].to_numpy() for c in data.columns}
    elif isinstance(data, Mapping):
        source = data
    elif isinstance(data, Sequence) and not isinstance(data, str | bytes):
        source = _rows_to_columns(data, inputs)
    else:
        raise TypeError("predict takes a DataFrame, a list of row dicts, or a dict of columns")
    columns: dict[str, np.ndarray] = {}
    for spec in inputs:
        if spec.name not in source:
            if spec.required:
                raise InvalidInputError(spec.name, "required input is missing")
            continue
        values = np.asarray(source[spec.name])
        if values.ndim == 0:
            values = values.reshape(1)
        kind = np.float64 if spec.type in NUMERIC_TYPES else object
        columns[spec.name] = _convert(spec.name, values, kind)
    return columns


def _rows_to_columns(rows: Sequence[Any], inputs: Sequence[ColumnSpec]) -> dict[str, list[Any]]:
    columns: dict[str, list[Any]] = {spec.name: [] for spec in inputs}
    for index, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise TypeError(f"row {index} is a {type(row).__name__}, not a dict")
        for spec in inputs:
            if spec.name not in row and spec.required:
                raise InvalidInputError(spec.name, f"required input is missing in row {index}")
            columns[spec.name].append(row.get(spec.name))
    return {name: values for name, values in columns.items() if any(v is not None for v in values)}


def _convert(name: str, values: np.ndarray, kind: Any) -> np.ndarray:
    try:
        return values.astype(kind, copy=False)
    except (TypeError, ValueError):
        raise InvalidInputError(name, f"expects numbers, got {values.tolist()[:3]!r}") from None


def typed_frame(columns: Mapping[str, np.ndarray], inputs: Sequence[ColumnSpec]) -> pd.DataFrame:
    """A DataFrame with the dtypes the model was trained on; categories keep training levels."""
    import pandas as pd

    typed = typed_columns(columns, inputs)
    frame: dict[str, Any] = {}
    for spec in inputs:
        values = typed[spec.name]
        # Same categories in the same order as training, so formula terms like C(cyl) match.
        frame[spec.name] = (
            values if spec.categories is None else pd.Categorical(values, spec.categories)
        )
    return pd.DataFrame(frame)


def typed_columns(
    columns: Mapping[str, np.ndarray], inputs: Sequence[ColumnSpec]
) -> dict[str, np.ndarray]:
    """Input name -> array of the signature's type, every value checked (whole numbers,
    known categories); an absent optional input becomes NaN (numbers) or None (others)."""
    present = [np.asarray(columns[spec.name]) for spec in inputs if spec.name in columns]
    length = len(present[0]) if present else 0
    typed: dict[str, np.ndarray] = {}
    for spec in inputs:
        if spec.name not in columns:
            if spec.required:
                raise InvalidInputError(spec.name, "required input is missing")
            typed[spec.name] = np.full(length, np.nan if spec.type in NUMERIC_TYPES else None)
            continue
        values = np.asarray(columns[spec.name])
        if values.ndim != 1 or len(values) != length:
            raise InvalidInputError(spec.name, f"has shape {values.shape}, expected ({length},)")
        typed[spec.name] = _typed(spec, values)
    return typed


def _typed(spec: ColumnSpec, values: np.ndarray) -> np.ndarray:
    name = spec.name
    if spec.type in ("long", "integer"):
        numbers = _convert(name, values, np.float64)
        whole = np.isfinite(numbers) & (numbers == np.round(numbers))
        if not whole.all():
            bad = to_python(numbers[~whole][0])
            raise InvalidInputError(name, f"expects whole numbers, got {bad!r}")
        values = numbers.astype(np.int64)
    elif spec.type in ("double", "float"):
        values = _convert(name, values, np.float64)
    elif spec.type == "boolean":
        values = values.astype(bool)
    else:
        values = values.astype(object)
    if spec.categories is not None:
        allowed = set(spec.categories)
        known = np.fromiter((value in allowed for value in values.tolist()), bool, len(values))
        if not known.all():
            listed = ", ".join(repr(value) for value in spec.categories)
            bad = to_python(values[~known][0])
            raise InvalidInputError(name, f"unknown category {bad!r} (known: {listed})")
    return values
