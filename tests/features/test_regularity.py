"""Wheat and Morrison's regularity estimate on purchase timings of known regularity."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clvlab.features.regularity import Regularity, wheat_morrison


def _erlang_purchases(k: int, customers: int = 4_000, purchases: int = 6, seed: int = 0):
    """Purchase days whose intervals are Erlang-k with a mean of 60 days (rates vary by
    customer, which the estimate must not see), two purchases on a day now and then."""
    rng = np.random.default_rng(seed)
    mean = rng.gamma(4.0, 15.0, size=(customers, 1))  # each customer's mean interval, days
    intervals = rng.gamma(k, mean / k, size=(customers, purchases - 1))
    days = np.concatenate([np.zeros((customers, 1)), np.cumsum(intervals, axis=1)], axis=1)
    table = pd.DataFrame(
        {
            "customer_id": np.repeat([f"c{i}" for i in range(customers)], purchases),
            "date": pd.Timestamp("2020-01-01")
            + pd.to_timedelta(np.round(days.ravel() * 24) / 24, unit="D"),
        }
    )
    return pd.concat([table, table.iloc[::50]]).sample(frac=1.0, random_state=seed)


@pytest.mark.parametrize("k", [1, 3])
def test_the_erlang_order_is_recovered(k):
    found = wheat_morrison(_erlang_purchases(k))
    assert found.customers == 4_000
    assert found.k == pytest.approx(k, rel=0.15)


def test_one_interval_customers_and_ties_are_left_out():
    """Only customers with three purchase days count; purchases of one day are one; a table
    without such a customer has no estimate (NaN), not an error."""
    day = pd.Timestamp("2021-01-01")
    table = pd.DataFrame(
        {
            "customer_id": ["a", "a", "a", "a", "b", "b", "c"],
            "date": [
                day,
                day + pd.Timedelta(hours=3),
                day + pd.Timedelta(days=2),
                day + pd.Timedelta(days=6),
                day,
                day + pd.Timedelta(days=9),
                day,
            ],
        }
    )
    found = wheat_morrison(table)
    # a: days 0, 2, 6 (the two purchases of day 0 are one): shares 1/3 and 2/3.
    assert found.customers == 1
    assert np.isnan(wheat_morrison(table[table["customer_id"] != "a"]).k)
    assert Regularity(1.0, 2).to_dict() == {
        "regularity.wheat_morrison_k": 1.0,
        "regularity.customers": 2,
    }
