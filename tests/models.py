"""Tiny real models and saved packages for tests anywhere in the suite.

Every trainer takes `scale` and `offset`: the target becomes `mpg * scale + offset`, so two
versions of the "same" model give predictably different answers (swap tests tell them apart).
All data is mtcars (32 rows); everything trains in milliseconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from registry_sync.package.data import mtcars
from registry_sync.package.manifest import ModelCard
from registry_sync.package.save import (
    onnx_package_from_sklearn,
    save_sklearn,
    save_statsmodels,
)

__all__ = [
    "COST_FORMULA",
    "NUMERIC_FEATURES",
    "example_rows",
    "save_classifier_package",
    "save_onnx_package",
    "save_sklearn_package",
    "save_statsmodels_package",
    "save_string_input_package",
    "train_cost_predictor_statsmodels",
    "train_sklearn_classifier",
    "train_sklearn_gbr",
    "train_sklearn_linear",
]

COST_FORMULA = "mpg ~ hp + C(cyl) + wt - 1"
NUMERIC_FEATURES = ("hp", "wt", "disp", "qsec", "drat")
CARD = ModelCard(
    description="Fuel use (mpg) from horsepower, weight and cylinders",
    intended_use="tests",
    limitations="32 cars from 1974",
    owner="tests",
    training_data="mtcars",
)


def _data(scale: float, offset: float) -> pd.DataFrame:
    frame = mtcars()
    frame["mpg"] = frame["mpg"] * scale + offset
    return frame


def example_rows(
    n: int = 3, features: tuple[str, ...] = NUMERIC_FEATURES[:4]
) -> list[dict[str, float]]:
    """The first n mtcars rows as JSON-ready dicts of `features`."""
    frame = mtcars().head(n)
    return [{name: float(row[name]) for name in features} for _, row in frame.iterrows()]


def train_cost_predictor_statsmodels(scale: float = 1.0, offset: float = 0.0) -> Any:
    """The seed article's OLS fit, `mpg ~ hp + C(cyl) + wt - 1` (scale=1, offset=0)."""
    import statsmodels.formula.api as smf

    return smf.ols(COST_FORMULA, data=_data(scale, offset)).fit()


def train_sklearn_linear(
    n_features: int = 4, *, scale: float = 1.0, offset: float = 0.0
) -> tuple[Any, pd.DataFrame]:
    """A LinearRegression on the first n_features of NUMERIC_FEATURES; returns (model, X)."""
    from sklearn.linear_model import LinearRegression

    frame = _data(scale, offset)
    features = frame[list(NUMERIC_FEATURES[:n_features])]
    return LinearRegression().fit(features, frame["mpg"]), features


def train_sklearn_gbr(
    n_features: int = 4, *, scale: float = 1.0, offset: float = 0.0, seed: int = 0
) -> tuple[Any, pd.DataFrame]:
    """A small GradientBoostingRegressor (10 trees of depth 2); returns (model, X)."""
    from sklearn.ensemble import GradientBoostingRegressor

    frame = _data(scale, offset)
    features = frame[list(NUMERIC_FEATURES[:n_features])]
    model = GradientBoostingRegressor(n_estimators=10, max_depth=2, random_state=seed)
    return model.fit(features, frame["mpg"]), features


def train_sklearn_classifier() -> tuple[Any, pd.DataFrame]:
    """A LogisticRegression telling manual from automatic gearboxes by hp and wt (string labels)."""
    from sklearn.linear_model import LogisticRegression

    frame = mtcars()
    labels = frame["am"].map({0: "automatic", 1: "manual"})
    features = frame[["hp", "wt"]]
    return LogisticRegression(max_iter=1000).fit(features, labels), features


def save_sklearn_package(
    folder: Path,
    *,
    name: str = "cost_predictor",
    n_features: int = 4,
    scale: float = 1.0,
    offset: float = 0.0,
    export_onnx: bool = False,
    gbr: bool = False,
) -> Path:
    """Train and save a scikit-learn package into `folder`; returns the package path."""
    train = train_sklearn_gbr if gbr else train_sklearn_linear
    model, features = train(n_features, scale=scale, offset=offset)
    package = save_sklearn(
        model,
        folder,
        example=features,
        name=name,
        metrics={"r2": float(model.score(features, _data(scale, offset)["mpg"]))},
        card=CARD,
        labels=["tests", "mtcars"],
        export_onnx=export_onnx,
    )
    return package.path


def save_statsmodels_package(
    folder: Path, *, name: str = "cost_predictor", scale: float = 1.0, offset: float = 0.0
) -> Path:
    """The seed article's model saved as a statsmodels package; returns the package path."""
    results = train_cost_predictor_statsmodels(scale, offset)
    package = save_statsmodels(
        results,
        folder,
        example=mtcars(),
        name=name,
        metrics={"r2": float(results.rsquared)},
        card=CARD,
        labels=["tests", "mtcars"],
    )
    return package.path


def save_onnx_package(
    folder: Path,
    *,
    name: str = "cost_predictor",
    n_features: int = 4,
    scale: float = 1.0,
    offset: float = 0.0,
) -> Path:
    """A format `onnx` package converted from a LinearRegression; returns the package path."""
    model, features = train_sklearn_linear(n_features, scale=scale, offset=offset)
    package = onnx_package_from_sklearn(
        model, folder, example=features, name=name, card=CARD, labels=["tests", "mtcars"]
    )
    return package.path


def save_classifier_package(folder: Path, *, name: str = "gearbox", onnx: bool = False) -> Path:
    """A string-label classifier package, as sklearn (or format onnx); returns its path."""
    model, features = train_sklearn_classifier()
    if onnx:
        return onnx_package_from_sklearn(model, folder, example=features, name=name).path
    return save_sklearn(model, folder, example=features, name=name).path


def save_string_input_package(folder: Path, *, name: str = "fuel_by_gearbox") -> Path:
    """A statsmodels OLS with a string input: `mpg ~ hp + wt + C(gearbox)`, gearbox one of
    "automatic", "manual" (for clients that send text: V2 BYTES tensors)."""
    import statsmodels.formula.api as smf

    frame = mtcars()
    frame["gearbox"] = frame["am"].map({0: "automatic", 1: "manual"}).astype(str)
    results = smf.ols("mpg ~ hp + wt + C(gearbox)", data=frame).fit()
    example = frame[["hp", "wt", "gearbox"]]
    return save_statsmodels(results, folder, example=example, name=name, card=CARD).path
