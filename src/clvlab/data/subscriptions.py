"""Subscriptions, for contractual churn (:class:`clvlab.models.contractual.ShiftedBetaGeometric`).

A subscription table has one row per subscription: the customer, the day it started, the day
it ended (empty while it is active) and the price per period (``price=None`` when there is
none). It is read and
validated like transactions (:func:`read_subscriptions`), with every excluded row counted in a
:class:`SubscriptionReport`; :func:`subscriber_periods` then turns it, at an as-of date, into
what the sBG model is fitted on: per subscription, the periods completed and whether it was
lost at the end of the last of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from clvlab.data.io import TransactionSource, as_customer_ids, load_table
from clvlab.data.validate import BadValues, raise_bad_values, read_dates, require_columns
from clvlab.errors import DataError

#: The canonical columns of a subscription table.
SUBSCRIPTION_COLUMNS = ("customer_id", "start", "end", "price")
#: Periods a subscription is counted in: a calendar month, a week, a day, a year.
PERIODS = ("M", "W", "D", "Y")


@dataclass
class SubscriptionReport:
    """What happened to the rows of a subscription table: ``rows_read == rows_kept +
    sum(excluded.values())``; ``subscribers`` and ``active`` describe the rows kept."""

    rows_read: int = 0
    excluded: dict[str, int] = field(default_factory=dict)
    rows_kept: int = 0
    subscribers: int = 0
    active: int = 0

    def to_dict(self) -> dict[str, object]:
        """A flat, JSON-friendly dict (``excluded.<reason>`` per reason)."""
        flat: dict[str, object] = {"rows_read": self.rows_read}
        flat.update({f"excluded.{reason}": count for reason, count in self.excluded.items()})
        flat.update(rows_kept=self.rows_kept, subscribers=self.subscribers, active=self.active)
        return flat


def read_subscriptions(
    source: TransactionSource,
    *,
    customer_id: str = "customer_id",
    start: str = "start",
    end: str = "end",
    price: str | None = "price",
    date_format: str | None = None,
) -> tuple[pd.DataFrame, SubscriptionReport]:
    """Read and validate a subscription table (a DataFrame, CSV or Parquet).

    Rows without a customer id, rows whose end is before their start and rows with a
    negative price are excluded and counted; a start or end that is not a date, or a price
    that is not a number, is a :class:`DataError` naming the rows (nothing is guessed).

    Parameters
    ----------
    source
        The table.
    customer_id, start, end, price
        Its columns: the subscriber, the first day, the last day (empty, NaN or NaT while
        the subscription is active) and the price per period (None: no price column).
    date_format
        ``strftime`` format of the dates when they are strings pandas cannot infer.

    Returns
    -------
    (subscriptions, report)
        The canonical table (``customer_id`` text, ``start`` and ``end`` naive timestamps,
        ``price`` float when given), sorted by customer and start, and its report.
    """
    frame, where = load_table(source, "subscriptions")
    columns = {"customer id": customer_id, "start": start, "end": end}
    if price is not None:
        columns["price"] = price
    fix = (
        "Rename the column, or name it: read_subscriptions(customer_id=..., start=..., "
        "end=..., price=...); a subscription needs its start (its end is empty while active)."
    )
    require_columns(frame, columns, where, fix)
    frame = frame.reset_index(drop=True)
    report = SubscriptionReport(rows_read=len(frame))
    table = pd.DataFrame({"customer_id": as_customer_ids(frame[customer_id]).to_numpy()})
    starts, bad = read_dates(_whole_numbers(frame[start]), start, date_format, where)
    raise_bad_values(bad, where)
    # An empty end is an active subscription; any other end must be a date.
    active = frame[end].isna() | frame[end].astype("string").str.strip().eq("").fillna(False)
    ends, _ = read_dates(_whole_numbers(frame[end]).where(~active), end, date_format, where)
    raise_bad_values(
        BadValues.of(frame[end], ends.isna() & ~active, end, "not a date", date_format), where
    )
    table["start"], table["end"] = starts.to_numpy(), ends.to_numpy()
    if price is not None:
        values = pd.to_numeric(frame[price], errors="coerce")
        not_number = values.isna() & frame[price].notna()
        raise_bad_values(BadValues.of(frame[price], not_number, price, "not a number"), where)
        table["price"] = values.to_numpy(dtype=float)
    drops = {
        "missing_customer_id": table["customer_id"].isna().to_numpy(),
        "end_before_start": (table["end"] < table["start"]).to_numpy(),
    }
    if price is not None:
        drops["negative_price"] = (table["price"] < 0).to_numpy()
    keep = np.ones(len(table), dtype=bool)
    for reason, rows in drops.items():
        report.excluded[reason] = int((rows & keep).sum())
        keep &= ~rows
    table = table[keep].sort_values(["customer_id", "start"]).reset_index(drop=True)
    report.rows_kept = len(table)
    report.subscribers = int(table["customer_id"].nunique())
    report.active = int(table["end"].isna().sum())
    return table, report


def _whole_numbers(values: pd.Series) -> pd.Series:
    """Dates written as numbers (20240115) in a column with empty cells, which pandas reads
    as floats: as the integers they are, so that they are read as ``%Y%m%d``."""
    if pd.api.types.is_float_dtype(values):
        whole = values.dropna()
        if len(whole) and (whole == whole.round()).all():
            return values.astype("Int64")
    return values


def subscriber_periods(
    subscriptions: pd.DataFrame, as_of: pd.Timestamp | str, period: str = "M"
) -> pd.DataFrame:
    """What the sBG model is fitted on, per subscription started on or before ``as_of``.

    A subscription pays one ``period`` at a time from its start. Ended on or before
    ``as_of``: ``periods`` is the number of periods it was paid for, at least 1 (one
    cancelled at the first renewal has 1; a partly used period counts), ``churned`` True.
    Active at ``as_of`` (no end, or an end after it): ``periods`` is the number of periods
    completed by then (the renewals made, 0 for one in its first period), ``churned`` False.

    Parameters
    ----------
    subscriptions
        :func:`read_subscriptions`' table.
    as_of
        The date the data are observed at.
    period
        ``"M"`` (calendar months from the start day), ``"W"``, ``"D"`` or ``"Y"``.

    Returns
    -------
    pandas.DataFrame
        ``customer_id``, ``cohort`` (the start's period, e.g. ``2024-01``), ``periods``,
        ``churned`` and ``price`` (when the table has one), in the table's order.
    """
    if period not in PERIODS:
        raise DataError(f"period must be one of {list(PERIODS)}, not {period!r}")
    as_of = _as_of(as_of)
    table = subscriptions[subscriptions["start"] <= as_of]
    ended = table["end"].notna() & (table["end"] <= as_of)
    until = table["end"].where(ended, as_of)
    whole, partial = _elapsed(table["start"], until, period)
    periods = np.where(ended, np.maximum(whole + partial, 1), whole)
    out = pd.DataFrame(
        {
            "customer_id": table["customer_id"].to_numpy(),
            "cohort": table["start"].dt.to_period(period).astype("string").to_numpy(),
            "periods": periods.astype(int),
            "churned": ended.to_numpy(),
        }
    )
    if "price" in table:
        out["price"] = table["price"].to_numpy()
    return out


def _as_of(value: pd.Timestamp | str) -> pd.Timestamp:
    """``as_of`` as a timezone-naive timestamp, or a :class:`DataError` naming the value."""
    problem = DataError(f"as_of {value!r} is not a date: give one such as '2024-06-30'")
    try:
        stamp = pd.Timestamp(value)
    except (TypeError, ValueError):
        raise problem from None
    if pd.isna(stamp):
        raise problem
    return stamp.tz_localize(None) if stamp.tzinfo is not None else stamp


def _elapsed(start: pd.Series, until: pd.Series, period: str) -> tuple[np.ndarray, np.ndarray]:
    """Whole periods from ``start`` to ``until``, and whether part of one more has begun.
    Months (and years) are calendar months: one is complete when the start's day and time
    of day come round again (from January 31, at the end of February none has)."""
    if period in ("D", "W"):
        days = (until - start).dt.total_seconds().to_numpy() / 86_400.0
        length = 1.0 if period == "D" else 7.0
        whole = np.floor(days / length)
        return whole, (days > whole * length).astype(int)
    per = 12 if period == "Y" else 1
    months = ((until.dt.year - start.dt.year) * 12 + (until.dt.month - start.dt.month)).to_numpy()
    same_day = (until.dt.day == start.dt.day).to_numpy()
    until_time = (until - until.dt.normalize()).to_numpy()
    start_time = (start - start.dt.normalize()).to_numpy()
    reached = (until.dt.day > start.dt.day).to_numpy() | (same_day & (until_time >= start_time))
    complete = months - (~reached).astype(int)
    exactly = same_day & (until_time == start_time)
    whole = np.floor(complete / per)
    on_boundary = exactly & (complete % per == 0)
    return whole, ((until > start).to_numpy() & ~on_boundary).astype(int)
