"""Output validation: one prediction per row, of the declared type, finite; else ValueError.

A non-finite value is a `NonFiniteOutputError` naming the row: a version that passed its
warm-up computes finite outputs for sane inputs, so this is the request's inputs being out of
the range the model can compute with (e.g. wt=-1.79e308 overflowing a linear model), a 422.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from registry_sync.package.manifest import ColumnSpec

__all__ = ["NonFiniteOutputError", "OutputCheck"]


class NonFiniteOutputError(ValueError):
    def __init__(self, output: str, row: int) -> None:
        self.output = output
        self.row = row
        super().__init__(f"output {output!r}: non-finite value (row {row})")


def _first_non_finite(values: np.ndarray) -> int:
    return int(np.flatnonzero(~np.isfinite(values))[0])


_NUMERIC = frozenset({"double", "float", "long", "integer", "boolean"})


class OutputCheck:
    """Built once per version from its signature's outputs."""

    def __init__(self, outputs: list[ColumnSpec]) -> None:
        self.outputs = tuple(outputs)
        self.output_names = tuple(c.name for c in self.outputs)
        self._one_number = len(self.outputs) == 1 and self.outputs[0].type in ("double", "float")

    def predictions(self, out: Any, n: int) -> list[Any]:
        """Check a model's output (one prediction per row, declared type, finite) and turn it
        into JSON-ready values; raise ValueError naming what is wrong."""
        out = np.asarray(out)
        if self._one_number and out.dtype.kind == "f" and out.shape in ((n,), (n, 1)):
            # The common case (one numeric output), without dtype conversions: a Python
            # isfinite loop beats numpy's per-call overhead for the few rows of most requests.
            values: list[float] = out.reshape(n).tolist()
            finite = all(map(math.isfinite, values)) if n <= 64 else np.isfinite(out).all()
            if not finite:
                raise NonFiniteOutputError(self.output_names[0], _first_non_finite(out.reshape(n)))
            return values
        k = len(self.outputs)
        if k == 1:
            if out.ndim == 2 and out.shape[1] == 1:
                out = out[:, 0]
            if out.ndim != 1 or out.shape[0] != n:
                raise ValueError(f"expected {n} predictions, got shape {out.shape}")
            return _check_column(out, self.outputs[0]).tolist()  # type: ignore[no-any-return]
        if out.ndim != 2 or out.shape != (n, k):
            raise ValueError(f"expected shape ({n}, {k}), got {out.shape}")
        cols = [_check_column(out[:, j], spec).tolist() for j, spec in enumerate(self.outputs)]
        names = self.output_names
        return [dict(zip(names, row, strict=True)) for row in zip(*cols, strict=True)]


def _check_column(col: np.ndarray, spec: ColumnSpec) -> np.ndarray:
    kind = col.dtype.kind
    if kind == "O" and spec.type in _NUMERIC and spec.type != "boolean":
        # A multi-output model with mixed types hands back an object array; its numeric
        # columns must still hold real numbers (not strings that happen to parse).
        if not all(isinstance(v, int | float | np.number) for v in col.tolist()):
            raise ValueError(f"output {spec.name!r}: expected numbers")
        col = col.astype(np.float64)
        kind = "f"
    if spec.type in ("double", "float"):
        if kind not in "fiub":
            raise ValueError(f"output {spec.name!r}: expected numbers, got dtype {col.dtype}")
        if kind == "f" and not np.isfinite(col).all():
            raise NonFiniteOutputError(spec.name, _first_non_finite(col))
        return col.astype(np.float64, copy=False)
    if spec.type in ("long", "integer"):
        if kind == "f":
            if not np.isfinite(col).all():
                raise NonFiniteOutputError(spec.name, _first_non_finite(col))
            if not (col == np.round(col)).all():
                raise ValueError(f"output {spec.name!r}: expected integers")
            return col.astype(np.int64)
        if kind not in "iub":
            raise ValueError(f"output {spec.name!r}: expected integers, got dtype {col.dtype}")
        return col
    if spec.type == "boolean":
        if kind != "b":
            raise ValueError(f"output {spec.name!r}: expected booleans, got dtype {col.dtype}")
        return col
    if kind in "US":
        return col.astype(object)
    if kind != "O" or not all(isinstance(v, str) for v in col.tolist()):
        raise ValueError(f"output {spec.name!r}: expected strings")
    return col
