"""Run by a peer's own venv python: train the benchmark models and save them its way.

The peers' scikit-learn may differ from the project's, so a pickle made by the project could
fail to load there; instead each peer venv trains the same models on the same data (mtcars,
features hp, wt, disp, qsec; LinearRegression and GradientBoostingRegressor(n_estimators=10,
max_depth=2, random_state=0)), which gives the same fitted models.

    python peer_train.py mlflow|mlserver MTCARS_CSV OUT_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

FEATURES = ["hp", "wt", "disp", "qsec"]


def models(csv: str) -> tuple[dict[str, object], object]:
    import pandas as pd
    from sklearn.ensemble import GradientBoostingRegressor
    from sklearn.linear_model import LinearRegression

    frame = pd.read_csv(csv)
    features = frame[FEATURES].astype("float64")
    target = frame["mpg"].astype("float64")
    return {
        "linear": LinearRegression().fit(features, target),
        "gbr": GradientBoostingRegressor(n_estimators=10, max_depth=2, random_state=0).fit(
            features, target
        ),
    }, features


def save_mlflow(csv: str, out: Path) -> None:
    import mlflow.sklearn
    from mlflow.models import infer_signature

    fitted, features = models(csv)
    for name, model in fitted.items():
        signature = infer_signature(features, model.predict(features))  # type: ignore[attr-defined]
        # mlflow 3's default (skops) refuses to load the GBR's tree type without a trust list;
        # cloudpickle is what mlflow used before and what the model zoo mostly holds.
        mlflow.sklearn.save_model(
            model,
            str(out / name),
            signature=signature,
            serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE,
        )


def save_mlserver(csv: str, out: Path) -> None:
    import joblib

    fitted, features = models(csv)
    for name, model in fitted.items():
        # MLServer hands the V2 tensor to predict() as a bare array: fit on one too, so every
        # request does not warn about missing feature names.
        model.fit(features.to_numpy(), models_target(csv))  # type: ignore[attr-defined]
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        joblib.dump(model, folder / "model.joblib")
        settings = {
            "name": name,
            "implementation": "mlserver_sklearn.SKLearnModel",
            "parameters": {"uri": "./model.joblib", "version": "v1"},
        }
        (folder / "model-settings.json").write_text(json.dumps(settings))


def models_target(csv: str) -> object:
    import pandas as pd

    return pd.read_csv(csv)["mpg"].astype("float64").to_numpy()


if __name__ == "__main__":
    kind, csv_path, out_dir = sys.argv[1:4]
    {"mlflow": save_mlflow, "mlserver": save_mlserver}[kind](csv_path, Path(out_dir))
