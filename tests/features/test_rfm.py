import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from lifetimes.utils import calibration_and_holdout_data, summary_data_from_transaction_data

from clvlab import (
    DataError,
    calibration_holdout,
    clean_transactions,
    load_config,
    read_transactions,
    rfm,
)
from clvlab.features.rfm import as_timestamp


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


def test_as_of_defaults_to_the_last_transaction_as_in_lifetimes(cdnow_master):
    """Without ``as_of`` the summary ends at the last transaction, date and time, as
    lifetimes' summary without ``observation_period_end``."""
    assert cdnow_master["date"].max() == pd.Timestamp("1998-06-30")
    pd.testing.assert_frame_equal(rfm(cdnow_master), rfm(cdnow_master, "1998-06-30"))
    timed = pd.DataFrame(
        {
            "customer_id": ["a", "a", "b"],
            "date": pd.to_datetime(["2024-01-01 09:00", "2024-01-03 18:30", "2024-01-02 00:00"]),
        }
    )
    ours = rfm(timed)
    pd.testing.assert_frame_equal(ours, rfm(timed, pd.Timestamp("2024-01-03 18:30")))
    theirs = summary_data_from_transaction_data(timed, "customer_id", "date").sort_index()
    pd.testing.assert_frame_equal(ours, theirs, check_index_type=False, check_names=False)
    assert ours.loc["a"].tolist() == [1.0, 2.0, 2.0] and ours.loc["b"].tolist() == [0.0, 0.0, 1.0]
    with pytest.raises(DataError, match="no dates"):
        rfm(timed.iloc[:0])


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


ROOT = Path(__file__).resolve().parents[2]
ONLINE_RETAIL = ROOT.parent / "shared" / "data" / "online_retail.parquet"


@pytest.fixture(scope="module")
def online_retail():
    if not ONLINE_RETAIL.exists():
        pytest.skip(f"shared data not found at {ONLINE_RETAIL}")
    config = load_config(ROOT / "configs" / "online_retail.yaml")
    raw = read_transactions(ONLINE_RETAIL, **config.data.columns())
    kept, _ = clean_transactions(raw, policy=config.cleaning, invoice=config.data.invoice)
    return kept[["customer_id", "date", "amount"]]


@pytest.mark.parametrize("freq", ["D", "W"])
def test_rfm_equals_lifetimes_on_cleaned_online_retail(online_retail, freq):
    ours = rfm(online_retail, "2011-12-09", freq=freq)
    theirs = summary_data_from_transaction_data(
        online_retail,
        "customer_id",
        "date",
        monetary_value_col="amount",
        observation_period_end="2011-12-09",
        freq=freq,
    ).sort_index()
    assert len(ours) == 4_324
    pd.testing.assert_frame_equal(
        ours, theirs, rtol=1e-12, check_index_type=False, check_names=False
    )


@pytest.mark.parametrize("freq", ["D", "W"])
def test_calibration_holdout_equals_lifetimes_on_cleaned_online_retail(online_retail, freq):
    """A date cutoff covers its whole day: lifetimes given the day's last instant."""
    ours = calibration_holdout(online_retail, "2011-09-09", "2011-12-09", freq=freq)
    theirs = calibration_and_holdout_data(
        online_retail,
        "customer_id",
        "date",
        "2011-09-09 23:59:59.999999",
        "2011-12-09 23:59:59.999999",
        monetary_value_col="amount",
        freq=freq,
    ).sort_index()
    pd.testing.assert_frame_equal(
        ours[theirs.columns], theirs, rtol=1e-12, check_index_type=False, check_names=False
    )
    assert ours["frequency_holdout"].sum() > 0
    if freq == "D":
        assert ours["duration_holdout"].iloc[0] == 91


def test_parquet_file_folder_and_glob_equal_the_dataframe(cdnow_master, tmp_path):
    expected = rfm(cdnow_master, "1998-06-30", freq="D", freq_multiplier=7)
    folder = tmp_path / "parts"
    folder.mkdir()
    halves = cdnow_master.iloc[::2], cdnow_master.iloc[1::2]
    for k, part in enumerate(halves):
        part.to_parquet(folder / f"part-{k}.parquet", index=False)
    cdnow_master.to_parquet(tmp_path / "all.parquet", index=False)
    for source in (tmp_path / "all.parquet", folder, str(folder / "*.parquet")):
        got = rfm(source, "1998-06-30", freq="D", freq_multiplier=7, memory_limit="500MB")
        pd.testing.assert_frame_equal(got, expected, check_index_type=False)
    split = calibration_holdout(folder, "1997-09-30", "1998-06-30", freq="D", freq_multiplier=7)
    pd.testing.assert_frame_equal(
        split,
        calibration_holdout(cdnow_master, "1997-09-30", "1998-06-30", freq="D", freq_multiplier=7),
        check_index_type=False,
    )
    read_back = read_transactions(str(folder / "*.parquet"))
    assert len(read_back) == len(cdnow_master)


