import pandas as pd
import pytest

from clvlab import DataError, clean_transactions, read_transactions


def test_packaged_cdnow_master(cdnow_master):
    assert len(cdnow_master) == 69_659
    assert cdnow_master["customer_id"].nunique() == 23_570
    assert list(cdnow_master.columns) == ["customer_id", "date", "amount", "n_cds"]
    assert cdnow_master["date"].min() == pd.Timestamp("1997-01-01")
    assert cdnow_master["date"].max() == pd.Timestamp("1998-06-30")


def test_packaged_cdnow_sample_uses_sample_ids(cdnow_sample):
    assert cdnow_sample["customer_id"].nunique() == 2_357
    first = cdnow_sample[cdnow_sample["customer_id"] == "1"]
    assert first["amount"].round(2).tolist()[:2] == [29.33, 29.73]


def test_csv_with_own_column_names_and_count_only(tmp_path):
    path = tmp_path / "visits.csv"
    path.write_text("visitor,when\n007,2021-03-01\n007,2021-03-05 10:30\n42,2021-03-02\n")
    frame = read_transactions(path, customer_id="visitor", date="when", amount=None)
    assert list(frame.columns) == ["customer_id", "date"]
    assert frame["customer_id"].tolist() == ["007", "007", "42"]  # leading zeros kept
    assert frame["date"].iloc[1] == pd.Timestamp("2021-03-05 10:30")


def test_timezone_aware_dates_become_naive_utc():
    frame = pd.DataFrame(
        {"customer_id": ["a"], "date": pd.to_datetime(["2021-01-01 01:00+02:00"]), "amount": [1]}
    )
    out = read_transactions(frame)
    assert out["date"].dt.tz is None
    assert out["date"].iloc[0] == pd.Timestamp("2020-12-31 23:00")


def test_missing_column_names_column_and_what_exists(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("customer_id,date,value\n1,2021-01-01,3\n")
    with pytest.raises(DataError, match=r"missing amount column 'amount'.*\['customer_id'"):
        read_transactions(path)


def test_unparsable_dates_name_rows_and_count(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("customer_id,date,amount\n1,2021-01-01,3\n2,not a date,4\n3,2021-02-30,5\n")
    with pytest.raises(DataError, match=r"2 of 3 rows of date column 'date'") as info:
        read_transactions(path, date_format="%Y-%m-%d")
    assert "row 1: 'not a date'" in str(info.value)
    assert "row 2: '2021-02-30'" in str(info.value)


def test_non_numeric_amounts_name_rows(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("customer_id,date,amount\n1,2021-01-01,3\n2,2021-01-02,abc\n")
    with pytest.raises(DataError, match=r"1 of 2 rows of amount column 'amount'.*row 1: 'abc'"):
        read_transactions(path)


def test_empty_and_unknown_inputs(tmp_path):
    with pytest.raises(DataError, match="no transactions"):
        read_transactions(pd.DataFrame({"customer_id": [], "date": [], "amount": []}))
    with pytest.raises(DataError, match="not found"):
        read_transactions(tmp_path / "absent.csv")
    with pytest.raises(DataError, match="unknown packaged data set"):
        read_transactions("lifetimes:nope")


def test_cleaning_counts_every_excluded_row():
    frame = read_transactions(
        pd.DataFrame(
            {
                "customer_id": ["a", None, "b", "c"],
                "date": ["2021-01-01", "2021-01-02", "2021-01-03", "2021-03-01"],
                "amount": [1.0, 2.0, 3.0, 4.0],
            }
        )
    )
    kept, report = clean_transactions(frame, until=pd.Timestamp("2021-02-01"))
    assert kept["customer_id"].tolist() == ["a", "b"]
    assert report.steps == {"missing_customer_id": 1, "after_end": 1, "returns_dropped": 0}
    assert report.rows_read == 4 and report.rows_kept == 2 and report.customers == 2
    assert report.rows_read == report.rows_kept + sum(report.steps.values())


def test_stated_time_zone_and_mixed_offsets():
    frame = pd.DataFrame(
        {
            "customer_id": ["a", "b"],
            "date": ["2021-07-01 12:00+00:00", "2021-07-01 12:00+02:00"],
            "amount": [1, 2],
        }
    )
    london = read_transactions(frame, timezone="Europe/London")
    assert london["date"].tolist() == [
        pd.Timestamp("2021-07-01 13:00"),
        pd.Timestamp("2021-07-01 11:00"),
    ]
    naive = pd.DataFrame({"customer_id": ["a"], "date": ["2021-07-01 12:00"], "amount": [1]})
    assert read_transactions(naive, timezone="Asia/Tokyo")["date"].iloc[0] == pd.Timestamp(
        "2021-07-01 12:00"
    )  # naive times are already in the stated zone
    with pytest.raises(DataError, match="unknown time zone 'Mars/Base'"):
        read_transactions(frame, timezone="Mars/Base")


def test_amount_from_quantity_and_price_and_kept_columns():
    frame = pd.DataFrame(
        {
            "cid": ["a", "a"],
            "when": ["2021-01-01", "2021-01-02"],
            "qty": ["2", "3"],
            "unit": [1.5, 2.0],
            "invoice": ["1", "2"],
            "note": ["x", "y"],
        }
    )
    out = read_transactions(
        frame,
        customer_id="cid",
        date="when",
        amount=None,
        quantity="qty",
        price="unit",
        keep=["invoice"],
    )
    assert out.columns.tolist() == ["customer_id", "date", "amount", "invoice"]
    assert out["amount"].tolist() == [3.0, 6.0]
    with pytest.raises(DataError, match="both quantity and price"):
        read_transactions(frame, customer_id="cid", date="when", amount=None, quantity="qty")
    with pytest.raises(DataError, match="kept column 'nope'"):
        read_transactions(frame, customer_id="cid", date="when", amount=None, keep=["nope"])
