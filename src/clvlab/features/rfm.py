"""RFM summaries with lifetimes' semantics, computed in DuckDB (in memory or out of core).

The definitions are those of lifetimes' ``summary_data_from_transaction_data`` and
``calibration_and_holdout_data``, so results can be compared to the letter:

- dates are floored to periods of ``freq`` (day, Monday-based week, calendar month, clock
  hour) and all purchases of a customer in one period are merged into one;
- ``frequency`` is the number of periods with a purchase, less the first;
- ``recency`` is the time from the first to the last purchase period and ``T`` from the first
  purchase period to the observation end's period, both in units of ``freq`` divided by
  ``freq_multiplier`` (a month is 30.436875 days, as in pandas 2; hours are counted in hours);
- ``monetary_value`` is the mean value of the repeat periods (0 for one-time buyers).

``freq="D", freq_multiplier=7`` gives weeks at daily resolution, the data of Fader, Hardie and
Lee (2005); ``freq="W"`` floors to whole weeks. ``freq="H"`` is lifetimes' ``freq="h"``
(``"H"`` before pandas 2.2): purchases merged per clock hour, recency and T in hours.

A cutoff given as a date (or a timestamp at midnight) covers that whole day: "calibration
until 2011-09-09" includes a purchase at 2011-09-09 15:30. lifetimes compares raw timestamps
instead, so for timestamped data it equals lifetimes given the end of the day
(``2011-09-09 23:59:59.999999``); for date-only data the two are the same.

So with ``freq="H"`` an as-of, cutoff or end given as a date (or a timestamp at midnight)
ends with its day's last hour, 23:00 (lifetimes given ``23:59:59.999999`` of the day), and one
with a time ends with that time's hour (``"2011-09-09T15:30"``: the hour from 15:00; lifetimes
given the same timestamp). This holds for the default as-of too (the last transaction's date
and time), so a last transaction at exactly midnight is read as a date.

``transactions`` may be a DataFrame or Parquet files (a file, a folder or a glob) with the
canonical columns; files are read by DuckDB in a streaming way, so the data need not fit in
memory (set ``memory_limit`` to bound DuckDB's memory; it spills to disk beyond it).
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import tempfile
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
from pandas.api.typing import NaTType

from clvlab.config import UNIT_DAYS
from clvlab.data.io import AMOUNT, CUSTOMER_ID, DATE, check_canonical, parquet_glob, sql_string
from clvlab.errors import DataError

Freq = Literal["D", "W", "M", "H"]
#: A date argument: an ISO 8601 string (see :func:`as_timestamp`) or a date/time object.
DateLike = str | dt.date | pd.Timestamp | np.datetime64
Transactions = pd.DataFrame | str | Path

_TRUNC = {"D": "day", "W": "week", "M": "month", "H": "hour"}
_STRINGS = {pa.string(): pd.StringDtype(), pa.large_string(): pd.StringDtype()}
_CONNECTIONS = threading.local()
#: The name under which a DataFrame of transactions is registered with DuckDB.
_FRAME = "clvlab_transactions"
#: A DataFrame of fewer rows is summarized on one DuckDB thread (unless ``threads`` says
#: otherwise): more only add start-up work, about a third more CPU time and no less wall time
#: up to about 10,000 rows (a served request, a profile, a test table). fsum makes the result
#: the same on any number of threads.
_ONE_THREAD_ROWS = 10_000
#: YYYY-MM-DD, optionally with a time (after "T" or a space) and then a zone (Z or an offset).
_ISO_DATE = re.compile(
    r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}(?::?\d{2})?)?)?"
)


def rfm(
    transactions: Transactions,
    as_of: DateLike | None = None,
    *,
    freq: Freq = "D",
    freq_multiplier: float = 1.0,
    memory_limit: str | None = None,
    threads: int | None = None,
    litt: bool = False,
) -> pd.DataFrame:
    """Summarize each customer's transactions at an as-of date.

    Parameters
    ----------
    transactions
        Canonical transactions (``customer_id``, ``date``, optionally ``amount``): a DataFrame
        or Parquet files (path, folder or glob).
    as_of
        End of the observation period; transactions in later periods are ignored. An ISO 8601
        string (``"1998-06-30"``, see :func:`as_timestamp`) or a date/time object; anything
        else is a :class:`DataError`. None (the default): the last transaction's date and
        time, as lifetimes' ``summary_data_from_transaction_data`` without
        ``observation_period_end``. A date (or midnight) covers its whole day, also with
        ``freq="H"`` (whose last period is then 23:00; see the module docstring).
    freq
        Period to which dates are floored: ``"D"``, ``"W"``, ``"M"`` or ``"H"`` (clock hours;
        recency and T in hours).
    freq_multiplier
        Divides recency and T, e.g. 7 with ``freq="D"`` for weeks at daily resolution (24
        with ``freq="H"``: days at hourly resolution).
    memory_limit
        DuckDB memory limit such as ``"3GB"``; beyond it DuckDB spills to a temporary folder.
    threads
        DuckDB threads; when None, all cores (one for a DataFrame of fewer than 10,000 rows,
        which more would only slow down). Callers that summarize in several threads at once
        share the cores this way.
    litt
        Also give ``litt``: the sum of the logarithms of the times between consecutive
        purchase periods, in the unit of recency and T (0 for one purchase), what MBG/CNBD-k
        models need to estimate the regularity of purchase timing (BTYDplus' ``elog2cbs``).

    Returns
    -------
    pandas.DataFrame
        Indexed by ``customer_id`` (sorted); ``frequency``, ``recency``, ``T`` and, when the
        transactions have amounts, ``monetary_value`` (then ``litt`` when asked). One row per
        customer with a purchase in or before the as-of period.
    """
    with _session(transactions, memory_limit, threads) as (con, tx, has_amount):
        as_of_ts = _last_date(con, tx) if as_of is None else as_timestamp(as_of, "as_of")
        sql = _summary_sql(tx, as_of_ts, freq, freq_multiplier, has_amount, litt)
        return _fetch(con, sql).set_index(CUSTOMER_ID)


def calibration_holdout(
    transactions: Transactions,
    cutoff: DateLike,
    end: DateLike,
    *,
    freq: Freq = "D",
    freq_multiplier: float = 1.0,
    memory_limit: str | None = None,
    litt: bool = False,
) -> pd.DataFrame:
    """Summarize a calibration period and what each customer did in the holdout after it.

    As lifetimes' ``calibration_and_holdout_data``: the calibration summary (columns suffixed
    ``_cal``) covers transactions up to ``cutoff``; the holdout covers those after ``cutoff``
    up to ``end``, for customers seen in calibration only. ``cutoff`` and ``end`` are ISO
    8601 strings (``"1997-09-30"``, see :func:`as_timestamp`) or date/time objects; a date
    (or midnight) covers its whole day, also with ``freq="H"`` (see the module docstring), so
    then an ``end`` within a date ``cutoff``'s day is a :class:`DataError`. ``freq`` and
    ``freq_multiplier`` are :func:`rfm`'s.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``customer_id``: ``frequency_cal``, ``recency_cal``, ``T_cal``,
        [``monetary_value_cal``], [``litt_cal`` with ``litt=True``, see :func:`rfm`],
        ``frequency_holdout`` (purchase periods in the holdout),
        [``monetary_value_holdout`` (mean transaction value in the holdout, lifetimes'
        definition), ``revenue_holdout`` (total value in the holdout)], ``duration_holdout``.
    """
    cutoff_ts, end_ts = as_timestamp(cutoff, "cutoff"), as_timestamp(end, "end")
    if end_ts <= cutoff_ts:
        raise DataError(f"holdout end {end_ts.date()} must be after the cutoff {cutoff_ts.date()}")
    _, divisor = period_unit(freq, freq_multiplier)
    # Hours are finer than the day a date cutoff covers: an end in that day is no holdout;
    # nor is an end in the hour a cutoff with a time covers.
    if freq == "H" and period_bounds(end_ts, "H")[1] <= period_bounds(cutoff_ts, "H")[1]:
        covers = (
            f"day {cutoff_ts.date()}" if cutoff_ts == cutoff_ts.normalize() else f"hour {cutoff_ts}"
        )
        raise DataError(
            f"holdout end {end_ts} is within the calibration cutoff's {covers}, "
            "which the cutoff covers whole: give an end after it (a cutoff given as a date "
            "covers its whole day; give it with a time, e.g. 'YYYY-MM-DDT12:00', to cut "
            "within the day)"
        )
    with _session(transactions, memory_limit, None) as (con, tx, has_amount):
        cal = f"(SELECT * FROM {tx} WHERE {DATE} {_until(cutoff_ts)})"
        sql = _summary_sql(cal, cutoff_ts, freq, freq_multiplier, has_amount, litt)
        summary = _fetch(con, sql)
        if summary.empty:
            raise DataError(f"no transactions on or before the calibration cutoff {cutoff_ts}")
        money = (
            f", fsum({AMOUNT}) / count({AMOUNT}) AS monetary_value_holdout,"
            f" fsum({AMOUNT}) AS revenue_holdout"
            if has_amount
            else ""
        )
        holdout = _fetch(
            con,
            f"""
            SELECT {CUSTOMER_ID},
                   CAST(count(DISTINCT {_period_of(DATE, freq)}) AS DOUBLE) AS frequency_holdout
                   {money}
            FROM {tx}
            WHERE NOT ({DATE} {_until(cutoff_ts)}) AND {DATE} {_until(end_ts)}
            GROUP BY {CUSTOMER_ID}
            """,
        )
    summary = summary.set_index(CUSTOMER_ID)
    summary.columns = [f"{column}_cal" for column in summary.columns]
    combined = summary.join(holdout.set_index(CUSTOMER_ID), how="left").fillna(0.0)
    periods = period_bounds(end_ts, freq)[0] - period_bounds(cutoff_ts, freq)[0]
    steps = periods // pd.Timedelta(hours=1) if freq == "H" else periods.days
    combined["duration_holdout"] = steps / divisor
    return combined


def _summary_sql(
    source: str,
    as_of: pd.Timestamp,
    freq: str,
    freq_multiplier: float,
    has_amount: bool,
    litt: bool = False,
) -> str:
    _, divisor = period_unit(freq, freq_multiplier)
    as_of_period, next_period = period_bounds(as_of, freq)
    if freq == "H":  # hourly periods are timestamps, whole hours apart
        step, end = "hour", _literal(as_of_period)
    else:  # the others are dates, whole days apart
        step, end = "day", f"DATE '{as_of_period.date()}'"
    # fsum (compensated summation) rather than sum: DuckDB adds up a group's partial sums
    # from its threads in whatever order they finish, and a plain floating-point sum then
    # differs in the last bits from run to run; a compensated one is (all but) exactly
    # rounded, so the same data give the same summary.
    value = f"fsum({AMOUNT})" if has_amount else "NULL"
    # Mean of the repeat periods: the sum over the periods after the first, not the sum of all
    # less the first, which loses the repeats to rounding when the first is far larger.
    money = (
        ", CASE WHEN count(*) > 1 THEN fsum(value) FILTER (WHERE period > first) / (count(*) - 1)"
        " ELSE 0 END AS monetary_value"
        if has_amount
        else ""
    )
    windows = []
    if has_amount:
        windows.append(f"min(period) OVER (PARTITION BY {CUSTOMER_ID}) AS first")
    if litt:
        windows.append(f"lag(period) OVER (PARTITION BY {CUSTOMER_ID} ORDER BY period) AS previous")
        # fsum: the same sum whatever the order DuckDB's threads add the logs in.
        money += (
            f", coalesce(fsum(ln(date_diff('{step}', previous, period) / {divisor}))"
            " FILTER (WHERE previous IS NOT NULL), 0) AS litt"
        )
    periods = f"(SELECT *, {', '.join(windows)} FROM periods)" if windows else "periods"
    return f"""
        WITH periods AS (
            SELECT {CUSTOMER_ID}, {_period_of(DATE, freq)} AS period, {value} AS value
            FROM {source}
            WHERE {DATE} < {_literal(next_period)}
            GROUP BY ALL
        )
        SELECT {CUSTOMER_ID},
               CAST(count(*) - 1 AS DOUBLE) AS frequency,
               date_diff('{step}', min(period), max(period)) / {divisor} AS recency,
               date_diff('{step}', min(period), {end}) / {divisor} AS T
               {money}
        FROM {periods}
        GROUP BY {CUSTOMER_ID}
        ORDER BY {CUSTOMER_ID}
    """


def _period_of(column: str, freq: str) -> str:
    """SQL for the start date of the period of ``freq`` that holds ``column`` (the start
    timestamp of its hour for ``"H"``)."""
    if freq == "D":
        return f"CAST({column} AS DATE)"  # cheaper than date_trunc, same result
    if freq == "H":
        return f"date_trunc('hour', {column})"
    return f"CAST(date_trunc('{_TRUNC[freq]}', {column}) AS DATE)"


def period_bounds(stamp: pd.Timestamp, freq: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    """Start of ``stamp``'s period and of the period after it (weeks start on Monday).

    For ``"H"`` a stamp at midnight is a date, which covers its whole day: its period is the
    day's last hour, 23:00; another stamp's is the hour it falls in.
    """
    day = stamp.normalize()
    if freq == "H":
        hour = day + pd.Timedelta(hours=23) if stamp == day else stamp.floor("h")
        return hour, hour + pd.Timedelta(hours=1)
    if freq == "D":
        return day, day + pd.Timedelta(days=1)
    if freq == "W":
        start = day - pd.Timedelta(days=day.weekday())
        return start, start + pd.Timedelta(days=7)
    start = day.replace(day=1)
    return start, start + pd.DateOffset(months=1)


def _fetch(con: duckdb.DuckDBPyConnection, sql: str) -> pd.DataFrame:
    """Run a query into pandas through Arrow: faster than ``.df()``, and the Arrow buffers are
    released column by column, so a large result is not held twice."""
    table = con.sql(sql).to_arrow_table()
    return table.to_pandas(types_mapper=_STRINGS.get, split_blocks=True, self_destruct=True)


@contextmanager
def _session(
    transactions: Transactions, memory_limit: str | None, threads: int | None
) -> Iterator[tuple[duckdb.DuckDBPyConnection, str, bool]]:
    """A DuckDB connection; the transactions as a SQL subquery over it (ids as text, naive
    timestamps); and whether they have amounts.

    Without a memory limit the connection is this thread's, kept open between calls: opening
    and closing one takes about 13 ms, most of the time of a one-customer summary (a served
    request). With a limit, a new connection gets it.
    """
    if memory_limit:
        with (
            tempfile.TemporaryDirectory(prefix="clvlab-duckdb-") as spill,
            _connect(spill, memory_limit) as con,
        ):
            yield con, *_source(con, transactions, threads)
        return
    con = _thread_connection()
    try:
        yield con, *_source(con, transactions, threads)
    finally:  # leave the connection as it was: no reference to the data
        if isinstance(transactions, pd.DataFrame):
            con.unregister(_FRAME)


class _ThreadConnection:
    """An in-memory DuckDB connection spilling to its own temporary folder; the folder goes
    when the connection is dropped (its thread ends) or at the latest when Python exits."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        spill = tempfile.mkdtemp(prefix="clvlab-duckdb-")
        self.con = _connect(spill)
        weakref.finalize(self, _close, self.con, spill)


