"""Log the MLflow walkthrough's models with MLflow's own client (README, "MLflow Model Registry").

    .venv/bin/python demo/mlflow_log.py http://127.0.0.1:5000

Registers two versions of `cost_predictor` (miles per gallon from hp, wt and cyl, mtcars):
version 1 a linear regression, version 2 a ridge regression, both with a signature and an input
example; points the alias @prod at version 1 and @staging at version 2. Run it once per fresh
tracking server (a second run adds versions 3 and 4).
"""

from __future__ import annotations

import argparse
import logging
import os
import warnings

MODEL = "cost_predictor"
FEATURES = ["hp", "wt", "cyl"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("tracking_uri", help="the tracking server, e.g. http://127.0.0.1:5000")
    parser.add_argument(
        "--wait-s", type=float, default=0, help="wait this long for the server to answer"
    )
    args = parser.parse_args()
    _wait_for(args.tracking_uri, args.wait_s)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    warnings.filterwarnings("ignore")
    logging.getLogger("mlflow").setLevel(logging.ERROR)

    import mlflow

    # With pyarrow installed (MLflow brings it) pandas 3 stores strings in pyarrow arrays that
    # a pickle would name; python-backed strings keep pickled models loadable without pyarrow.
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.linear_model import LinearRegression, Ridge

    from registry_sync.package.data import mtcars

    pd.set_option("mode.string_storage", "python")

    mlflow.set_tracking_uri(args.tracking_uri)
    data = mtcars()
    features = data[FEATURES].astype("float64")
    versions = []
    # Both are types skops loads without being told to trust more (a tree ensemble needs
    # skops_trusted_types when logged, and a trust setting where it is served).
    for estimator in (LinearRegression(), Ridge(alpha=100.0)):
        model = estimator.fit(features, data["mpg"])
        with mlflow.start_run(run_name=type(estimator).__name__):
            info = mlflow.sklearn.log_model(
                model,
                name="model",
                signature=infer_signature(features, model.predict(features)),
                input_example=features.head(2),
                pip_requirements=["scikit-learn"],
            )
        versions.append(mlflow.register_model(info.model_uri, MODEL).version)
    client = mlflow.MlflowClient()
    client.set_registered_model_alias(MODEL, "prod", versions[0])
    client.set_registered_model_alias(MODEL, "staging", versions[1])
    print(f"{MODEL}: version {versions[0]} @prod (linear), version {versions[1]} @staging (ridge)")


def _wait_for(url: str, timeout_s: float) -> None:
    import time
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"no MLflow tracking server answers at {url}")
        time.sleep(0.5)


if __name__ == "__main__":
    main()
