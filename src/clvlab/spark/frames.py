"""Spark columns in clvlab's conventions: naive timestamps and literals."""

from __future__ import annotations

import datetime as dt

import pandas as pd
from pyspark.sql import Column
from pyspark.sql import functions as F


def naive(column: str) -> Column:
    """``column`` as a timezone-naive timestamp (``TIMESTAMP_NTZ``).

    clvlab's dates are naive wall-clock times. Spark's ``TIMESTAMP`` is an instant, which a
    pandas table's naive times become in the session time zone; cast back to a naive
    timestamp in that same zone, they are the wall-clock times again, so days, weeks and
    months are cut where pandas and DuckDB cut them, whatever the session's zone. A
    ``TIMESTAMP_NTZ`` or ``DATE`` column is taken as it is.
    """
    return F.col(column).cast("timestamp_ntz")


def naive_literal(stamp: pd.Timestamp) -> Column:
    """A naive timestamp literal, independent of the session and driver time zones (a
    Python ``datetime`` literal would be read in the driver's local zone). Spark keeps
    microseconds: a stamp is floored to them, which compares with Spark's timestamps as
    the stamp itself does."""
    text = stamp.floor("us").isoformat(sep=" ")
    return F.lit(text).cast("timestamp_ntz")


def date_literal(stamp: pd.Timestamp) -> Column:
    """The day of ``stamp`` as a ``DATE`` literal."""
    return F.lit(str(stamp.date())).cast("date")


def as_naive_timestamp(value: dt.datetime | None) -> pd.Timestamp | None:
    """A collected ``TIMESTAMP_NTZ`` value (a naive ``datetime``; None stays None) as a
    pandas timestamp."""
    return None if value is None else pd.Timestamp(value)
