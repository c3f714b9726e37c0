"""Save a model package from a live object: scikit-learn, statsmodels or ONNX."""

from __future__ import annotations

import pickle
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from registry_sync.errors import PackageError
from registry_sync.package.manifest import OnnxExport, Signature
from registry_sync.package.onnx_convert import (
    OnnxDtype,
    check_parity,
    convert_sklearn_model,
    onnx_opset,
    run_onnx,
)
from registry_sync.package.read import ModelPackage
from registry_sync.package.signature import infer_signature
from registry_sync.package.write import Card, library_versions, manifest_fields, write_package

__all__ = ["onnx_package_from_sklearn", "save_onnx", "save_sklearn", "save_statsmodels"]

PICKLE_PROTOCOL = 5
Serialization = Literal["skops", "pickle"]
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def save_sklearn(
    model: Any,
    path: Path | str,
    *,
    example: pd.DataFrame,
    name: str,
    signature: Signature | None = None,
    metrics: Mapping[str, float] | None = None,
    card: Card = None,
    labels: Sequence[str] | None = None,
    export_onnx: bool = False,
    onnx_tolerance: float = 1e-4,
    onnx_dtype: OnnxDtype = "auto",
    serialization: Serialization = "skops",
) -> ModelPackage:
    """Save an estimator or pipeline as model.skops (skops: loading it runs no code from the
    file) or, with `serialization="pickle"`, model.pkl; optionally with a verified model.onnx."""
    example = _model_columns(example, getattr(model, "feature_names_in_", None))
    signature = signature or infer_signature(example, _sklearn_predict(model, example))
    if serialization == "skops":
        files = {"model.skops": _skops_bytes(model)}
    elif serialization == "pickle":
        files = {"model.pkl": pickle.dumps(model, protocol=PICKLE_PROTOCOL)}
    else:
        raise ValueError(f"serialization must be 'skops' or 'pickle', not {serialization!r}")
    libraries = library_versions("sklearn", *(["skops"] if serialization == "skops" else []))
    export = None
    if export_onnx:
        onnx_bytes, export = _export(
            model, example, signature, tolerance=onnx_tolerance, dtype=onnx_dtype, path=path
        )
        files["model.onnx"] = onnx_bytes
        libraries |= library_versions("onnx", "onnxruntime", "skl2onnx")
    fields = manifest_fields(
        name,
        "sklearn",
        signature,
        example,
        metrics=metrics,
        card=card,
        labels=labels,
        libraries=libraries,
    )
    return write_package(path, fields | {"onnx_export": export}, files)


def onnx_package_from_sklearn(
    model: Any,
    path: Path | str,
    *,
    example: pd.DataFrame,
    name: str,
    signature: Signature | None = None,
    metrics: Mapping[str, float] | None = None,
    card: Card = None,
    labels: Sequence[str] | None = None,
    tolerance: float = 1e-4,
    onnx_dtype: OnnxDtype = "auto",
) -> ModelPackage:
    """A format `onnx` package converted from a scikit-learn model, parity-checked."""
    example = _model_columns(example, getattr(model, "feature_names_in_", None))
    signature = signature or infer_signature(example, _sklearn_predict(model, example))
    onnx_bytes, export = _export(
        model, example, signature, tolerance=tolerance, dtype=onnx_dtype, path=path
    )
    libraries = library_versions("sklearn", "onnx", "onnxruntime", "skl2onnx")
    fields = manifest_fields(
        name,
        "onnx",
        signature,
        example,
        metrics=metrics,
        card=card,
        labels=labels,
        libraries=libraries,
    )
    return write_package(path, fields | {"onnx_export": export}, {"model.onnx": onnx_bytes})


def save_statsmodels(
    results: Any,
    path: Path | str,
    *,
    example: pd.DataFrame,
    name: str,
    signature: Signature | None = None,
    metrics: Mapping[str, float] | None = None,
    card: Card = None,
    labels: Sequence[str] | None = None,
) -> ModelPackage:
    """Pickle a statsmodels results object; the example keeps only the formula's variables."""
    example = _model_columns(example, None)
    formula = getattr(results.model, "formula", None)
    if formula:
        rhs = str(formula).split("~", 1)[-1]
        used = set(_IDENTIFIER.findall(rhs))
        example = example[[column for column in example.columns if column in used]]
    signature = signature or infer_signature(example, np.asarray(results.predict(example)))
    # Not results.remove_data(): statsmodels rebuilds a formula model's design from the stored
    # frame when unpickling, so a package without data would not load.
    files = {"model.pkl": pickle.dumps(results, protocol=PICKLE_PROTOCOL)}
    fields = manifest_fields(
        name,
        "statsmodels",
        signature,
        example,
        metrics=metrics,
        card=card,
        labels=labels,
        libraries=library_versions("statsmodels"),
    )
    return write_package(path, fields | {"formula": str(formula) if formula else None}, files)


