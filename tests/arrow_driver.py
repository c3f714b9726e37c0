"""Run in the MLflow venv (it has pyarrow): save a statsmodels model with MLflow's own
save_model while pandas keeps strings in pyarrow arrays, and load it (and crafted pickles)
with stageserve's restricted unpickler. Prints one JSON object for the test to check.

    PYTHONPATH=. .venvs/mlflow-…/bin/python tests/arrow_driver.py OUT_DIR
"""

from __future__ import annotations

import json
import pickle
import sys
import warnings
from pathlib import Path
from typing import Any

FEATURES = ["hp", "wt", "disp", "qsec"]


class _Calls:
    """Pickles as a call of `func(*args)`: what a crafted model file can hold."""

    def __init__(self, func: Any, *args: Any) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return self.func, self.args


def _outcome(data: bytes) -> str:
    from registry_sync.runtimes.safe_load.policy import RefusedError
    from registry_sync.runtimes.safe_load.unpickler import restricted_loads

    try:
        restricted_loads(data)
    except RefusedError as exc:
        return f"refused {exc}"
    return "loaded"


def main() -> None:
    warnings.filterwarnings("ignore")
    import mlflow.pyfunc
    import mlflow.statsmodels
    import pandas as pd
    import pyarrow as pa
    import pyarrow.csv
    import statsmodels.formula.api as smf

    from registry_sync.package.data import mtcars
    from registry_sync.runtimes.safe_load.unpickler import restricted_loads

    out = Path(sys.argv[1])
    frame = mtcars()[[*FEATURES, "mpg"]].astype("float64")
    assert pd.get_option("mode.string_storage") in ("auto", "pyarrow")  # MLflow's default env
    results = smf.ols("mpg ~ hp + wt + disp + qsec", data=frame).fit()
    mlflow.statsmodels.save_model(results, str(out / "model"), pip_requirements=["statsmodels"])
    data = (out / "model" / "model.statsmodels").read_bytes()
    row = frame[FEATURES].head(1)
    loaded = restricted_loads(data)
    array = pa.array(["a", "b"])
    # An int64 array claiming 1000 values over an 8-byte buffer: reading it runs past it.
    too_long = (pa.int64(), 1000, 0, 0, [None, pa.py_buffer(b"\x01" * 8)], [], None)
    report = {
        "names_restore_array": b"_restore_array" in data,
        "prediction": float(loaded.predict(row).iloc[0]),
        "mlflow_prediction": float(mlflow.pyfunc.load_model(str(out / "model")).predict(row)[0]),
        "string_array": _outcome(pickle.dumps(array)),
        "read_csv": _outcome(pickle.dumps(_Calls(pyarrow.csv.read_csv, "/etc/hostname"))),
        "memory_map": _outcome(pickle.dumps(_Calls(pa.memory_map, "/etc/hostname"))),
        "too_long": _outcome(pickle.dumps(_Calls(pa.lib._restore_array, too_long))),
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
