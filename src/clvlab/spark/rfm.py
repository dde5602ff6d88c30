"""RFM summaries of a Spark DataFrame of transactions, in Spark SQL.

The same definitions and arithmetic as :mod:`clvlab.features.rfm` (lifetimes' semantics):
dates floored to days, Monday-based weeks or calendar months; ``frequency`` the purchase
periods less the first; ``recency`` and ``T`` in whole days between period starts divided
by the unit (``freq``'s days times ``freq_multiplier``), so each value is the same
floating-point division as DuckDB's; ``monetary_value`` the mean of the repeat periods'
spend (0 for one-time buyers). A cutoff given as a date covers its whole day.

The one difference is the summation: DuckDB adds amounts with compensated summation, Spark
in plain floating point, in whatever order the rows arrive, so monetary values may differ
in the last bits (about 1e-16 relative), not more.

Results are Spark DataFrames with a ``customer_id`` column (in the input's type) and the
local functions' value columns, in no particular order; nothing is collected to the driver
but one row (the last date, when ``as_of`` is not given) or a check that the calibration
period has transactions.
"""

from __future__ import annotations

import pandas as pd
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from clvlab.data.io import AMOUNT, CUSTOMER_ID, DATE, check_canonical
from clvlab.errors import DataError
from clvlab.features.rfm import (
    DateLike,
    Freq,
    as_timestamp,
    period_bounds,  # shared with the local path, so the two cannot drift apart
    period_unit,
)
from clvlab.spark.frames import (
    as_naive_timestamp,
    date_literal,
    naive,
    naive_literal,
)

_PERIOD, _VALUE, _FIRST = "_clvlab_period", "_clvlab_value", "_clvlab_first"
_PREVIOUS = "_clvlab_previous"
_HOLDOUT_ID = "_clvlab_holdout_id"


def rfm(
    df: DataFrame,
    as_of: DateLike | None = None,
    *,
    freq: Freq = "D",
    freq_multiplier: float = 1.0,
    litt: bool = False,
) -> DataFrame:
    """Summarize each customer's transactions at an as-of date (:func:`clvlab.rfm` on Spark).

    Parameters
    ----------
    df
        Canonical transactions: ``customer_id``, ``date`` (a timestamp: ``TIMESTAMP``,
        ``TIMESTAMP_NTZ`` or ``DATE``) and optionally ``amount``.
    as_of
        End of the observation period; transactions in later periods are ignored. An ISO
        8601 string or a date/time object (see :func:`clvlab.features.rfm.as_timestamp`).
        When None, the last transaction date (found with one aggregation).
    freq
        Period to which dates are floored: ``"D"``, ``"W"`` (weeks from Monday) or ``"M"``
        (hours, ``"H"``, only locally: :func:`clvlab.rfm`; a :class:`DataError` here).
    freq_multiplier
        Divides recency and T, e.g. 7 with ``freq="D"`` for weeks at daily resolution.
    litt
        Also give ``litt``, the sum of the logs of the times between consecutive purchase
        periods (as :func:`clvlab.rfm`'s).

    Returns
    -------
    pyspark.sql.DataFrame
        ``customer_id`` (the input's type), ``frequency``, ``recency``, ``T`` and, when the
        transactions have amounts, ``monetary_value`` (then ``litt`` when asked; doubles):
        one row per customer with a purchase in or before the as-of period.
    """
    check_canonical(df.columns)
    _check_daily(freq)
    period_unit(freq, freq_multiplier)  # a bad freq is an error before any Spark job
    stamp = last_date(df) if as_of is None else as_timestamp(as_of, "as_of")
    return _summary(df, stamp, freq, freq_multiplier, litt)


def calibration_holdout(
    df: DataFrame,
    cutoff: DateLike,
    end: DateLike,
    *,
    freq: Freq = "D",
    freq_multiplier: float = 1.0,
) -> DataFrame:
    """Summarize a calibration period and each customer's holdout after it
    (:func:`clvlab.calibration_holdout` on Spark).

    The calibration summary (columns suffixed ``_cal``) covers transactions up to
    ``cutoff``; the holdout those after ``cutoff`` up to ``end``, for customers seen in
    calibration only. A date (or a midnight timestamp) covers its whole day.

    Returns
    -------
    pyspark.sql.DataFrame
        ``customer_id`` (the input's type), ``frequency_cal``, ``recency_cal``, ``T_cal``,
        [``monetary_value_cal``], ``frequency_holdout`` (purchase periods in the holdout),
        [``monetary_value_holdout`` (mean transaction value in the holdout),
        ``revenue_holdout`` (total value in the holdout)], ``duration_holdout``.

    Raises
    ------
    DataError
        If ``freq`` is ``"H"`` (hours: :func:`clvlab.calibration_holdout` on one machine),
        ``end`` is not after ``cutoff``, or no transaction is on or before ``cutoff``
        (checked with a one-row Spark job).
    """
    check_canonical(df.columns)
    _check_daily(freq)
    cutoff_ts, end_ts = as_timestamp(cutoff, "cutoff"), as_timestamp(end, "end")
    if end_ts <= cutoff_ts:
        raise DataError(f"holdout end {end_ts.date()} must be after the cutoff {cutoff_ts.date()}")
    _, divisor = period_unit(freq, freq_multiplier)
    has_amount = AMOUNT in df.columns
    calibration = df.where(_until(cutoff_ts))
    if calibration.isEmpty():
        raise DataError(f"no transactions on or before the calibration cutoff {cutoff_ts}")
    summary = _summary(calibration, cutoff_ts, freq, freq_multiplier)
    summary = summary.select(
        CUSTOMER_ID, *(F.col(name).alias(f"{name}_cal") for name in summary.columns[1:])
    )
    money = (
        [
            F.when(F.count(AMOUNT) > 0, F.sum(AMOUNT) / F.count(AMOUNT)).alias(
                "monetary_value_holdout"
            ),
            F.sum(AMOUNT).alias("revenue_holdout"),
        ]
        if has_amount
        else []
    )
    holdout = (
        df.where(~_until(cutoff_ts) & _until(end_ts))
        .groupBy(F.col(CUSTOMER_ID).alias(_HOLDOUT_ID))  # no name shared by the two sides
        .agg(
            F.count_distinct(_period_of(freq)).cast("double").alias("frequency_holdout"),
            *money,
        )
    )
    # As the local join of two tables indexed by id: a missing id matches a missing id.
    joined = summary.join(
        holdout, summary[CUSTOMER_ID].eqNullSafe(holdout[_HOLDOUT_ID]), "left"
    ).drop(_HOLDOUT_ID)
    values = [name for name in joined.columns if name != CUSTOMER_ID]
    periods = period_bounds(end_ts, freq)[0] - period_bounds(cutoff_ts, freq)[0]
    return joined.na.fill(0.0, subset=values).withColumn(
        "duration_holdout", F.lit(periods.days / divisor)
    )


