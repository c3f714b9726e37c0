"""Log and register real models with MLflow's own `log_model`, in a subprocess of the tests.

    python tests/mlflow_driver.py TRACKING_URL '[{"model": "cost", "flavor": "sklearn", ...}]'

Runs outside the pytest process (importing mlflow there would be slow and its warnings would
fail the suite's `filterwarnings = error`). For each request it trains a small model on
mtcars, logs it with a signature and an input example, registers it, and prints one JSON line:
the version MLflow gave it and what MLflow's own pyfunc predicts for the example's first row.
Flavors: sklearn (skops, MLflow 3's default), sklearn-gbr and sklearn-forest (tree ensembles
in skops), sklearn-pickle, statsmodels, onnx, pyfunc (a custom python model stageserve cannot
serve).
"""

from __future__ import annotations

import json
import sys
import warnings
from typing import Any

FEATURES = ["hp", "wt", "disp", "qsec"]
# Naming the requirements skips MLflow's inference of them (a subprocess per model, seconds).
FAST: dict[str, Any] = {"pip_requirements": ["scikit-learn"]}


def _frame(offset: float) -> Any:
    from registry_sync.package.data import mtcars

    data = mtcars()
    data["mpg"] = data["mpg"] + offset
    return data


def log(request: dict[str, Any]) -> dict[str, Any]:
    import mlflow
    import numpy as np
    import pandas as pd
    from mlflow.models import infer_signature

    # MLflow installs pyarrow, and pandas 3 then keeps strings (even column names) in pyarrow
    # arrays, which a pickle names: the gateway loads those only with pyarrow installed
    # (stageserve[arrow]; the dev venv has none, see tests/integration/mlflow_venv.py), so
    # these models keep Python-backed strings (test_model_file_arrow.py covers pyarrow ones).
    pd.set_option("mode.string_storage", "python")

    flavor = request["flavor"]
    offset = float(request.get("offset", 0.0))
    data = _frame(offset)
    features = data[FEATURES].astype("float64")
    target = data["mpg"]
    example = features.head(2)
    with mlflow.start_run():
        if flavor in ("sklearn", "sklearn-pickle", "onnx", "pyfunc"):
            from sklearn.linear_model import LinearRegression

            model = LinearRegression().fit(features, target)
            signature = infer_signature(features, model.predict(features))
        if flavor in ("sklearn-gbr", "sklearn-forest"):
            from sklearn.ensemble import GradientBoostingRegressor, RandomForestRegressor

            ensemble = (
                GradientBoostingRegressor(n_estimators=20, random_state=0)
                if flavor == "sklearn-gbr"
                else RandomForestRegressor(n_estimators=10, random_state=0)
            )
            model = ensemble.fit(features, target)
            signature = infer_signature(features, model.predict(features))
            # MLflow refuses to save a tree without this: skops does not trust its node
            # array by default (stageserve checks the nodes when it loads them).
            info = mlflow.sklearn.log_model(
                model, name="model", signature=signature, input_example=example,
                skops_trusted_types=["sklearn.tree._tree.Tree"], **FAST,
            )  # fmt: skip
        elif flavor == "sklearn":
            info = mlflow.sklearn.log_model(
                model, name="model", signature=signature, input_example=example, **FAST
            )
        elif flavor == "sklearn-pickle":
            info = mlflow.sklearn.log_model(
                model, name="model", signature=signature, serialization_format="pickle", **FAST
            )
        elif flavor == "statsmodels":
            import statsmodels.formula.api as smf

            frame = data[[*FEATURES, "mpg"]].astype("float64")
            results = smf.ols("mpg ~ hp + wt + disp + qsec", data=frame).fit()
            signature = infer_signature(features, results.predict(features).to_numpy())
            info = mlflow.statsmodels.log_model(
                results, name="model", signature=signature, input_example=example, **FAST
            )
        elif flavor == "onnx":
            from skl2onnx import to_onnx

            onnx_model = to_onnx(model, features.to_numpy()[:1], target_opset=17)
            matrix = features.to_numpy()
            signature = infer_signature(matrix, model.predict(matrix))
            info = mlflow.onnx.log_model(
                onnx_model, name="model", signature=signature, input_example=matrix[:2], **FAST
            )
        elif flavor == "pyfunc":

            class Doubler(mlflow.pyfunc.PythonModel):  # type: ignore[name-defined,misc]
                def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
                    return model_input["hp"] * 2

            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=Doubler(),
                signature=signature,
                input_example=example,
                **FAST,
            )
        else:
            raise SystemExit(f"unknown flavor {flavor}")
    registered = mlflow.register_model(info.model_uri, request["model"])
    loaded = mlflow.pyfunc.load_model(info.model_uri)
    first = example.to_numpy()[:1] if flavor == "onnx" else example.head(1)
    answer = loaded.predict(first)
    if isinstance(answer, dict):  # the onnx flavor answers {output name: array}
        answer = next(iter(answer.values()))
    prediction = np.asarray(answer).reshape(-1)[0]
    return {
        "model": request["model"],
        "version": str(registered.version),
        "flavor": flavor,
        "row": {name: float(example.iloc[0][name]) for name in FEATURES},
        "prediction": float(prediction),
    }


def main() -> None:
    import logging
    import os

    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    import mlflow

    warnings.filterwarnings("ignore")
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    mlflow.set_tracking_uri(sys.argv[1])
    for request in json.loads(sys.argv[2]):
        print(json.dumps(log(request)), flush=True)


if __name__ == "__main__":
    main()
