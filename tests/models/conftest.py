"""Fixtures shared by the model tests."""

from __future__ import annotations

import importlib.resources

import pandas as pd
import pytest


@pytest.fixture(scope="session")
def cdnow() -> pd.DataFrame:
    """FHL's CDNOW summary as lifetimes ships it: frequency, recency and T in weeks (39-week
    calibration period), one row per customer of the 2,357 in the sample."""
    path = importlib.resources.files("lifetimes") / "datasets" / "cdnow_customers_summary.csv"
    with path.open() as handle:
        return pd.read_csv(handle)