def test_parquet_with_integer_ids_and_dates(tmp_path):
    frame = pd.DataFrame(
        {
            "customer_id": [7, 7, 8],
            "date": pd.to_datetime(["2021-01-01", "2021-01-08", "2021-01-02"]).date,
            "amount": [1.0, 2.0, 3.0],
        }
    )
    frame.to_parquet(tmp_path / "t.parquet", index=False)
    out = rfm(tmp_path / "t.parquet", "2021-01-10")
    assert out.index.tolist() == ["7", "8"]
    assert out.loc["7"].tolist() == [1.0, 7.0, 9.0, 2.0]


def test_missing_parquet_and_columns_are_data_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        rfm(tmp_path / "none.parquet", "2021-01-01")
    pd.DataFrame({"cid": ["a"], "date": [pd.Timestamp("2021-01-01")]}).to_parquet(
        tmp_path / "bad.parquet"
    )
    with pytest.raises(DataError, match=r"lack the column\(s\) \['customer_id'\]"):
        rfm(tmp_path / "bad.parquet", "2021-01-01")


def test_each_thread_keeps_one_connection_and_its_spill_folder_goes_with_the_thread(
    cdnow_sample,
):
    import gc
    import importlib
    import threading

    rfm_module = importlib.import_module("clvlab.features.rfm")
    expected = rfm(cdnow_sample, "1997-09-30")
    seen: list = []

    def summarize_twice() -> None:
        for _ in range(2):
            pd.testing.assert_frame_equal(rfm(cdnow_sample, "1997-09-30"), expected)
            holder = rfm_module._CONNECTIONS.connection
            seen.append(
                (
                    holder.con,
                    holder.con.execute("SELECT current_setting('temp_directory')").fetchall()[0][0],
                )
            )
            # no view or data is left registered between calls
            views = holder.con.execute(
                "SELECT view_name FROM duckdb_views() WHERE temporary AND NOT internal"
            ).fetchall()
            assert views == []

    thread = threading.Thread(target=summarize_twice)
    thread.start()
    thread.join()
    gc.collect()
    (first, spill), (second, _) = seen
    assert first is second  # one connection per thread, reused
    assert not Path(spill).exists()  # removed when the thread ended


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1998-06-30", "1998-06-30 00:00"),
        (" 1998-06-30 ", "1998-06-30 00:00"),
        ("1998-06-30T10:15", "1998-06-30 10:15"),
        ("1998-06-30 10:15:30.25", "1998-06-30 10:15:30.25"),
        ("1998-06-30T10:15Z", "1998-06-30 10:15"),
        ("1998-06-30T10:15:00+02:00", "1998-06-30 08:15"),  # to UTC, then naive
        ("1998-06-30T10:15-0500", "1998-06-30 15:15"),
        (dt.date(1998, 6, 30), "1998-06-30 00:00"),
        (
            dt.datetime(1998, 6, 30, 1, tzinfo=dt.timezone(dt.timedelta(hours=2))),
            "1998-06-29 23:00",
        ),
        (pd.Timestamp("1998-06-30 12:00"), "1998-06-30 12:00"),
        (np.datetime64("1998-06-30"), "1998-06-30 00:00"),
    ],
)
def test_date_arguments_in_iso_8601_or_as_date_objects(value, expected):
    stamp = as_timestamp(value, "as_of")
    assert stamp == pd.Timestamp(expected) and stamp.tzinfo is None


@pytest.mark.parametrize(
    "value",
    [
        "01/02/1998",
        "1998-1-2",
        "2",
        "19980630",
        "1998/06/30",
        "30-06-1998",
        "1998-02-30",
        "1998-06-30Z",
        "1998-06-30T25:00",
        "yesterday",
        "",
        2,
        19980630,
        1.5,
        True,
        pd.NaT,
    ],
)
def test_other_date_arguments_are_errors_naming_the_value_and_the_format(value):
    with pytest.raises(DataError) as info:
        as_timestamp(value, "cutoff")
    assert str(info.value).startswith(f"cutoff {value!r} is not a date: give it as YYYY-MM-DD")


def test_rfm_and_calibration_holdout_take_iso_dates_only():
    tx = pd.DataFrame({"customer_id": ["a"], "date": pd.to_datetime(["2021-01-04"])})
    with pytest.raises(DataError, match=r"as_of '01/02/2021' is not a date"):
        rfm(tx, "01/02/2021")
    with pytest.raises(DataError, match=r"end '2021-2-1' is not a date"):
        calibration_holdout(tx, "2021-01-10", "2021-2-1")
    assert rfm(tx, "2021-01-10T12:00+01:00").loc["a", "T"] == 6


