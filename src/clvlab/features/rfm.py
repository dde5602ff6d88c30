"""RFM summaries with lifetimes' semantics, computed in DuckDB.

The definitions are those of lifetimes' ``summary_data_from_transaction_data`` and
``calibration_and_holdout_data``, so results can be compared to the letter:

- dates are floored to periods of ``freq`` (day, Monday-based week, calendar month) and all
  purchases of a customer in one period are merged into one;
- ``frequency`` is the number of periods with a purchase, less the first;
- ``recency`` is the time from the first to the last purchase period and ``T`` from the first
  purchase period to the observation end's period, both in units of ``freq`` divided by
  ``freq_multiplier`` (a month is 30.436875 days, as in pandas 2);
- ``monetary_value`` is the mean value of the repeat periods (0 for one-time buyers).

``freq="D", freq_multiplier=7`` gives weeks at daily resolution, the data of Fader, Hardie and
Lee (2005); ``freq="W"`` floors to whole weeks.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

import duckdb
import pandas as pd

from clvlab.config import UNIT_DAYS
from clvlab.data.io import AMOUNT, CUSTOMER_ID, DATE
from clvlab.errors import DataError

Freq = Literal["D", "W", "M"]
DateLike = str | dt.date | pd.Timestamp

_TRUNC = {"D": "day", "W": "week", "M": "month"}


def rfm(
    transactions: pd.DataFrame,
    as_of: DateLike,
    *,
    freq: Freq = "D",
    freq_multiplier: float = 1.0,
) -> pd.DataFrame:
    """Summarize each customer's transactions at an as-of date.

    Parameters
    ----------
    transactions
        Canonical transactions: ``customer_id``, ``date`` and optionally ``amount``.
    as_of
        End of the observation period; transactions in later periods are ignored.
    freq
        Period to which dates are floored: ``"D"``, ``"W"`` or ``"M"``.
    freq_multiplier
        Divides recency and T, e.g. 7 with ``freq="D"`` for weeks at daily resolution.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``customer_id`` (sorted); ``frequency``, ``recency``, ``T`` and, when the
        transactions have amounts, ``monetary_value``. One row per customer with a purchase in
        or before the as-of period.
    """
    trunc, divisor = _period(freq, freq_multiplier)
    has_amount = AMOUNT in transactions.columns
    value = f"sum({AMOUNT})" if has_amount else "NULL"
    money = (
        ", CASE WHEN count(*) > 1 THEN (sum(value) - arg_min(value, period)) / (count(*) - 1)"
        " ELSE 0 END AS monetary_value"
        if has_amount
        else ""
    )
    sql = f"""
        WITH periods AS (
            SELECT {CUSTOMER_ID} AS customer_id, date_trunc('{trunc}', {DATE}) AS period,
                   {value} AS value
            FROM tx
            WHERE date_trunc('{trunc}', {DATE}) <= date_trunc('{trunc}', $as_of)
            GROUP BY ALL
        )
        SELECT customer_id,
               CAST(count(*) - 1 AS DOUBLE) AS frequency,
               date_diff('day', min(period), max(period)) / $divisor AS recency,
               date_diff('day', min(period), date_trunc('{trunc}', $as_of)) / $divisor AS T
               {money}
        FROM periods
        GROUP BY customer_id
        ORDER BY customer_id
    """
    params = {"as_of": _timestamp(as_of), "divisor": divisor}
    return _query(sql, transactions, params).set_index(CUSTOMER_ID)


def calibration_holdout(
    transactions: pd.DataFrame,
    cutoff: DateLike,
    end: DateLike,
    *,
    freq: Freq = "D",
    freq_multiplier: float = 1.0,
) -> pd.DataFrame:
    """Summarize a calibration period and what each customer did in the holdout after it.

    As lifetimes' ``calibration_and_holdout_data``: the calibration summary (columns suffixed
    ``_cal``) covers transactions at or before ``cutoff``; the holdout covers those after
    ``cutoff`` up to and including ``end``, for customers seen in calibration only.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``customer_id``: ``frequency_cal``, ``recency_cal``, ``T_cal``,
        [``monetary_value_cal``], ``frequency_holdout`` (purchase periods in the holdout),
        [``monetary_value_holdout`` (mean transaction value in the holdout, lifetimes'
        definition), ``revenue_holdout`` (total value in the holdout)], ``duration_holdout``.
    """
    cutoff_ts, end_ts = _timestamp(cutoff), _timestamp(end)
    if end_ts <= cutoff_ts:
        raise DataError(f"holdout end {end_ts.date()} must be after the cutoff {cutoff_ts.date()}")
    calibration = transactions[transactions[DATE] <= cutoff_ts]
    if calibration.empty:
        raise DataError(f"no transactions on or before the calibration cutoff {cutoff_ts.date()}")
    summary = rfm(calibration, cutoff_ts, freq=freq, freq_multiplier=freq_multiplier)
    summary.columns = [f"{column}_cal" for column in summary.columns]

    trunc, divisor = _period(freq, freq_multiplier)
    has_amount = AMOUNT in transactions.columns
    money = (
        f", avg({AMOUNT}) AS monetary_value_holdout, sum({AMOUNT}) AS revenue_holdout"
        if has_amount
        else ""
    )
    sql = f"""
        SELECT {CUSTOMER_ID} AS customer_id,
               CAST(count(DISTINCT date_trunc('{trunc}', {DATE})) AS DOUBLE) AS frequency_holdout
               {money}
        FROM tx
        WHERE {DATE} > $cutoff AND {DATE} <= $end
        GROUP BY {CUSTOMER_ID}
    """
    holdout = _query(sql, transactions, {"cutoff": cutoff_ts, "end": end_ts})
    combined = summary.join(holdout.set_index(CUSTOMER_ID), how="left").fillna(0.0)
    periods = _query(
        f"SELECT date_diff('day', date_trunc('{trunc}', $cutoff), date_trunc('{trunc}', $end))"
        " / $divisor AS d",
        transactions.head(0),
        {"cutoff": cutoff_ts, "end": end_ts, "divisor": divisor},
    )
    combined["duration_holdout"] = float(periods["d"].iloc[0])
    return combined


def _period(freq: str, freq_multiplier: float) -> tuple[str, float]:
    if freq not in _TRUNC:
        raise DataError(f"freq must be one of 'D', 'W', 'M', got {freq!r}")
    if not freq_multiplier > 0:
        raise DataError(f"freq_multiplier must be positive, got {freq_multiplier!r}")
    return _TRUNC[freq], UNIT_DAYS[freq] * float(freq_multiplier)


def _timestamp(value: DateLike) -> pd.Timestamp:
    try:
        stamp = pd.Timestamp(value)
    except (TypeError, ValueError):
        raise DataError(f"cannot read {value!r} as a date; use YYYY-MM-DD") from None
    if stamp is pd.NaT:
        raise DataError(f"cannot read {value!r} as a date; use YYYY-MM-DD")
    return stamp.tz_convert(None) if stamp.tzinfo else stamp


def _query(sql: str, transactions: pd.DataFrame, params: dict[str, object]) -> pd.DataFrame:
    with duckdb.connect() as con:
        con.register("tx", transactions)
        return con.execute(sql, params).df()
