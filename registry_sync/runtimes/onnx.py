"""Serve an ONNX model with onnxruntime, tuned for small, frequent calls."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from registry_sync.errors import InvalidInputError, PackageError
from registry_sync.package.manifest import Signature
from registry_sync.runtimes.columns import NUMERIC_TYPES, is_numeric, typed_columns

__all__ = ["OnnxPredictor", "session_options"]

_NUMPY_TYPES: dict[str, Any] = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(bool)": np.bool_,
    "tensor(string)": object,
}


def session_options() -> Any:
    """One thread, sequential: a gateway request is a handful of rows, and thread pools cost
    more to wake than a small graph costs to run; concurrency comes from serving requests."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options


class OnnxPredictor:
    """Feeds either one [n, k] matrix input or one input per signature column."""

    engine = "onnx"

    def __init__(self, model_bytes: bytes, signature: Signature, where: str) -> None:
        import onnxruntime as ort

        self.session = ort.InferenceSession(
            model_bytes, sess_options=session_options(), providers=["CPUExecutionProvider"]
        )
        self.input_names = tuple(spec.name for spec in signature.inputs)
        # Categories of a numeric input are still numbers to ONNX (unlike to statsmodels or a
        # pandas pipeline), so they ride in the float matrix; membership is checked by the
        # gateway's decoder and, for direct callers, by predict_columns.
        self._numeric = all(spec.type in NUMERIC_TYPES for spec in signature.inputs)
        self._inputs = tuple(signature.inputs)
        self._categorical = not is_numeric(signature.inputs)
        feeds = self.session.get_inputs()
        self._output = self.session.get_outputs()[0].name
        # A float32 export of a double-typed model answers in float64 like the original does.
        wants_double = bool(signature.outputs) and signature.outputs[0].type == "double"
        self._widen = wants_double and self.session.get_outputs()[0].type == "tensor(float)"
        if len(feeds) == 1 and feeds[0].name not in self.input_names:
            if not self._numeric:
                raise PackageError(where, "a one-tensor ONNX model needs all-numeric inputs")
            self._matrix_input: str | None = feeds[0].name
            self._matrix_dtype = _NUMPY_TYPES.get(feeds[0].type, np.float32)
            self._column_feeds: list[tuple[str, Any, bool]] = []
        else:
            missing = [feed.name for feed in feeds if feed.name not in self.input_names]
            if missing:
                raise PackageError(where, f"ONNX inputs not in the signature: {missing}")
            self._matrix_input = None
            self._matrix_dtype = np.float64
            self._column_feeds = [
                (feed.name, _NUMPY_TYPES.get(feed.type, np.float32), len(feed.shape) == 2)
                for feed in feeds
            ]

    def predict_columns(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        if self._categorical:
            typed_columns(columns, self._inputs)  # raises InvalidInputError naming the input
        if self._matrix_input is not None:
            matrix = np.column_stack([_column(columns, name) for name in self.input_names])
            return self.predict_matrix(matrix)
        feed = {}
        for name, dtype, two_d in self._column_feeds:
            values = np.asarray(_column(columns, name)).astype(dtype, copy=False)
            feed[name] = values.reshape(-1, 1) if two_d else values
        return self._run(feed)

    def predict_matrix(self, matrix: np.ndarray) -> np.ndarray:
        if not self._numeric:
            raise TypeError("predict_matrix needs an all-numeric signature; use predict_columns")
        if self._matrix_input is None:
            return self.predict_columns(dict(zip(self.input_names, matrix.T, strict=True)))
        return self._run({self._matrix_input: matrix.astype(self._matrix_dtype, copy=False)})

    def _run(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        result = np.asarray(self.session.run([self._output], feed)[0])
        if self._widen:
            result = result.astype(np.float64)
        return result.reshape(-1) if result.ndim == 2 and result.shape[1] == 1 else result


def _column(columns: Mapping[str, np.ndarray], name: str) -> np.ndarray:
    try:
        return columns[name]
    except KeyError:
        raise InvalidInputError(name, "required input is missing") from None