def test_litt_is_the_sum_of_log_interpurchase_times(cdnow_master):
    """``litt`` (BTYDplus' elog2cbs): the logs of the times between consecutive purchase days
    in the summary's unit, summed; 0 for one purchase day; ``litt_cal`` in calibration."""
    day = pd.Timestamp("2021-01-04")
    table = pd.DataFrame(
        {
            "customer_id": ["a", "a", "a", "a", "b"],
            "date": [
                day,
                day + pd.Timedelta(hours=5),
                day + pd.Timedelta(weeks=1),
                day + pd.Timedelta(weeks=3),
                day,
            ],
            "amount": [1.0, 2.0, 3.0, 4.0, 5.0],
        }
    )
    summary = rfm(table, "2021-02-01", freq="D", freq_multiplier=7, litt=True)
    assert summary.columns.tolist()[-1] == "litt"
    assert summary["litt"].tolist() == [pytest.approx(np.log(1) + np.log(2)), 0.0]
    # CDNOW in weeks: each customer's distinct purchase days, against numpy.
    ours = rfm(cdnow_master, "1998-06-30", freq="D", freq_multiplier=7, litt=True)
    days = cdnow_master.assign(day=cdnow_master["date"].dt.normalize())
    days = days[["customer_id", "day"]].drop_duplicates().sort_values(["customer_id", "day"])
    gaps = days.groupby("customer_id")["day"].diff().dt.days / 7
    expected = np.log(gaps).groupby(days["customer_id"]).sum()
    np.testing.assert_allclose(ours["litt"], expected.loc[ours.index], rtol=1e-12, atol=1e-12)
    split = calibration_holdout(
        cdnow_master, "1997-09-30", "1998-06-30", freq="D", freq_multiplier=7, litt=True
    )
    calibration = rfm(cdnow_master, "1997-09-30", freq="D", freq_multiplier=7, litt=True)
    np.testing.assert_array_equal(split["litt_cal"], calibration["litt"].loc[split.index])


# --- hourly periods (freq="H"): lifetimes' freq="h" ------------------------------------------

#: Several purchases in one hour (a at 09:10 and 09:50), in one day (a at 09 and 13), across
#: midnight (b at 23:30 and 00:15) and one exactly at midnight (c).
HOURLY = pd.DataFrame(
    {
        "customer_id": ["a", "a", "a", "a", "b", "b", "b", "c"],
        "date": pd.to_datetime(
            [
                "2021-01-04 09:10",
                "2021-01-04 09:50",
                "2021-01-04 13:05",
                "2021-01-05 02:00",
                "2021-01-04 23:30",
                "2021-01-05 00:15",
                "2021-01-05 18:00",
                "2021-01-05 00:00",
            ]
        ),
        "amount": [10.0, 5.0, 20.0, 40.0, 7.0, 9.0, 3.0, 8.0],
    }
)


def _lifetimes_end(date: str) -> str:
    """lifetimes compares raw timestamps with an end, while a clvlab date covers its day."""
    stamp = pd.Timestamp(date)
    return (
        str(stamp + pd.Timedelta(days=1, microseconds=-1)) if stamp == stamp.normalize() else date
    )


def test_hourly_summary_by_hand():
    """Purchases merged per clock hour; recency and T in hours; an as-of with a time ends
    with its hour, a date with its day's last hour (23:00)."""
    timed = rfm(HOURLY, "2021-01-05T12:30", freq="H")
    # a: hours 01-04 09:00 (10 + 5), 13:00 (20), 01-05 02:00 (40); as-of hour 01-05 12:00
    assert timed.loc["a"].tolist() == [2.0, 17.0, 27.0, 30.0]
    # b: 23:00 (7), 00:00 (9); 18:00 is after the as-of hour
    assert timed.loc["b"].tolist() == [1.0, 1.0, 13.0, 9.0]
    assert timed.loc["c"].tolist() == [0.0, 0.0, 12.0, 0.0]
    dated = rfm(HOURLY, "2021-01-05", freq="H", litt=True)  # up to 2021-01-05 23:00
    assert dated.loc["a"].tolist() == [2.0, 17.0, 38.0, 30.0, pytest.approx(np.log(4 * 13))]
    assert dated.loc["b"].tolist() == [2.0, 19.0, 24.0, 6.0, pytest.approx(np.log(1 * 18))]
    assert dated.loc["c"].tolist() == [0.0, 0.0, 23.0, 0.0, 0.0]
    for same in (dt.date(2021, 1, 5), pd.Timestamp("2021-01-05 00:00")):
        pd.testing.assert_frame_equal(rfm(HOURLY, same, freq="H", litt=True), dated)
    # Days at hourly resolution; at daily resolution a has two purchase days only.
    in_days = rfm(HOURLY, "2021-01-05", freq="H", freq_multiplier=24)
    assert in_days.loc["a", ["recency", "T"]].tolist() == [17 / 24, 38 / 24]
    assert rfm(HOURLY, "2021-01-05", freq="D").loc["a", "frequency"] == 1


