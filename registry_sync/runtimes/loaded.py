"""A loaded model you can call from Python: a Predictor plus its manifest."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from registry_sync.package.manifest import Manifest, Signature
from registry_sync.package.read import ModelPackage, read_package
from registry_sync.runtimes.columns import to_columns

if TYPE_CHECKING:
    from registry_sync.runtimes import Predictor

__all__ = ["LoadedModel"]


class LoadedModel:
    """What `load(...)` returns: `predict` takes a DataFrame, row dicts, or a dict of columns."""

    def __init__(
        self, predictor: Predictor, package: ModelPackage, *, version: str | None = None
    ) -> None:
        self.predictor = predictor
        self.manifest: Manifest = package.manifest
        self.digest = package.digest
        self.path = package.path
        self.version = version

    @classmethod
    def from_path(
        cls, path: Path | str, *, prefer_onnx: bool = True, version: str | None = None
    ) -> LoadedModel:
        """Read, verify and load a package folder in one call."""
        from registry_sync.runtimes import load_predictor

        package = read_package(path)
        return cls(load_predictor(package, prefer_onnx=prefer_onnx), package, version=version)

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def engine(self) -> str:
        return self.predictor.engine

    @property
    def signature(self) -> Signature:
        return self.manifest.signature

    def predict(self, data: Any) -> np.ndarray:
        """Predictions as a numpy array: shape (n,) for one output, (n, k) for k."""
        return self.predictor.predict_columns(to_columns(data, self.signature.inputs))

    def __repr__(self) -> str:
        version = f" {self.version}" if self.version else ""
        return f"<LoadedModel {self.name}{version} engine={self.engine} digest={self.digest[:19]}>"
