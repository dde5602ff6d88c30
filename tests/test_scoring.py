import dataclasses
import datetime as dt
import warnings

import numpy as np
import pandas as pd
import pytest

from clvlab import ClvlabWarning, CLVModel, DataError, score
from clvlab.outputs import write_json, write_table
from clvlab.scoring import ALL_EXCLUDED, MAX_HORIZON_DAYS, NO_HISTORY, SCORE_COLUMNS


@pytest.fixture(scope="module")
def model(sample_models):
    purchases, spend = sample_models
    return CLVModel(
        purchases=purchases,
        spend=spend,
        time_unit="W",
        columns={"customer_id": "cid", "date": "day", "amount": "value"},
        version="test",
    )


TRANSACTIONS = pd.DataFrame(
    {
        "cid": ["a", "a", "a", "b", "c", None],
        "day": ["1997-01-01", "1997-02-01", "1997-03-01", "1997-01-15", "1997-06-01", "1997-01-01"],
        "value": [10.0, 20.0, 30.0, 5.0, 7.0, 99.0],
    }
)


def test_one_row_per_customer_with_reason_for_the_unscorable(model):
    with pytest.warns(UserWarning, match="1 transaction rows have no customer id"):
        table = score(model, TRANSACTIONS, as_of="1997-04-01", horizon_days=180)
    assert list(table.columns) == SCORE_COLUMNS
    assert table["customer_id"].tolist() == ["a", "b", "c"]
    scored = table.set_index("customer_id")
    assert scored.loc["a", ["frequency", "monetary_value"]].tolist() == [2.0, 25.0]
    assert scored.loc["a", "T"] == pytest.approx(90 / 7)
    assert scored.loc["c", "reason"] == NO_HISTORY
    assert scored.loc["c", ["p_alive", "clv"]].isna().all()
    assert scored.loc[["a", "b"], "reason"].isna().all()
    assert table.attrs["data_report"]["excluded.missing_customer_id"] == 1
    assert (table["model_version"] == "test").all()


def test_canonical_column_names_also_work(model):
    canonical = TRANSACTIONS.dropna().rename(
        columns={"cid": "customer_id", "day": "date", "value": "amount"}
    )
    by_model_names = score(model, TRANSACTIONS.dropna())
    pd.testing.assert_frame_equal(score(model, canonical), by_model_names)


def test_as_of_defaults_to_last_transaction(model):
    table = score(model, TRANSACTIONS.dropna()).set_index("customer_id")
    assert table.loc["c", "T"] == 0 and table.loc["c", "reason"] is pd.NA


def test_scores_equal_the_models_formulas(model):
    table = score(model, TRANSACTIONS.dropna(), as_of="1997-04-01", horizon_days=70)
    a = table.set_index("customer_id").loc["a"]
    t = 70 / 7
    assert a["expected_purchases"] == pytest.approx(
        float(model.purchases.expected_purchases(t, a["frequency"], a["recency"], a["T"]))
    )
    assert a["p_alive"] == pytest.approx(
        float(model.purchases.p_alive(a["frequency"], a["recency"], a["T"]))
    )


def test_empty_after_cleaning_is_an_error(model):
    with pytest.raises(DataError, match="no transactions with a customer id"):
        score(model, TRANSACTIONS.tail(1))


def test_atomic_write_leaves_nothing_on_failure(tmp_path, monkeypatch):
    table = pd.DataFrame({"x": [1, 2]})
    target = tmp_path / "out.parquet"

    def broken(self, path, **kwargs):
        with open(path, "wb") as handle:
            handle.write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", broken)
    with pytest.raises(OSError, match="disk full"):
        write_table(table, target)
    assert list(tmp_path.iterdir()) == []


def test_writers_by_extension(tmp_path):
    table = pd.DataFrame({"x": [1.5, np.nan]})
    write_table(table, tmp_path / "a.csv")
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "a.csv"), table)
    write_json({"m": {"auc": float("nan"), "mae": 0.5}}, tmp_path / "r.json")
    assert '"auc": null' in (tmp_path / "r.json").read_text()
    with pytest.raises(Exception, match=r"\.parquet or \.csv"):
        write_table(table, tmp_path / "a.xlsx")


