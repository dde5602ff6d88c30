"""Subscriptions for contractual churn (issue 17, item 4): read, validated and counted like
transactions, and turned into the sBG model's periods and churned flags."""

import numpy as np
import pandas as pd
import pytest

import clvlab
from clvlab import DataError, ShiftedBetaGeometric, read_subscriptions, subscriber_periods

#: Fader & Hardie (2007): survivors of 1,000 customers at the start of years 0 to 7, and the
#: sBG parameters fitted on them.
REGULAR = ([1000, 631, 468, 382, 326, 289, 262, 241], {"alpha": 0.704, "beta": 1.182})
HIGH_END = ([1000, 869, 743, 653, 593, 551, 517, 491], {"alpha": 0.668, "beta": 3.806})


def _cohort(survivors: list[int], start: str = "2000-03-15") -> pd.DataFrame:
    """A subscription table of the survivor counts: yearly renewals from ``start``; those
    lost in year k cancel a few days before its end; the others are still active."""
    first = pd.Timestamp(start)
    rows = []
    for year in range(1, len(survivors)):
        end = first + pd.DateOffset(years=year) - pd.Timedelta(days=3)
        rows += [(first, end)] * (survivors[year - 1] - survivors[year])
    rows += [(first, pd.NaT)] * survivors[-1]
    table = pd.DataFrame(rows, columns=["start", "end"])
    table.insert(0, "customer_id", [f"c{i}" for i in range(len(table))])
    table["price"] = 100.0
    return table


@pytest.mark.parametrize(("survivors", "published"), [REGULAR, HIGH_END])
def test_the_papers_segments_from_subscription_tables(survivors, published):
    table, report = read_subscriptions(_cohort(survivors))
    assert report.rows_read == report.rows_kept == report.subscribers == 1000
    assert report.active == survivors[-1]
    as_of = pd.Timestamp("2007-03-20")  # after the 7th renewal date
    periods = subscriber_periods(table, as_of, period="Y")
    lost = periods[periods["churned"]].groupby("periods").size()
    assert lost.to_dict() == {k: survivors[k - 1] - survivors[k] for k in range(1, 8)}
    assert (periods.loc[~periods["churned"], "periods"] == 7).all()
    assert (periods["cohort"] == "2000").all() and (periods["price"] == 100.0).all()
    model = ShiftedBetaGeometric().fit(periods)
    assert model.params_.round(3).to_dict() == published


def test_periods_by_hand():
    table, _ = read_subscriptions(
        pd.DataFrame(
            {
                "customer_id": ["a", "b", "c", "d", "e", "f", "g"],
                "start": [
                    "2024-01-15",
                    "2024-01-15",
                    "2024-01-15",
                    "2024-04-01",
                    "2024-01-31",
                    "2024-01-15",
                    "2024-05-01",
                ],
                "end": ["2024-02-15", "2024-03-10", None, "", "2024-02-29", "2024-06-01", None],
            }
        ),
        price=None,
    )
    periods = subscriber_periods(table, "2024-04-20").set_index("customer_id")
    expected = {
        "a": (1, True),  # cancelled at the first renewal
        "b": (2, True),  # the second month partly used, paid for
        "c": (3, False),  # active: three renewals made (Feb 15, Mar 15, Apr 15)
        "d": (0, False),  # in its first month
        "e": (1, True),  # January 31 to February 29: a month begun, none completed
        "f": (3, False),  # ends after as-of: still active then
    }
    assert {k: (int(p), bool(c)) for k, (p, c) in periods[["periods", "churned"]].iterrows()} == (
        expected
    )  # and g, started after as-of, is not there
    assert periods.loc["c", "cohort"] == "2024-01" and "price" not in periods
    weekly = subscriber_periods(table, "2024-04-20", period="W").set_index("customer_id")
    assert weekly.loc["a", "periods"] == 5 and weekly.loc["c", "periods"] == 13
    daily = subscriber_periods(table, "2024-04-20", period="D").set_index("customer_id")
    assert daily.loc["d", "periods"] == 19 and daily.loc["a", "periods"] == 31


