"""Load a model package into a Predictor: the one interface the gateway calls, any engine."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

import numpy as np

from registry_sync.errors import UnsupportedFormatError
from registry_sync.package.read import ModelPackage
from registry_sync.runtimes.loaded import LoadedModel
from registry_sync.runtimes.safe_load.policy import LoadPolicy

__all__ = ["LoadPolicy", "LoadedModel", "Predictor", "load_predictor"]


@runtime_checkable
class Predictor(Protocol):
    engine: str
    """What actually runs: "onnx", "sklearn" or "statsmodels"."""
    input_names: tuple[str, ...]
    """The signature's input names, in signature order."""

    def predict_columns(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        """Input name -> 1-D array, all of length n (numbers float64, strings object).

        Returns shape (n,) for one output or (n, k) for k outputs.
        """
        ...

    def predict_matrix(self, matrix: np.ndarray) -> np.ndarray:
        """An (n, len(input_names)) float64 array in signature order; all-numeric signatures
        only (TypeError otherwise). The fast path for onnx and sklearn: no dict, no pandas."""
        ...


def load_predictor(
    package: ModelPackage, *, prefer_onnx: bool = True, policy: LoadPolicy | None = None
) -> Predictor:
    """A ready Predictor; every artifact is re-hashed before use and deserialized under
    `policy` (the allowlist of safe_load/policy.py by default): a file that names anything
    else is refused (UnsafeArtifactError) before any of it runs."""
    from registry_sync.runtimes.artifact import load_model_object, read_onnx_verified

    policy = policy or LoadPolicy()
    manifest = package.manifest
    where = str(package.path)
    export = manifest.onnx_export
    if manifest.format == "onnx" or (manifest.format == "sklearn" and prefer_onnx and export):
        from registry_sync.runtimes.onnx import OnnxPredictor

        relative = export.path if export else _artifact(package, ".onnx")
        return OnnxPredictor(read_onnx_verified(package, relative), manifest.signature, where)
    if manifest.format == "sklearn":
        from registry_sync.runtimes.sklearn import SklearnPredictor

        model = load_model_object(package, _artifact(package, ".skops", ".pkl"), policy)
        return SklearnPredictor(model, manifest.signature)
    if manifest.format == "statsmodels":
        from registry_sync.runtimes.statsmodels import StatsmodelsPredictor

        results = load_model_object(package, _artifact(package, ".pkl"), policy)
        return StatsmodelsPredictor(results, manifest.signature, manifest.input_example)
    raise UnsupportedFormatError(where, manifest.format)


def _artifact(package: ModelPackage, *suffixes: str) -> str:
    """The package's main artifact: the first listed file with the first suffix that any file
    has, else the first file."""
    files = [entry.path for entry in package.manifest.files]
    for suffix in suffixes:
        found = next((path for path in files if path.endswith(suffix)), None)
        if found is not None:
            return found
    return files[0]
