"""Turn prediction input into typed columns and frames that match a model's signature."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from registry_sync.errors import InvalidInputError
from registry_sync.manifest import ColumnSpec
from registry_sync.signature import to_python

__all__ = ["NUMERIC_TYPES", "is_numeric", "to_columns", "typed_frame"]

NUMERIC_TYPES = frozenset({"double", "float", "long", "integer"})


def is_numeric(inputs: Sequence[ColumnSpec]) -> bool:
    """True when every input is a plain number, so a float64 matrix can carry them."""
    return all(spec.type in NUMERIC_TYPES and spec.categories is None for spec in inputs)


def to_columns(data: Any, inputs: Sequence[ColumnSpec]) -> dict[str, np.ndarray]:
    """A DataFrame, a list of row dicts, or a dict of columns -> input name -> 1-D array.

    Columns the signature does not name are ignored (a training frame still has its target).
    """
    if isinstance(data, pd.DataFrame):
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
    length = None
    frame: dict[str, Any] = {}
    for spec in inputs:
        values = columns.get(spec.name)
        if values is None:
            if spec.required:
                raise InvalidInputError(spec.name, "required input is missing")
            values = np.full(length or 0, np.nan if spec.type in NUMERIC_TYPES else None)
        values = np.asarray(values)
        if length is None:
            length = len(values)
        elif len(values) != length:
            raise InvalidInputError(spec.name, f"has {len(values)} values, expected {length}")
        frame[spec.name] = _typed(spec, values)
    return pd.DataFrame(frame)


def _typed(spec: ColumnSpec, values: np.ndarray) -> Any:
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
    if spec.categories is None:
        return values
    unknown = ~pd.Series(values).isin(spec.categories).to_numpy()
    if unknown.any():
        known = ", ".join(repr(value) for value in spec.categories)
        raise InvalidInputError(
            name, f"unknown category {to_python(values[unknown][0])!r} (known: {known})"
        )
    # Same categories in the same order as training, so formula terms like C(cyl) match levels.
    return pd.Categorical(values, categories=spec.categories)