@pytest.mark.parametrize(
    "as_of",
    ["1997-04-01", "1997-04-01T23:59", "1997-04-01 10:00:00Z", dt.date(1997, 4, 1)],
)
def test_as_of_in_iso_8601_or_a_date_object(model, as_of):
    table = score(model, TRANSACTIONS.dropna(), as_of=as_of)
    # Purchases on the as-of day count whatever its time: a's T is 90 days in weeks.
    assert table.set_index("customer_id").loc["a", "T"] == pytest.approx(90 / 7)


@pytest.mark.parametrize("as_of", ["04/01/1997", "1997-4-1", "2", 2, "1997-04-01Z"])
def test_as_of_in_another_format_is_an_error_naming_it(model, as_of):
    with pytest.raises(DataError, match="is not a date: give it as YYYY-MM-DD") as info:
        score(model, TRANSACTIONS.dropna(), as_of=as_of)
    assert str(info.value).startswith(f"as_of {as_of!r}")


def test_as_of_before_the_first_transaction_is_an_error(model):
    tx = TRANSACTIONS.dropna()
    with pytest.raises(DataError, match=r"before the first transaction \(1997-01-01\)"):
        score(model, tx, as_of="1996-12-31")
    with pytest.raises(DataError, match="give an as_of on or after 1997-01-01"):
        score(model, tx, as_of="1996-12-31T23:59")
    first_day = score(model, tx, as_of="1997-01-01").set_index("customer_id")
    assert first_day["reason"].isna().tolist() == [True, False, False]  # a, then b, c later


def test_as_of_after_today_warns(model):
    tomorrow = dt.date.today() + dt.timedelta(days=2)
    with pytest.warns(ClvlabWarning, match=f"as_of {tomorrow} is after today.*leave as_of out"):
        score(model, TRANSACTIONS.dropna(), as_of=str(tomorrow))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ClvlabWarning)
        score(model, TRANSACTIONS.dropna(), as_of=dt.date.today())


def test_rows_after_as_of_are_counted_in_the_data_report(model):
    tx = pd.concat(
        [TRANSACTIONS, pd.DataFrame({"cid": ["a", "b"], "day": ["1997-04-01 18:00", "1997-04-02"]})]
    ).assign(value=lambda frame: frame["value"].fillna(1.0))
    with pytest.warns(ClvlabWarning, match="1 transaction rows have no customer id"):
        report = score(model, tx, as_of="1997-04-01").attrs["data_report"]
    # 8 rows: 1 without an id; after 1997-04-01 (whole day): b's 04-02 and c's 06-01. Kept:
    # a's four (one at 18:00 on the as-of day) and b's 01-15, from customers a and b.
    assert report["rows_read"] == 8
    assert report["excluded.missing_customer_id"] == 1 and report["excluded.after_as_of"] == 2
    assert report["rows_kept"] == 5 and report["customers"] == 2
    assert report["last_date"] == "1997-04-01 18:00:00"
    excluded = sum(v for k, v in report.items() if k.startswith("excluded."))
    assert report["rows_read"] == report["rows_kept"] + excluded
    everything = score(model, tx.dropna(), as_of="1997-06-01").attrs["data_report"]
    assert everything["excluded.after_as_of"] == 0 and everything["rows_kept"] == 7


