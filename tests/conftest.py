"""Fixtures shared by every test: small, real data."""

from __future__ import annotations

import pandas as pd
import pytest

from registry_sync.package.data import mtcars


@pytest.fixture(scope="session")
def _mtcars_master() -> pd.DataFrame:
    return mtcars()


@pytest.fixture
def mtcars_frame(_mtcars_master: pd.DataFrame) -> pd.DataFrame:
    """The 32-row mtcars frame (cyl a category of 4, 6, 8); a copy, so a test may change it."""
    return _mtcars_master.copy()
