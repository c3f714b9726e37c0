"""Convert scikit-learn models to ONNX and prove the export agrees with the original."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from registry_sync.errors import OnnxParityError, PackageError

__all__ = ["OnnxDtype", "check_parity", "convert_sklearn_model", "onnx_opset", "run_onnx"]

# "auto" tries double precision first (exact parity for linear models and pipelines) and falls
# back to float when a converter or onnxruntime kernel has no double version (tree ensembles).
OnnxDtype = Literal["auto", "double", "float"]


def convert_sklearn_model(model: Any, n_features: int, *, dtype: OnnxDtype = "auto") -> bytes:
    """One 2-D input tensor `input` of shape [None, n_features]; classifiers output labels."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType

    tried = ("double", "float") if dtype == "auto" else (dtype,)
    failures: list[str] = []
    for precision in tried:
        tensor = DoubleTensorType if precision == "double" else FloatTensorType
        # Plain arrays instead of a list of dicts: the runtime returns the first output as is.
        options = {id(model): {"zipmap": False}} if hasattr(model, "predict_proba") else None
        try:
            # A fixed graph name: skl2onnx's default is a random uuid, and the same model saved
            # twice must give the same bytes (and so the same digest and model.yaml).
            proto = convert_sklearn(
                model,
                name=type(model).__name__,
                initial_types=[("input", tensor([None, n_features]))],
                options=options,
            )
            data: bytes = proto.SerializeToString()
            # A graph that converts may still have no onnxruntime kernel for its types.
            run_onnx(data, np.zeros((1, n_features)))
        except Exception as exc:  # skl2onnx and onnxruntime raise many unrelated types
            failures.append(f"{precision}: {type(exc).__name__}: {exc}")
            continue
        return data
    raise PackageError(
        type(model).__name__, "cannot convert to ONNX: " + " | ".join(failures).splitlines()[0]
    )


def run_onnx(model_bytes: bytes, matrix: np.ndarray) -> np.ndarray:
    """The first output of an ONNX model fed one 2-D input, cast to the input's dtype."""
    import onnxruntime as ort

    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    feed = session.get_inputs()[0]
    dtype = np.float32 if feed.type == "tensor(float)" else np.float64
    result = np.asarray(session.run(None, {feed.name: matrix.astype(dtype)})[0])
    return result.reshape(-1) if result.ndim == 2 and result.shape[1] == 1 else result


def check_parity(
    model_bytes: bytes, matrix: np.ndarray, expected: Any, *, tolerance: float, where: str
) -> float:
    """The max abs difference between ONNX and `expected`; raise OnnxParityError over tolerance."""
    actual = run_onnx(model_bytes, matrix)
    wanted = np.asarray(expected)
    if wanted.ndim == 2 and wanted.shape[1] == 1:
        wanted = wanted.reshape(-1)
    if actual.shape != wanted.shape:
        raise OnnxParityError(where, float("inf"), tolerance)
    if wanted.dtype.kind in "OUSb":  # labels: any disagreement is infinitely far off
        diff = 0.0 if bool(np.all(actual.astype(wanted.dtype) == wanted)) else float("inf")
    else:
        diff = float(np.max(np.abs(actual.astype(np.float64) - wanted.astype(np.float64))))
    if not diff <= tolerance:  # also catches NaN
        raise OnnxParityError(where, diff, tolerance)
    return diff


def onnx_opset(model_bytes: bytes) -> int:
    """The version of the default ONNX operator set the model imports."""
    import onnx

    proto = onnx.load_model_from_string(model_bytes)
    for entry in proto.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    return 0