def test_an_hourly_model_scores_per_hour_up_to_the_as_of_hour(model):
    """A model of time_unit H: purchases merged per hour, recency and T in hours; an as_of
    with a time counts up to its hour, a date its whole day."""
    hourly = dataclasses.replace(model, time_unit="H")
    tx = pd.DataFrame(
        {
            "cid": ["a", "a", "a", "a", "b"],
            "day": [
                "1997-01-01 09:10",
                "1997-01-01 09:40",
                "1997-01-01 14:00",
                "1997-01-02 08:00",
                "1997-01-02 11:00",
            ],
            "value": [10.0, 20.0, 30.0, 5.0, 7.0],
        }
    )
    table = score(hourly, tx, as_of="1997-01-02T10:30", horizon_days=1).set_index("customer_id")
    # a: hours 01-01 09:00 (30), 14:00 (30), 01-02 08:00 (5); as-of hour 01-02 10:00
    assert table.loc["a", ["frequency", "recency", "T", "monetary_value"]].tolist() == [
        2.0,
        23.0,
        25.0,
        17.5,
    ]
    assert table.loc["b", "reason"] == NO_HISTORY  # bought at 11:00
    assert table.attrs["data_report"]["excluded.after_as_of"] == 1
    assert table.loc["a", "expected_purchases"] == pytest.approx(
        hourly.purchases.expected_purchases(24.0, 2.0, 23.0, 25.0), rel=1e-12
    )
    whole_day = score(hourly, tx, as_of="1997-01-01").set_index("customer_id")
    assert whole_day.loc["a", ["frequency", "recency", "T"]].tolist() == [1.0, 5.0, 14.0]
    with pytest.raises(DataError, match=r"as_of 1997-01-01 08:00:00 is before the first"):
        score(hourly, tx, as_of="1997-01-01T08:00")
    daily = score(model, tx, as_of="1997-01-01T08:00").set_index("customer_id")
    assert daily.loc["a", "frequency"] == 0  # the whole day, at daily resolution


def test_horizon_has_a_maximum(model):
    tx = TRANSACTIONS.dropna()
    with pytest.raises(DataError, match=f"at most {MAX_HORIZON_DAYS} \\(100 years\\)"):
        score(model, tx, horizon_days=MAX_HORIZON_DAYS + 1)
    with pytest.raises(DataError, match=r"at most 36525.*got 1000000000.0"):
        score(model, tx, horizon_days=1e9)
    assert score(model, tx, horizon_days=MAX_HORIZON_DAYS)["clv"].notna().all()


def test_columns_can_be_named_when_scoring(model):
    expected = score(model, TRANSACTIONS.dropna(), as_of="1997-04-01")
    other = TRANSACTIONS.dropna().rename(columns={"cid": "client", "day": "when", "value": "paid"})
    other["when"] = pd.to_datetime(other["when"]).dt.strftime("%d/%m/%Y")
    with pytest.raises(DataError, match=r"missing customer id column .*--customer-id COL"):
        score(model, other)
    table = score(
        model,
        other,
        as_of="1997-04-01",
        customer_id="client",
        date="when",
        amount="paid",
        date_format="%d/%m/%Y",
    )
    pd.testing.assert_frame_equal(table, expected)
    # A DataFrame with the canonical names needs no names but those that differ.
    canonical = other.rename(columns={"client": "customer_id", "paid": "amount"})
    named = score(model, canonical, as_of="1997-04-01", date="when", date_format="%d/%m/%Y")
    pd.testing.assert_frame_equal(named, expected)
    with pytest.raises(DataError, match=r"customer_id must be the name of a column"):
        score(model, other, customer_id="")


def test_a_count_only_model_reads_no_amount(model):
    count_only = dataclasses.replace(model, spend=None)
    with pytest.raises(DataError, match=r"count-only.*leave out the amount column 'value'"):
        score(count_only, TRANSACTIONS.dropna(), amount="value")


# Ids keep the type they came in (issue 14, item 5).

INT_TRANSACTIONS = pd.DataFrame(
    {
        "cid": [100, 100, 9, 10, 10, 7, 100],
        "day": [
            "1997-01-01",
            "1997-02-01",
            "1997-01-15",
            "1997-01-03",
            "1997-02-03",
            "1997-06-01",  # 7: only after as_of
            "1997-03-01",
        ],
        "value": [10.0, 20.0, 5.0, -3.0, -4.0, 7.0, 30.0],  # 10: only returns
    }
)