def test_excluded_rows_are_counted_and_bad_values_named(tmp_path):
    csv = tmp_path / "subscriptions.csv"
    csv.write_text(
        "member,began,stopped,fee\n"
        "1,2024-01-01,,9.99\n"
        ",2024-01-01,,9.99\n"  # no customer id
        "3,2024-02-01,2024-01-01,9.99\n"  # ends before it starts
        "4,2024-02-01,,-5\n"  # a negative price
        "5,2024-03-01,2024-05-01,9.99\n"
    )
    columns = {"customer_id": "member", "start": "began", "end": "stopped", "price": "fee"}
    table, report = read_subscriptions(csv, **columns)
    assert list(table["customer_id"]) == ["1", "5"]
    assert report.to_dict() == {
        "rows_read": 5,
        "excluded.missing_customer_id": 1,
        "excluded.end_before_start": 1,
        "excluded.negative_price": 1,
        "rows_kept": 2,
        "subscribers": 2,
        "active": 1,
    }
    with pytest.raises(DataError, match="missing customer id column 'customer_id', start column"):
        read_subscriptions(csv)
    csv.write_text("customer_id,start,end,price\n1,2024-01-01,soon,9.99\n2,2024-01-02,,1\n")
    with pytest.raises(DataError, match=r"date column 'end'.*row 0: 'soon'"):
        read_subscriptions(csv)  # an empty end is an active subscription, 'soon' no date
    csv.write_text("customer_id,start,end,price\n1,2024-01-01,,9.99\n2,someday,,1\n")
    with pytest.raises(DataError, match=r"date column 'start'.*row 1: 'someday'"):
        read_subscriptions(csv)
    csv.write_text("customer_id,start,end,price\n1,2024-01-01,,nine\n")
    with pytest.raises(DataError, match=r"price.*nine"):
        read_subscriptions(csv)
    with pytest.raises(DataError, match="period must be one of"):
        subscriber_periods(table, "2024-06-01", period="Q")


def test_exported_from_clvlab():
    assert clvlab.read_subscriptions is read_subscriptions
    assert clvlab.subscriber_periods is subscriber_periods


def test_dates_written_as_numbers_with_empty_ends():
    """A column of 20240115-style dates with empty cells reads as floats: still dates."""
    table, report = read_subscriptions(
        pd.DataFrame(
            {
                "customer_id": ["a", "b"],
                "start": [20240115, 20240201],
                "end": [20240310.0, None],
                "price": [1.0, 2.0],
            }
        )
    )
    assert report.rows_kept == 2 and report.active == 1
    assert table.loc[0, "end"] == pd.Timestamp("2024-03-10")
    periods = subscriber_periods(table, "2024-04-20")
    assert periods["periods"].tolist() == [2, 2] and periods["churned"].tolist() == [True, False]
    with pytest.raises(DataError, match="as_of 'soon' is not a date"):
        subscriber_periods(table, "soon")


def test_cohorts_fit_apart_and_active_subscribers_are_scored():
    """Fader & Hardie's two segments in one table, fitted apart by a segment column: each
    fit is the paper's; an active subscriber after n periods renews with (beta + n) /
    (alpha + beta + n) and is worth price x DERL."""
    from clvlab.models.contractual import fit_cohorts, score_subscribers

    regular, high_end = _cohort(REGULAR[0]), _cohort(HIGH_END[0])
    high_end["customer_id"] = "h" + high_end["customer_id"]
    table, _ = read_subscriptions(pd.concat([regular, high_end]))
    periods = subscriber_periods(table, "2007-03-20", period="Y")
    periods["segment"] = np.where(periods["customer_id"].str.startswith("h"), "high", "regular")
    models = fit_cohorts(periods, by="segment")
    assert list(models) == ["high", "regular"]
    assert models["regular"].params_.round(3).to_dict() == REGULAR[1]
    assert models["high"].params_.round(3).to_dict() == HIGH_END[1]
    scores = score_subscribers(models, periods, discount_rate=0.1, by="segment")
    assert len(scores) == REGULAR[0][-1] + HIGH_END[0][-1] and not scores["churned"].any()
    for segment, published in (("regular", REGULAR[1]), ("high", HIGH_END[1])):
        row = scores[scores["segment"] == segment].iloc[0]
        alpha, beta, n = published["alpha"], published["beta"], row["periods"]
        assert n == 7
        assert row["p_renew"] == pytest.approx((beta + n) / (alpha + beta + n), rel=1e-3)
        derl = float(models[segment].expected_residual_lifetime(0.1, n))
        assert row["derl"] == pytest.approx(derl) and row["clv"] == pytest.approx(100.0 * derl)
    # One cohort (the start year) for all: one pooled fit, one renewal probability.
    assert list(fit_cohorts(periods)) == ["2000"]
    pooled = score_subscribers(fit_cohorts(periods, by=None)["all"], periods, discount_rate=0.1)
    assert len(pooled) == len(scores) and pooled["p_renew"].nunique() == 1
    with pytest.raises(DataError, match="no model for cohort"):
        score_subscribers({"regular": models["regular"]}, periods, discount_rate=0.1, by="segment")
