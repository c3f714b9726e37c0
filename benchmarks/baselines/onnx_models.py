"""What both baselines share: the ONNX sessions (stageserve's session options) and body types.

The models come from the environment variable BENCH_ONNX, a JSON object {name: model.onnx path}
written by the harness, so the baselines serve exactly the exports stageserve serves.
"""

from __future__ import annotations

import json
import os
from typing import Any

import msgspec
import numpy as np
import onnxruntime as ort

from registry_sync.runtimes.onnx import session_options

__all__ = ["Body", "OnnxModel", "Row", "load_models"]


class Row(msgspec.Struct):
    hp: float
    wt: float
    disp: float
    qsec: float


class Body(msgspec.Struct):
    inputs: list[Row]


class OnnxModel:
    """One session fed an [n, 4] matrix; `predict` returns a flat list of floats."""

    def __init__(self, path: str) -> None:
        self.session = ort.InferenceSession(
            path, sess_options=session_options(), providers=["CPUExecutionProvider"]
        )
        feed = self.session.get_inputs()[0]
        self.input = feed.name
        self.dtype: Any = np.float64 if feed.type == "tensor(double)" else np.float32

    def predict(self, body: Body) -> list[float]:
        matrix = np.array([(r.hp, r.wt, r.disp, r.qsec) for r in body.inputs], dtype=self.dtype)
        out = self.session.run(None, {self.input: matrix})[0]
        return np.asarray(out, dtype=np.float64).ravel().tolist()


def load_models() -> dict[str, OnnxModel]:
    paths: dict[str, str] = json.loads(os.environ["BENCH_ONNX"])
    return {name: OnnxModel(path) for name, path in paths.items()}
