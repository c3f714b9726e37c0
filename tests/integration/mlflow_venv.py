"""MLflow (the tracking server and its log_model) in a venv of its own, under `.venvs/`.

The full `mlflow` package brings pyarrow, and with pyarrow installed pandas 3 stores strings
in pyarrow arrays: every other test would then pickle and load different objects than users
without pyarrow get. So the MLflow tests' server and their model logging run here, with the
model libraries (scikit-learn, statsmodels, numpy, pandas, scipy, skl2onnx, onnx, onnxruntime,
skops) pinned to the dev venv's versions: a model logged here must load in the gateway.
Created on first use (~1-2 min from the package index), reused while the pins are the same.

    python tests/integration/mlflow_venv.py    # create it if needed; print its bin folder
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

__all__ = ["MLFLOW", "mlflow_bin", "requirements"]

MLFLOW = "mlflow==3.17.2"
_SAME_AS_DEV = (
    "scikit-learn", "statsmodels", "numpy", "pandas", "scipy", "skl2onnx", "onnx", "onnxruntime",
    "skops",
    # stageserve's model loader runs here too, where pyarrow is (test_model_file_arrow.py).
    "msgspec",
)  # fmt: skip
ROOT = Path(__file__).resolve().parents[2]


def requirements() -> list[str]:
    return [MLFLOW, *(f"{name}=={version(name)}" for name in _SAME_AS_DEV)]


def mlflow_bin() -> Path:
    """The venv's bin folder (mlflow, python), installing it when it is not there yet."""
    wanted = "\n".join(requirements()) + "\n"
    tag = hashlib.sha256(wanted.encode()).hexdigest()[:10]
    venv = ROOT / ".venvs" / f"{MLFLOW.replace('==', '-')}-{tag}"
    python = venv / "bin" / "python"
    stamp = venv / ".installed"
    if stamp.is_file() and python.is_file() and stamp.read_text() == wanted:
        return venv / "bin"
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         *requirements()],
        check=True, timeout=1200,
    )  # fmt: skip
    stamp.write_text(wanted)
    return venv / "bin"


if __name__ == "__main__":
    print(mlflow_bin())
