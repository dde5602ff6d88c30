import numpy as np
import pandas as pd
import pytest

from clvlab import DataError, rfm
from clvlab.features.windows import (
    PurchaseDays,
    customer_covariates,
    horizon_labels,
    rolling_origins,
    stacked_examples,
    window_features,
)


@pytest.fixture
def transactions() -> pd.DataFrame:
    """Customer a: purchases on Jan 1 (two, same day), Jan 11, Feb 10, then Apr 1 (after the
    as-of date Mar 1). Customer b: one purchase on Feb 20. Customer c: first purchase after
    the as-of date."""
    rows = [
        ("a", "2024-01-01 09:00", 10.0),
        ("a", "2024-01-01 17:00", 30.0),
        ("a", "2024-01-11 12:00", 20.0),
        ("a", "2024-02-10 08:00", 60.0),
        ("a", "2024-04-01 08:00", 5.0),
        ("b", "2024-02-20 10:00", 7.0),
        ("c", "2024-03-05 10:00", 9.0),
    ]
    frame = pd.DataFrame(rows, columns=["customer_id", "date", "amount"])
    frame["date"] = pd.to_datetime(frame["date"])
    return frame


def test_window_features_hand_computed(transactions):
    days = PurchaseDays.from_transactions(transactions)
    features = window_features(days, "2024-03-01", horizon_days=31, windows=(30, 60))
    assert list(features.index) == ["a", "b"]  # c has no history by Mar 1
    a, b = features.loc["a"], features.loc["b"]
    # a: purchase days Jan 1 (40), Jan 11 (20), Feb 10 (60); as of Mar 1 = day 60 of 2024.
    assert a["purchases"] == 3 and a["frequency"] == 2
    assert a["age_days"] == 60 and a["recency_days"] == 40 and a["days_since_last"] == 20
    assert a["rate_per_day"] == pytest.approx(3 / 61)
    assert a["purchases_30d"] == 1 and a["revenue_30d"] == 60  # Feb 10 only
    assert a["purchases_60d"] == 2 and a["revenue_60d"] == 80  # Jan 11 and Feb 10
    assert a["gap_mean_days"] == 20 and a["gap_max_days"] == 30 and a["gap_last_days"] == 30
    assert a["gap_std_days"] == pytest.approx(np.std([10, 30], ddof=1))
    assert a["overdue_ratio"] == pytest.approx(1.0)
    assert a["revenue_total"] == 120 and a["spend_mean"] == 40
    assert a["spend_last"] == 60 and a["spend_max"] == 60
    assert a["spend_trend"] == pytest.approx(1.0)  # the last three are all three
    assert a["as_of_month"] == 3 and a["history_days"] == 60
    # b: one purchase: no gaps (NaN), age 10 days.
    assert b["frequency"] == 0 and b["age_days"] == 10 and b["days_since_last"] == 10
    assert np.isnan(b["gap_mean_days"]) and np.isnan(b["overdue_ratio"])
    # No year of history before Mar 1: the same-season count is unknown, not zero.
    assert features["purchases_same_season_last_year"].isna().all()


def test_frequency_recency_age_equal_the_rfm_summary(cdnow_sample):
    days = PurchaseDays.from_transactions(cdnow_sample)
    features = window_features(days, "1997-09-30", horizon_days=273)
    summary = rfm(cdnow_sample, "1997-09-30", freq="D")
    assert len(features) == len(summary) == 2357
    np.testing.assert_array_equal(features["frequency"], summary["frequency"])
    np.testing.assert_array_equal(features["recency_days"], summary["recency"])
    np.testing.assert_array_equal(features["age_days"], summary["T"])


