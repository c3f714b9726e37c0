"""A tiny fake Predictor and loader for unit tests of one gateway class (no model files)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from gateway.errors import ModelLoadError
from gateway.pool.loaded import LoadedVersion, warm_up
from gateway.schema.request_schema import RequestSchema
from registry_sync.package.manifest import ColumnSpec, FileEntry, Manifest, Signature
from registry_sync.sync.snapshot import DesiredEntry, DesiredState

SIGNATURE = Signature(
    inputs=[ColumnSpec(name="hp", type="double"), ColumnSpec(name="wt", type="double")],
    outputs=[ColumnSpec(name="mpg", type="double")],
)


def manifest(name: str = "cost") -> Manifest:
    return Manifest(
        name=name,
        format="onnx",
        files=[FileEntry(path="model.onnx", sha256="0" * 64, size_bytes=1)],
        signature=SIGNATURE,
        input_example=[{"hp": 110.0, "wt": 2.62}],
    )


class FakePredictor:
    """Predicts `hp * scale`; counts calls; `closed` once released."""

    engine = "onnx"
    input_names = ("hp", "wt")

    def __init__(self, scale: float) -> None:
        self.scale = scale
        self.calls = 0
        self.closed = False

    def predict_matrix(self, matrix: np.ndarray) -> np.ndarray:
        self.calls += 1
        return matrix[:, 0] * self.scale

    def predict_columns(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        self.calls += 1
        return columns["hp"] * self.scale

    def close(self) -> None:
        self.closed = True


class FakeLoader:
    """Loads versions named `vN` with scale N; versions listed in `broken` fail to load."""

    def __init__(
        self,
        log: list[str] | None = None,
        broken: set[str] | None = None,
        before_load: Callable[[DesiredEntry], None] | None = None,
    ) -> None:
        self.log = log if log is not None else []
        self.broken = broken or set()
        self.before_load = before_load
        self.loaded: dict[tuple[str, str], LoadedVersion] = {}

    def __call__(self, e: DesiredEntry) -> LoadedVersion:
        if self.before_load is not None:
            self.before_load(e)
        self.log.append(f"load {e.model} {e.version}")
        if e.version in self.broken:
            raise ModelLoadError(e.model, e.version, "artifact is corrupt")
        lv = LoadedVersion(
            model=e.model,
            version=e.version,
            digest=e.digest,
            package_path=e.package_path,
            manifest=manifest(e.model),
            predictor=FakePredictor(float(e.version.lstrip("v"))),
            schema=RequestSchema(SIGNATURE),
        )
        warm_up(lv)
        self.loaded[(e.model, e.version)] = lv
        return lv


def entry(model: str, stage: str, version: str) -> DesiredEntry:
    return DesiredEntry(
        model=model,
        stage=stage,
        version=version,
        package_path=f"/packages/{model}/{version}",
        digest=f"sha256:{model}-{version}",
    )


def state(*entries: DesiredEntry) -> DesiredState:
    return DesiredState(
        generated_at="2026-01-01T00:00:00Z", registry="tests", entries=list(entries)
    )
