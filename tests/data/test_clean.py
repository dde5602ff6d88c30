from pathlib import Path

import pandas as pd
import pytest

from clvlab import DataError, clean_transactions, load_config, read_transactions
from clvlab.data import CleaningPolicy

ROOT = Path(__file__).resolve().parents[2]
ONLINE_RETAIL = ROOT.parent / "shared" / "data" / "online_retail.parquet"
needs_online_retail = pytest.mark.skipif(
    not ONLINE_RETAIL.exists(), reason=f"shared data not found at {ONLINE_RETAIL}"
)


def lines(rows: list[tuple]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["customer_id", "date", "amount", "invoice", "item"])
    frame["date"] = pd.to_datetime(frame["date"])
    frame["customer_id"] = frame["customer_id"].astype("string")
    return frame


SHOP = lines(
    [
        ("a", "2021-01-01 10:00", 10.0, "1", "x"),
        ("a", "2021-01-01 10:00", 10.0, "1", "x"),  # exact duplicate
        ("a", "2021-01-01 10:01", 5.0, "1", "y"),  # second line of invoice 1
        ("a", "2021-01-05 09:00", 0.0, "2", "z"),  # zero-value line: invoice 2 disappears
        ("a", "2021-01-06 09:00", -4.0, "C3", "x"),  # returns 4 of invoice 1
        ("b", "2021-01-02 12:00", 8.0, "4", "x"),
        ("b", "2021-01-03 12:00", -8.0, "C5", "x"),  # returns all of invoice 4
        ("c", "2021-01-01 08:00", -3.0, "C6", "y"),  # nothing earlier to net against
        ("c", "2021-01-09 08:00", 7.0, "7", "y"),
        (None, "2021-01-09 08:00", 7.0, "8", "y"),  # no customer
    ]
)
STRICT = CleaningPolicy(duplicates="drop", zero_amounts="drop", cancellation_prefix="C")


def test_defaults_drop_only_rows_without_customer_and_negative_amounts():
    kept, report = clean_transactions(SHOP)
    assert len(kept) == 6 and (kept["amount"] >= 0).all()
    assert report.steps == {"missing_customer_id": 1, "returns_dropped": 3}
    kept, report = clean_transactions(SHOP.assign(amount=SHOP["amount"].abs()))
    assert report.steps == {"missing_customer_id": 1, "returns_dropped": 0}


def test_strict_policy_dropping_returns_by_hand():
    kept, report = clean_transactions(SHOP, policy=STRICT, invoice="invoice")
    assert report.steps == {
        "missing_customer_id": 1,
        "duplicates": 1,
        "zero_amounts": 1,
        "invoice_lines_merged": 1,
        "returns_dropped": 3,
    }
    assert kept[["customer_id", "invoice", "amount"]].values.tolist() == [
        ["a", "1", 15.0],
        ["b", "4", 8.0],
        ["c", "7", 7.0],
    ]
    # The merged invoice keeps its first line's time and other columns.
    assert kept.loc[0, "date"] == pd.Timestamp("2021-01-01 10:00") and kept.loc[0, "item"] == "x"
    assert report.rows_read == report.rows_kept + sum(report.steps.values())


def test_netting_returns_against_the_latest_earlier_purchase():
    policy = CleaningPolicy(
        duplicates="drop", zero_amounts="drop", cancellation_prefix="C", returns="net"
    )
    kept, report = clean_transactions(SHOP, policy=policy, invoice="invoice")
    assert kept[["customer_id", "invoice", "amount"]].values.tolist() == [
        ["a", "1", 11.0],  # 10 + 5 - 4
        ["c", "7", 7.0],  # the earlier return had nothing to net against
    ]
    assert report.steps["returns_netted"] == 2
    assert report.steps["returns_unmatched"] == 1
    assert report.steps["purchases_fully_returned"] == 1
    assert report.customers == 2
    assert report.rows_read == report.rows_kept + sum(report.steps.values())


def test_until_covers_the_whole_day():
    kept, report = clean_transactions(SHOP, until="2021-01-02")
    assert kept["date"].max() == pd.Timestamp("2021-01-02 12:00")
    assert report.steps["after_end"] == 4
    kept, _ = clean_transactions(SHOP, until=pd.Timestamp("2021-01-02 11:00"))
    assert kept["date"].max() == pd.Timestamp("2021-01-01 10:01")


def test_policies_that_cannot_apply_are_errors():
    with pytest.raises(DataError, match="needs the invoice column"):
        clean_transactions(SHOP, policy=STRICT)
    with pytest.raises(DataError, match="count-only"):
        clean_transactions(SHOP.drop(columns="amount"), policy=CleaningPolicy(returns="net"))
    with pytest.raises(DataError, match="invoice column 'nope'"):
        clean_transactions(SHOP, invoice="nope")


@needs_online_retail
def test_online_retail_policy_counts_every_line():
    config = load_config(ROOT / "configs" / "online_retail.yaml")
    data = config.data
    raw = read_transactions(ONLINE_RETAIL, **data.columns())
    assert len(raw) == 541_909
    kept, report = clean_transactions(raw, policy=config.cleaning, invoice=data.invoice)
    assert report.steps == {
        "missing_customer_id": 135_080,
        "duplicates": 5_225,
        "zero_amounts": 40,
        "invoice_lines_merged": 379_378,
        "returns_netted": 3_454,
        "returns_unmatched": 200,
        "purchases_fully_returned": 281,  # 6 of them netted to a rounding remainder (1e-14)
    }
    assert report.rows_read == report.rows_kept + sum(report.steps.values())
    assert (kept["amount"] > 0).all() and kept["customer_id"].notna().all()
    assert kept["InvoiceNo"].is_unique and not kept["InvoiceNo"].str.startswith("C").any()
    # Float ids are read as whole numbers; 12346 bought once and cancelled it in full.
    assert kept["customer_id"].iloc[0] == "12347" and "12346" not in set(kept["customer_id"])