def test_same_season_last_year_counts_when_history_allows():
    dates = ["2023-01-05", "2023-01-20", "2023-03-01", "2024-01-02"]
    frame = pd.DataFrame({"customer_id": ["a", "a", "a", "b"], "date": pd.to_datetime(dates)})
    days = PurchaseDays.from_transactions(frame)
    # As of 2024-01-04 (365 days after 2023-01-04) with a 30-day horizon: the window is
    # 2023-01-04 .. 2023-02-03, which holds a's Jan 5 and Jan 20.
    features = window_features(days, "2024-01-04", horizon_days=30)
    assert features.loc["a", "purchases_same_season_last_year"] == 2
    assert features.loc["b", "purchases_same_season_last_year"] == 0
    assert "revenue_total" not in features  # count-only data: no spend features


def test_horizon_labels(transactions):
    days = PurchaseDays.from_transactions(transactions)
    index = pd.Index(["a", "b", "z"], name="customer_id")
    labels = horizon_labels(days, "2024-03-01", 31, index)
    # Mar 2 .. Apr 1 inclusive: a buys on Apr 1; b nothing; z unknown -> no purchase.
    assert labels["purchases"].tolist() == [1.0, 0.0, 0.0]
    assert labels["revenue"].tolist() == [5.0, 0.0, 0.0]
    assert labels["churn"].tolist() == [0.0, 1.0, 1.0]
    assert horizon_labels(days, "2024-03-01", 30, index)["purchases"].tolist() == [0, 0, 0]


def test_rolling_origins():
    origins = rolling_origins("2024-06-30", "2024-05-01", step_days=28, max_origins=12)
    assert [str(o.date()) for o in origins] == ["2024-05-05", "2024-06-02", "2024-06-30"]
    assert len(rolling_origins("2024-06-30", "2024-01-01", step_days=7, max_origins=4)) == 4
    assert rolling_origins("2024-01-01", "2024-06-01", step_days=7, max_origins=4) == []
    with pytest.raises(DataError):
        rolling_origins("2024-06-30", "2024-01-01", step_days=0, max_origins=4)


def test_stacked_examples_align_features_and_labels(transactions):
    days = PurchaseDays.from_transactions(transactions)
    origins = [pd.Timestamp("2024-01-15"), pd.Timestamp("2024-03-01")]
    features, labels = stacked_examples(days, origins, horizon_days=31, windows=(30,))
    assert list(features["customer_id"]) == ["a", "a", "b"]
    assert list(features["origin"].dt.strftime("%m-%d")) == ["01-15", "03-01", "03-01"]
    # a, as of Jan 15: next purchase day Feb 10 (within 31 days); as of Mar 1: Apr 1.
    assert labels["purchases"].tolist() == [1.0, 1.0, 0.0]


def test_static_covariates_become_categories(transactions):
    transactions = transactions.assign(country=["UK", "UK", "UK", "FR", "FR", "DE", "NL"])
    covariates = customer_covariates(transactions, ["country"])
    # The latest transaction's value: a moved to FR.
    assert covariates["country"].to_dict() == {"a": "FR", "b": "DE", "c": "NL"}
    features = window_features(
        PurchaseDays.from_transactions(transactions),
        "2024-03-01",
        horizon_days=30,
        customers=covariates,
    )
    assert isinstance(features["country"].dtype, pd.CategoricalDtype)
    assert features.loc["a", "country"] == "FR"
    with pytest.raises(DataError, match="not in the transactions"):
        customer_covariates(transactions, ["segment"])


def test_errors_name_the_problem(transactions):
    with pytest.raises(DataError, match="lack the column"):
        PurchaseDays.from_transactions(transactions.drop(columns="date"))
    days = PurchaseDays.from_transactions(transactions)
    with pytest.raises(DataError, match="no purchase on or before 2023-12-31"):
        window_features(days, "2023-12-31", horizon_days=30)
    duplicated = pd.DataFrame({"segment": ["x", "y"]}, index=pd.Index(["a", "a"]))
    with pytest.raises(DataError, match="duplicated customer_id"):
        window_features(days, "2024-03-01", horizon_days=30, customers=duplicated)