def _connect(spill: str, memory_limit: str | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection spilling to ``spill``, with the session's settings."""
    config: dict[str, str | bool | int | float | list[str]] = {"temp_directory": spill}
    if memory_limit:
        config["memory_limit"] = memory_limit
    con = duckdb.connect(config=config)
    con.execute("SET TimeZone = 'UTC'")
    # Results are sorted explicitly; not keeping scan order saves memory out of core.
    con.execute("SET preserve_insertion_order = false")
    return con


def _close(con: duckdb.DuckDBPyConnection, spill: str) -> None:
    con.close()
    shutil.rmtree(spill, ignore_errors=True)


def _thread_connection() -> duckdb.DuckDBPyConnection:
    """This thread's connection (a new one in a forked process)."""
    cached = getattr(_CONNECTIONS, "connection", None)
    if cached is None or cached.pid != os.getpid():
        cached = _CONNECTIONS.connection = _ThreadConnection()
    return cached.con


def _source(
    con: duckdb.DuckDBPyConnection, transactions: Transactions, threads: int | None
) -> tuple[str, bool]:
    """The transactions as a SQL subquery (ids as text, naive timestamps, whatever the frame or
    files hold) and whether they have amounts. A DataFrame is registered as ``_FRAME``."""
    if not threads and isinstance(transactions, pd.DataFrame):
        threads = 1 if len(transactions) < _ONE_THREAD_ROWS else None
    con.execute(f"SET threads = {int(threads)}" if threads else "RESET threads")
    if isinstance(transactions, pd.DataFrame):
        con.register(_FRAME, transactions)
        raw = _FRAME
        columns = {str(column) for column in transactions.columns}
    else:
        raw = f"read_parquet({sql_string(parquet_glob(transactions))})"
        columns = {row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {raw}").fetchall()}
    check_canonical(columns)
    source = (
        f"(SELECT * REPLACE (CAST({CUSTOMER_ID} AS VARCHAR) AS {CUSTOMER_ID}, "
        f"CAST({DATE} AS TIMESTAMP) AS {DATE}) FROM {raw})"
    )
    return source, AMOUNT in columns


def _last_date(con: duckdb.DuckDBPyConnection, tx: str) -> pd.Timestamp:
    """The last transaction date of ``tx``; a :class:`DataError` when it has none."""
    [(last,)] = con.execute(f"SELECT max({DATE}) FROM {tx}").fetchall()
    if last is None:
        raise DataError("the transactions have no dates, so no last date to summarize at")
    return pd.Timestamp(last)


def _until(stamp: pd.Timestamp) -> str:
    """SQL condition "on or before ``stamp``", where a midnight stamp means its whole day."""
    if stamp == stamp.normalize():
        return f"< {_literal(stamp + pd.Timedelta(days=1))}"
    return f"<= {_literal(stamp)}"


def _literal(stamp: pd.Timestamp) -> str:
    return f"TIMESTAMP '{stamp.isoformat(sep=' ')}'"


def period_unit(freq: str, freq_multiplier: float) -> tuple[str, float]:
    """The period of ``freq`` as DuckDB's ``date_trunc`` names it, and the divisor of recency
    and T: its length in days times ``freq_multiplier`` (for ``"H"``, whose times are counted
    in hours, ``freq_multiplier`` itself); a :class:`DataError` for a bad one."""
    if freq not in _TRUNC:
        raise DataError(f"freq must be one of 'D', 'W', 'M', 'H', got {freq!r}")
    if not freq_multiplier > 0:
        raise DataError(f"freq_multiplier must be positive, got {freq_multiplier!r}")
    if freq == "H":
        return _TRUNC[freq], float(freq_multiplier)
    return _TRUNC[freq], UNIT_DAYS[freq] * float(freq_multiplier)


def as_timestamp(value: DateLike, name: str = "date") -> pd.Timestamp:
    """A date argument as a timezone-naive timestamp, or a :class:`DataError` that names the
    argument ``name``, the value and the format.

    Strings must be ISO 8601: ``YYYY-MM-DD``, optionally with a time ``THH:MM[:SS[.fraction]]``
    (or after a space), optionally followed by ``Z`` or an offset such as ``+02:00``. Nothing
    is guessed: ``"01/02/1998"``, ``"1998-1-2"``, ``"2"`` and numbers are errors. ``datetime``,
    ``date``, :class:`pandas.Timestamp` and :class:`numpy.datetime64` values are taken as
    they are. A value with a zone or offset is converted to UTC and made naive.
    """
    stamp: pd.Timestamp | NaTType = pd.NaT
    if isinstance(value, str):
        text = value.strip()
        if _ISO_DATE.fullmatch(text):
            stamp = _parse(text)
    elif isinstance(value, dt.date | np.datetime64):  # datetime and Timestamp are dates too
        stamp = _parse(value)
    if not isinstance(stamp, pd.Timestamp):  # NaT (pd.NaT is no Timestamp)
        raise DataError(
            f"{name} {value!r} is not a date: give it as YYYY-MM-DD (ISO 8601; a time may "
            "follow: YYYY-MM-DDTHH:MM[:SS], then optionally Z or an offset such as +02:00)"
        )
    return stamp.tz_convert(None) if stamp.tzinfo else stamp


def _parse(value: str | dt.date | np.datetime64) -> pd.Timestamp | NaTType:
    """``pd.Timestamp(value)``, or NaT when it is no valid date (2021-02-30, out of range)."""
    try:
        return pd.Timestamp(value)
    except (TypeError, ValueError, OverflowError):
        return pd.NaT
