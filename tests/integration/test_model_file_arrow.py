"""A statsmodels model MLflow saves where pyarrow is installed (MLflow brings it; pandas then
keeps strings, column names too, in pyarrow arrays) loads under the allowlist by default,
while a pickle calling anything else of pyarrow, or rebuilding an array longer than its
buffers, is refused. Runs in the MLflow venv: the dev venv has no pyarrow (see
tests/integration/mlflow_venv.py)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.integration.mlflow_venv import mlflow_bin
from tests.integration.server import ROOT

pytestmark = pytest.mark.slow


def test_an_mlflow_statsmodels_model_with_pyarrow_strings_loads_and_other_pyarrow_is_refused(
    tmp_path: Path,
) -> None:
    done = subprocess.run(
        [str(mlflow_bin() / "python"), str(ROOT / "tests" / "arrow_driver.py"), str(tmp_path)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["names_restore_array"]  # the model really holds pyarrow arrays
    # The same fitted coefficients, the same statsmodels predict: equal to 1e-12 relative
    # (MLflow's pyfunc may hand statsmodels a copy of the row, not the same path bit for bit).
    assert report["prediction"] == pytest.approx(report["mlflow_prediction"], rel=1e-12)
    assert report["string_array"] == "loaded"
    assert report["read_csv"].startswith("refused pyarrow._csv.read_csv: 'pyarrow' is not")
    assert report["memory_map"].startswith("refused pyarrow.lib.memory_map: 'pyarrow' is not")
    assert report["too_long"].startswith("refused pyarrow.lib._restore_array: the array")