def test_hourly_calibration_holdout_by_hand():
    split = calibration_holdout(HOURLY, "2021-01-04T12:00", "2021-01-05", freq="H")
    # Only a bought by the cutoff (hour 09:00); the holdout ends 2021-01-05 23:00.
    assert split.index.tolist() == ["a"]
    assert split.loc["a", ["frequency_cal", "recency_cal", "T_cal"]].tolist() == [0.0, 0.0, 3.0]
    assert split.loc["a", ["frequency_holdout", "revenue_holdout"]].tolist() == [2.0, 60.0]
    assert split["duration_holdout"].iloc[0] == 35
    # A date cutoff covers its day: a's hours 09 and 13 and b's 23 are in calibration.
    whole_day = calibration_holdout(HOURLY, "2021-01-04", "2021-01-05T06:00", freq="H")
    assert whole_day.loc["a", ["frequency_cal", "recency_cal", "T_cal"]].tolist() == [1, 4, 14]
    assert whole_day.loc["b", ["frequency_cal", "T_cal", "frequency_holdout"]].tolist() == [0, 0, 1]
    assert whole_day.loc["a", "frequency_holdout"] == 1
    assert whole_day["duration_holdout"].iloc[0] == 7  # 23:00 to 06:00


def test_an_hourly_holdout_must_end_after_the_cutoffs_day():
    with pytest.raises(DataError, match="within the calibration cutoff's day 2021-01-04"):
        calibration_holdout(HOURLY, "2021-01-04", "2021-01-04T18:00", freq="H")


@pytest.mark.parametrize("as_of", ["2021-01-05T12:30", "2021-01-05", "2021-01-04T23:59", None])
@pytest.mark.parametrize("multiplier", [1, 24])
def test_hourly_rfm_equals_lifetimes(as_of, multiplier):
    ours = rfm(HOURLY, as_of, freq="H", freq_multiplier=multiplier)
    theirs = summary_data_from_transaction_data(
        HOURLY,
        "customer_id",
        "date",
        monetary_value_col="amount",
        observation_period_end=None if as_of is None else _lifetimes_end(as_of),
        freq="h",  # pandas 3 knows hours as "h" only
        freq_multiplier=multiplier,
    ).sort_index()
    pd.testing.assert_frame_equal(
        ours, theirs, rtol=1e-12, check_index_type=False, check_names=False
    )


@pytest.mark.parametrize(
    ("cutoff", "end"),
    [
        ("2021-01-04T12:00", "2021-01-05"),
        ("2021-01-04", "2021-01-05T06:00"),
        ("2021-01-04T09:30", "2021-01-05T18:00"),
    ],
)
def test_hourly_calibration_holdout_equals_lifetimes(cutoff, end):
    ours = calibration_holdout(HOURLY, cutoff, end, freq="H")
    theirs = calibration_and_holdout_data(
        HOURLY,
        "customer_id",
        "date",
        _lifetimes_end(cutoff),
        _lifetimes_end(end),
        monetary_value_col="amount",
        freq="h",
    ).sort_index()
    pd.testing.assert_frame_equal(
        ours[theirs.columns],
        theirs.astype(float),  # lifetimes' holdout count is an integer column
        rtol=1e-12,
        check_index_type=False,
        check_names=False,
    )


def test_hourly_summaries_equal_lifetimes_on_cleaned_online_retail(online_retail):
    """Invoices have times: a customer's invoices of one day in different hours count apart."""
    ours = rfm(online_retail, "2011-12-09", freq="H")
    theirs = summary_data_from_transaction_data(
        online_retail,
        "customer_id",
        "date",
        monetary_value_col="amount",
        observation_period_end="2011-12-09 23:59:59.999999",
        freq="h",
    ).sort_index()
    pd.testing.assert_frame_equal(
        ours, theirs, rtol=1e-12, check_index_type=False, check_names=False
    )
    daily = rfm(online_retail, "2011-12-09", freq="D")
    assert (ours["frequency"] > daily["frequency"]).sum() > 100
    split = calibration_holdout(
        online_retail, "2011-09-09", "2011-12-09", freq="H", freq_multiplier=24
    )
    theirs = calibration_and_holdout_data(
        online_retail,
        "customer_id",
        "date",
        "2011-09-09 23:59:59.999999",
        "2011-12-09 23:59:59.999999",
        monetary_value_col="amount",
        freq="h",
        freq_multiplier=24,
    ).sort_index()
    pd.testing.assert_frame_equal(
        split[theirs.columns], theirs, rtol=1e-12, check_index_type=False, check_names=False
    )
    assert split["duration_holdout"].iloc[0] == 91
