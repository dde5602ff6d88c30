import numpy as np
import pandas as pd
import pytest

from clvlab import CLVModel, DataError, score
from clvlab.outputs import write_json, write_table
from clvlab.scoring import NO_HISTORY, SCORE_COLUMNS


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
