"""Serve a pickled scikit-learn estimator or pipeline."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from registry_sync.manifest import Signature
from registry_sync.runtimes.columns import is_numeric, typed_frame

__all__ = ["SklearnPredictor"]


class SklearnPredictor:
    """Calls `model.predict` with what it was fitted on: named columns or a bare array."""

    engine = "sklearn"

    def __init__(self, model: Any, signature: Signature) -> None:
        self.model = model
        self.input_names = tuple(spec.name for spec in signature.inputs)
        self._inputs = signature.inputs
        self._numeric = is_numeric(signature.inputs)
        # A model fitted on a DataFrame warns (and may misalign) when given a bare array.
        self._wants_frame = hasattr(model, "feature_names_in_")
        self._predict = model.predict

    def predict_columns(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        frame = typed_frame(columns, self._inputs)
        return _flat(self._predict(frame if self._wants_frame else frame.to_numpy()))

    def predict_matrix(self, matrix: np.ndarray) -> np.ndarray:
        if not self._numeric:
            raise TypeError("predict_matrix needs an all-numeric signature; use predict_columns")
        if self._wants_frame:
            return _flat(self._predict(pd.DataFrame(matrix, columns=self.input_names, copy=False)))
        return _flat(self._predict(matrix))


def _flat(result: Any) -> np.ndarray:
    array = np.asarray(result)
    return array.reshape(-1) if array.ndim == 2 and array.shape[1] == 1 else array
