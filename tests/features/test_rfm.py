import pandas as pd
import pytest
from lifetimes.utils import calibration_and_holdout_data, summary_data_from_transaction_data

from clvlab import calibration_holdout, rfm


@pytest.mark.parametrize(("freq", "multiplier"), [("D", 1), ("D", 7), ("W", 1)])
def test_rfm_equals_lifetimes_on_cdnow(cdnow_master, freq, multiplier):
    ours = rfm(cdnow_master, "1998-06-30", freq=freq, freq_multiplier=multiplier)
    theirs = summary_data_from_transaction_data(
        cdnow_master,
        "customer_id",
        "date",
        monetary_value_col="amount",
        observation_period_end="1998-06-30",
        freq=freq,
        freq_multiplier=multiplier,
    ).sort_index()
    assert len(ours) == 23_570
    pd.testing.assert_frame_equal(
        ours, theirs, rtol=1e-12, check_index_type=False, check_names=False
    )


@pytest.mark.parametrize(("freq", "multiplier"), [("D", 7), ("W", 1)])
def test_calibration_holdout_equals_lifetimes_on_cdnow(cdnow_master, freq, multiplier):
    ours = calibration_holdout(
        cdnow_master, "1997-09-30", "1998-06-30", freq=freq, freq_multiplier=multiplier
    )
    theirs = calibration_and_holdout_data(
        cdnow_master,
        "customer_id",
        "date",
        "1997-09-30",
        "1998-06-30",
        monetary_value_col="amount",
        freq=freq,
        freq_multiplier=multiplier,
    ).sort_index()
    pd.testing.assert_frame_equal(
        ours[theirs.columns], theirs, rtol=1e-12, check_index_type=False, check_names=False
    )


def test_sample_summary_reproduces_fader_hardie_lee_data(cdnow_sample):
    """Daily resolution in weeks gives the published 39-week calibration data."""
    import importlib.resources

    path = importlib.resources.files("lifetimes") / "datasets" / "cdnow_customers_summary.csv"
    with path.open() as handle:
        published = pd.read_csv(handle, index_col="ID")
    summary = calibration_holdout(
        cdnow_sample, "1997-09-30", "1998-06-30", freq="D", freq_multiplier=7
    )
    summary.index = summary.index.astype(int)
    summary = summary.sort_index()
    assert (summary["frequency_cal"].to_numpy() == published["frequency"].to_numpy()).all()
    assert summary["recency_cal"].round(2).to_numpy() == pytest.approx(published["recency"])
    assert summary["T_cal"].round(2).to_numpy() == pytest.approx(published["T"])
    assert summary["duration_holdout"].iloc[0] == pytest.approx(273 / 7)


def test_hand_computed_case_with_merging_and_revenue():
    tx = pd.DataFrame(
        {
            "customer_id": ["a", "a", "a", "a", "b", "b"],
            "date": pd.to_datetime(
                [
                    "2021-01-04",
                    "2021-01-04 18:00",
                    "2021-01-06",
                    "2021-01-20",
                    "2021-01-10",
                    "2021-02-03",
                ],
                format="ISO8601",
            ),
            "amount": [10.0, 5.0, 20.0, 40.0, 7.0, 9.0],
        }
    )
    daily = rfm(tx, "2021-01-31")
    # a: days 4 (15 merged), 6 (20), 20 (40) -> frequency 2, recency 16, T 27, monetary 30
    assert daily.loc["a"].tolist() == [2.0, 16.0, 27.0, 30.0]
    # b: the February purchase is after as_of
    assert daily.loc["b"].tolist() == [0.0, 0.0, 21.0, 0.0]
    weekly = rfm(tx, "2021-01-31", freq="W")
    # a's weeks start 01-04 (35) and 01-18 (40); as_of's week starts 01-25
    assert weekly.loc["a"].tolist() == [1.0, 2.0, 3.0, 40.0]
    monthly = rfm(tx, "2021-02-28", freq="M")
    assert monthly.loc["b"].tolist() == pytest.approx([1.0, 31 / 30.436875, 31 / 30.436875, 9.0])
    split = calibration_holdout(tx, "2021-01-10", "2021-02-28")
    assert split.loc["a", "frequency_holdout"] == 1 and split.loc["a", "revenue_holdout"] == 40
    assert split.loc["b", "revenue_holdout"] == 9 and split.loc["b", "T_cal"] == 0
    assert split["duration_holdout"].iloc[0] == 49


def test_count_only_has_no_monetary_value():
    tx = pd.DataFrame(
        {"customer_id": ["a", "a"], "date": pd.to_datetime(["2021-01-01", "2021-01-03"])}
    )
    out = rfm(tx, "2021-01-10")
    assert list(out.columns) == ["frequency", "recency", "T"]
    split = calibration_holdout(tx, "2021-01-02", "2021-01-10")
    assert split.loc["a", "frequency_holdout"] == 1