def _check_daily(freq: str) -> None:
    """A :class:`DataError` for hourly periods, which the Spark SQL here does not make (its
    periods are dates)."""
    if freq == "H":
        raise DataError(
            "freq 'H' (hours) is not supported on Spark: clvlab.spark.rfm and "
            "calibration_holdout floor dates to days, weeks or months; summarize hourly "
            "with clvlab.rfm / clvlab.calibration_holdout on one machine (e.g. on "
            "df.toPandas()), or use freq 'D', 'W' or 'M'"
        )


def last_date(df: DataFrame) -> pd.Timestamp:
    """The last transaction date of ``df`` (a one-row aggregation), or a :class:`DataError`
    when it has none."""
    row = df.agg(F.max(naive(DATE))).first()
    last = None if row is None else as_naive_timestamp(row[0])
    if last is None:
        raise DataError("the transactions have no dates, so no last date to summarize at")
    return last


def _summary(
    df: DataFrame, as_of: pd.Timestamp, freq: str, freq_multiplier: float, litt: bool = False
) -> DataFrame:
    """The RFM summary of ``df`` at ``as_of`` (see the module docstring)."""
    _, divisor = period_unit(freq, freq_multiplier)
    as_of_period = date_literal(period_bounds(as_of, freq)[0])
    has_amount = AMOUNT in df.columns
    # A date before the period after as-of's is one whose period is as-of's or earlier.
    rows = df.select(
        CUSTOMER_ID, _period_of(freq).alias(_PERIOD), *([AMOUNT] if has_amount else [])
    ).where(F.col(_PERIOD) <= as_of_period)
    periods = (
        rows.groupBy(CUSTOMER_ID, _PERIOD).agg(F.sum(AMOUNT).alias(_VALUE))
        if has_amount
        else rows.distinct()
    )
    count = F.count(F.lit(1))
    period = F.col(_PERIOD)
    columns = [
        (count - 1).cast("double").alias("frequency"),
        (F.datediff(F.max(period), F.min(period)) / divisor).alias("recency"),
        (F.datediff(as_of_period, F.min(period)) / divisor).alias("T"),
    ]
    if has_amount:
        # Mean of the repeat periods: the sum over the periods after the first, not the sum
        # of all less the first, which loses the repeats to rounding when the first is far
        # larger (as the local path).
        periods = periods.withColumn(_FIRST, F.min(_PERIOD).over(Window.partitionBy(CUSTOMER_ID)))
        repeats = F.sum(F.when(period > F.col(_FIRST), F.col(_VALUE)))
        columns.append(
            F.when(count > 1, repeats / (count - 1)).otherwise(0.0).alias("monetary_value")
        )
    if litt:
        before = F.lag(_PERIOD).over(Window.partitionBy(CUSTOMER_ID).orderBy(_PERIOD))
        periods = periods.withColumn(_PREVIOUS, before)
        gaps = F.log(F.datediff(period, F.col(_PREVIOUS)) / divisor)  # null for the first
        columns.append(F.coalesce(F.sum(gaps), F.lit(0.0)).alias("litt"))
    return periods.groupBy(CUSTOMER_ID).agg(*columns)


def _period_of(freq: str) -> Column:
    """The start date of the period of ``freq`` that holds each transaction's date."""
    day = naive(DATE).cast("date")
    if freq == "D":
        return day
    return F.trunc(day, "week" if freq == "W" else "month")


def _until(stamp: pd.Timestamp) -> Column:
    """Dates on or before ``stamp``, where a midnight stamp means its whole day."""
    if stamp == stamp.normalize():
        return naive(DATE) < naive_literal(stamp + pd.Timedelta(days=1))
    return naive(DATE) <= naive_literal(stamp)
