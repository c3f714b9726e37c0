"""Serve a pickled statsmodels results object (formula models included)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from registry_sync.errors import InvalidInputError
from registry_sync.manifest import Signature
from registry_sync.runtimes.columns import typed_frame

__all__ = ["StatsmodelsPredictor"]


class StatsmodelsPredictor:
    """`results.predict(frame)` on a frame typed like the training data."""

    engine = "statsmodels"

    def __init__(self, results: Any, signature: Signature) -> None:
        self.results = results
        self.input_names = tuple(spec.name for spec in signature.inputs)
        self._inputs = signature.inputs

    def predict_columns(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        # Unknown categories are caught by typed_frame with the column's name; patsy's own
        # error (a level the signature did not list) is translated at this boundary.
        frame = typed_frame(columns, self._inputs)
        try:
            prediction = self.results.predict(frame)
        except Exception as exc:
            if type(exc).__name__ != "PatsyError":
                raise
            column = next((n for n in self.input_names if n in str(exc)), "?")
            reason = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
            raise InvalidInputError(column, reason) from None
        return np.asarray(prediction, dtype=np.float64)

    def predict_matrix(self, matrix: np.ndarray) -> np.ndarray:
        raise TypeError("statsmodels is not a fast-path engine; use predict_columns")