def save_onnx(
    model: Any,
    path: Path | str,
    *,
    example: pd.DataFrame,
    name: str,
    signature: Signature | None = None,
    metrics: Mapping[str, float] | None = None,
    card: Card = None,
    labels: Sequence[str] | None = None,
) -> ModelPackage:
    """Save an ONNX model (a ModelProto, bytes, or a file path) checked to run on the example."""
    if isinstance(model, bytes):
        onnx_bytes = model
    elif isinstance(model, str | Path):
        onnx_bytes = Path(model).read_bytes()
    else:
        onnx_bytes = model.SerializeToString()
    example = _model_columns(example, None)
    try:
        prediction = _run_on_example(onnx_bytes, example)
    except Exception as exc:  # onnxruntime raises its own untyped failures
        raise PackageError(str(path), f"the ONNX model does not run on the example: {exc}") from exc
    signature = signature or infer_signature(example, prediction)
    libraries = library_versions("onnx", "onnxruntime")
    fields = manifest_fields(
        name,
        "onnx",
        signature,
        example,
        metrics=metrics,
        card=card,
        labels=labels,
        libraries=libraries,
    )
    return write_package(path, fields, {"model.onnx": onnx_bytes})


def _run_on_example(onnx_bytes: bytes, example: pd.DataFrame) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    inputs = session.get_inputs()
    if len(inputs) == 1 and inputs[0].name not in example.columns:
        return run_onnx(onnx_bytes, example.to_numpy(dtype=np.float64))
    feed = {i.name: example[[i.name]].to_numpy(dtype=_numpy_type(i.type)) for i in inputs}
    result = np.asarray(session.run(None, feed)[0])
    return result.reshape(-1) if result.ndim == 2 and result.shape[1] == 1 else result


def _numpy_type(onnx_type: str) -> Any:
    return {"tensor(float)": np.float32, "tensor(double)": np.float64}.get(onnx_type, object)


def _export(
    model: Any,
    example: pd.DataFrame,
    signature: Signature,
    *,
    tolerance: float,
    dtype: OnnxDtype,
    path: Path | str,
) -> tuple[bytes, OnnxExport]:
    numeric = ("double", "float", "long", "integer", "boolean")
    text = [spec.name for spec in signature.inputs if spec.type not in numeric]
    if text:
        raise PackageError(str(path), f"ONNX export needs numeric inputs; not: {', '.join(text)}")
    columns = [spec.name for spec in signature.inputs]
    matrix = example[columns].to_numpy(dtype=np.float64)
    onnx_bytes = convert_sklearn_model(model, len(columns), dtype=dtype)
    expected = _sklearn_predict(model, example[columns])
    diff = check_parity(onnx_bytes, matrix, expected, tolerance=tolerance, where=str(path))
    return onnx_bytes, OnnxExport(
        path="model.onnx", max_abs_diff=diff, opset=onnx_opset(onnx_bytes)
    )


def _skops_bytes(model: Any) -> bytes:
    """skops, deflated (a 60-tree boosting model: 1.5 MB stored, 0.25 MB deflated)."""
    import zipfile

    import skops.io

    data: bytes = skops.io.dumps(model, compression=zipfile.ZIP_DEFLATED, compresslevel=6)
    return data


def _sklearn_predict(model: Any, frame: pd.DataFrame) -> Any:
    # A model fitted on a bare array warns when given column names; give it what it was fitted on.
    if hasattr(model, "feature_names_in_"):
        return model.predict(frame)
    return model.predict(frame.to_numpy())


def _model_columns(example: pd.DataFrame, feature_names: Any) -> pd.DataFrame:
    if not isinstance(example, pd.DataFrame) or example.empty:
        raise TypeError("example must be a non-empty pandas DataFrame of model inputs")
    if feature_names is None:
        return example
    return example[[str(column) for column in feature_names]]