def test_integer_ids_stay_integers_and_join_the_users_tables(model):
    table = score(model, INT_TRANSACTIONS, as_of="1997-04-01")
    assert table["customer_id"].dtype == "int64"
    # Numeric order (string order would put 10 and 100 before 7 and 9).
    assert table["customer_id"].tolist() == [7, 9, 10, 100]
    reasons = table.set_index("customer_id")["reason"]
    assert reasons[7] == NO_HISTORY and reasons[10] == ALL_EXCLUDED
    assert reasons[[9, 100]].isna().all()
    customers = pd.DataFrame({"customer_id": np.array([100, 9, 10, 7]), "name": list("wxyz")})
    joined = table.merge(customers, on="customer_id", validate="one_to_one")
    assert joined.set_index("customer_id")["name"].to_dict() == {7: "z", 9: "x", 10: "y", 100: "w"}
    # The same customers under string ids: strings, in string order, "007" not "7".
    as_text = INT_TRANSACTIONS.assign(cid=INT_TRANSACTIONS["cid"].map("{:03d}".format))
    text_table = score(model, as_text, as_of="1997-04-01")
    assert pd.api.types.is_string_dtype(text_table["customer_id"])
    assert text_table["customer_id"].tolist() == ["007", "009", "010", "100"]
    numbers = ["frequency", "recency", "T", "p_alive", "clv"]
    pd.testing.assert_frame_equal(text_table[numbers], table[numbers])


def test_int64_ids_beyond_2_to_the_53_keep_every_digit(model):
    big = [2**53 + 1, 2**53 + 2, 2**63 - 1, -(2**63)]
    tx = pd.DataFrame(
        {
            "cid": np.array(big + big, dtype=np.int64),
            "day": ["1997-01-01"] * 4 + ["1997-02-01"] * 4,
            "value": 10.0,
        }
    )
    table = score(model, tx, as_of="1997-04-01")
    assert table["customer_id"].dtype == "int64"
    assert table["customer_id"].tolist() == sorted(big)
    assert table["reason"].isna().all()


def test_nullable_ids_stay_nullable_and_rows_without_one_are_counted(model):
    tx = INT_TRANSACTIONS.assign(cid=pd.array([100, 100, 9, None, None, 2**53 + 1, 100], "Int64"))
    with pytest.warns(ClvlabWarning, match="2 transaction rows have no customer id"):
        table = score(model, tx, as_of="1997-04-01")
    assert table["customer_id"].dtype == "Int64"
    assert table["customer_id"].tolist() == [9, 100, 2**53 + 1]
    assert table["customer_id"].notna().all()
    assert table.attrs["data_report"]["excluded.missing_customer_id"] == 2


def test_float_and_mixed_ids_are_text_as_before(model):
    """Only integer dtypes come back as numbers: whole floats (ints with missing values read as
    floats) are rendered without ".0", other floats and mixed types as text."""
    base = INT_TRANSACTIONS.head(4)
    ids = {
        "int64": ([100, 100, 9, 7], [7, 9, 100]),
        "whole floats": ([100.0, 100.0, 9.0, 7.0], ["100", "7", "9"]),
        "floats": ([100.5, 100.5, 9.0, 7.0], ["100.5", "7.0", "9.0"]),
        "mixed": ([100, 100, "9", 7], ["100", "7", "9"]),
    }
    for what, (values, expected) in ids.items():
        column = pd.Series(values, dtype=object if what == "mixed" else None)
        table = score(model, base.assign(cid=column), as_of="1997-04-01")
        assert table["customer_id"].tolist() == expected, what
        numeric = pd.api.types.is_integer_dtype(table["customer_id"])
        assert numeric == (what == "int64"), what


def test_linked_integer_ids_keep_their_dtype(model):
    """The canonical id of linked ids (the one with the earliest purchase) is an id of the
    transactions, so it keeps their integer dtype."""
    tx = pd.DataFrame(
        {
            "cid": [2**53 + 1, 2**53 + 1, 5, 5, 40],
            "day": ["1997-01-10", "1997-02-10", "1997-01-02", "1997-03-01", "1997-01-20"],
            "value": [10.0, 20.0, 5.0, 7.0, 3.0],
        }
    )
    links = pd.DataFrame({"id_a": [5, 40], "id_b": [2**53 + 1, 123]})  # 123: never bought
    table = score(model, tx, as_of="1997-04-01", identity_links=links)
    assert table["customer_id"].dtype == "int64"
    assert table["customer_id"].tolist() == [5, 40]  # 5's first purchase is the earliest
    assert table.set_index("customer_id").loc[5, "frequency"] == 3
