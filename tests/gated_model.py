"""A scikit-learn-like regressor whose predictions wait for a file: a load (its warm-up) that
takes exactly as long as a test wants, with no sleeps or timing in the test itself.

Unpickled by the gateway in real processes, so it lives in an importable module; a gateway
loads it only when told to trust it: `STAGESERVE_UNPICKLE_ALLOW='["tests.gated_model"]'`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from tests.models import NUMERIC_FEATURES, _data

__all__ = ["TRUST_GATED", "GatedRegressor", "save_gated_package"]

# The setting a gateway needs to load it (its own code runs while it loads).
TRUST_GATED = {"STAGESERVE_UNPICKLE_ALLOW": '["tests.gated_model"]'}

_MAX_WAIT_S = 120.0


class GatedRegressor:
    """Predicts like `inner`, but each call first waits (at most 2 min) until `gate` exists."""

    def __init__(self, inner: Any, gate: str) -> None:
        self.inner = inner
        self.gate = gate

    def predict(self, x: Any) -> Any:
        deadline = time.monotonic() + _MAX_WAIT_S
        while not os.path.exists(self.gate) and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.inner.predict(np.asarray(x, dtype=np.float64))


def save_gated_package(
    folder: Path, gate: Path, *, name: str = "cost_predictor", offset: float = 0.0
) -> Path:
    """A sklearn package of a gated LinearRegression on 4 mtcars features (`gate` must exist
    while saving: saving predicts on the example)."""
    from sklearn.linear_model import LinearRegression

    from registry_sync.package.save import save_sklearn

    frame = _data(1.0, offset)
    features = frame[list(NUMERIC_FEATURES[:4])]
    inner = LinearRegression().fit(features.to_numpy(), frame["mpg"].to_numpy())
    gate.touch()
    model = GatedRegressor(inner, str(gate))
    return save_sklearn(model, folder, example=features, name=name, serialization="pickle").path
