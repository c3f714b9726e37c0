"""Small data sets shipped with stageserve for the demo and the tests."""

from __future__ import annotations

from importlib import resources

import pandas as pd

__all__ = ["mtcars"]


def mtcars() -> pd.DataFrame:
    """R's datasets::mtcars (32 cars), typed as in the seed article: numbers as float, `cyl` a
    category of ints (4, 6, 8), `model` the car's name; vs, am, gear and carb stay ints."""
    with resources.files(__package__).joinpath("mtcars.csv").open("rb") as handle:
        frame = pd.read_csv(handle)
    for column in ("mpg", "disp", "hp", "drat", "wt", "qsec"):
        frame[column] = frame[column].astype("float64")
    frame["cyl"] = frame["cyl"].astype("category")
    frame["model"] = frame["model"].astype(object)
    return frame
