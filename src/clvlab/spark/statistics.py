"""The sufficient statistics of the BTYD and Gamma-Gamma fits, counted in Spark.

A purchase model sees a customer only through ``(frequency, recency, T)`` and Gamma-Gamma
through ``(frequency, monetary_value)``: the distinct rows with their counts
(:class:`clvlab.models.statistics.SufficientStatistics`) are aggregated where the customers
are, and only they reach the driver, which fits the models on them. Their number grows with
the distinct histories, not with the customers: recency and T are whole days (at most a few
thousand values each), so the purchase histories saturate; the spend rows are as many as
the distinct (repeat purchases, mean spend) pairs.

They travel compactly: frequency, recency and T as whole days and the counts as 32-bit
integers (16 bytes a history, 16 a spend row), converted to the model's unit on the driver
with the same floating-point division Spark's RFM summary makes. The rows are ordered by the
smallest customer id (text order) they count: the order in which the local fit, on
:func:`clvlab.rfm`'s table sorted by id, meets them first; so the fitted parameters are
those of the local fit, bit for bit.
"""

from __future__ import annotations

import math

import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from clvlab.data.io import CUSTOMER_ID
from clvlab.features.rfm import DateLike
from clvlab.models.statistics import SufficientStatistics
from clvlab.spark.rfm import rfm

_FIRST = "_clvlab_first_customer"


def sufficient_statistics(
    transactions: DataFrame, as_of: DateLike, *, unit_days: float = 1.0, litt: bool = False
) -> SufficientStatistics:
    """Count the distinct purchase histories and repeat spends of a Spark DataFrame of
    transactions at ``as_of``, and collect them to the driver.

    Parameters
    ----------
    transactions
        Canonical transactions (``customer_id``, ``date``, optionally ``amount``), e.g.
        :func:`clvlab.spark.read_transactions`' frame.
    as_of
        The end of the observation period (:func:`clvlab.spark.rfm`'s ``as_of``).
    unit_days
        The model's time unit in days (7 for weeks): recency and T are
        :func:`clvlab.rfm`'s with ``freq="D", freq_multiplier=unit_days``.
    litt
        Also sum ``litt`` over the customers (what MBG/CNBD-k chooses its ``k`` from).

    Returns
    -------
    SufficientStatistics
        What :func:`clvlab.models.clv.fit_clv_model` fits as it fits the per-customer
        summary; ``transferred_bytes`` says how much was collected.
    """
    summary = rfm(transactions, as_of, freq="D", litt=litt)  # recency and T in whole days
    # One summary for both tables: computed once, kept while they are counted.
    summary = summary.withColumn(CUSTOMER_ID, F.col(CUSTOMER_ID).cast("string")).persist()
    try:
        days = [_whole("frequency"), _whole("recency"), _whole("T")]
        purchases, sent = _counts(summary, days)
        spend, nonpositive = None, 0
        if "monetary_value" in summary.columns:
            positive = (F.col("frequency") > 0) & (F.col("monetary_value") > 0)
            pairs = [_whole("frequency"), F.col("monetary_value")]
            spend, spend_sent = _counts(summary.where(positive), pairs)
            sent += spend_sent
            # Repeat buyers not in the spend rows: a mean spend of 0 or less, or missing.
            repeat = int(purchases.loc[purchases["frequency"] > 0, "count"].sum())
            nonpositive = repeat - int(spend["count"].sum())
        litt_total = None
        if litt:
            # In days here; each of the sum(frequency) gaps is ln(days / unit_days) in the unit.
            sums = summary.agg(F.sum("litt"), F.sum("frequency")).first()
            in_days, gaps = (float(v or 0.0) for v in (sums or (0.0, 0.0)))
            litt_total = in_days - gaps * math.log(unit_days)
    finally:
        summary.unpersist()
    for column in ("recency", "T"):
        purchases[column] = purchases[column].to_numpy() / float(unit_days)
    customers = int(purchases["count"].sum())
    return SufficientStatistics(purchases, spend, nonpositive, customers, sent, litt_total)


def _whole(column: str) -> Column:
    """A column of whole numbers as a 32-bit integer, under its name."""
    return F.col(column).cast("int").alias(column)


def _counts(summary: DataFrame, columns: list[Column]) -> tuple[pd.DataFrame, int]:
    """The distinct rows of ``columns`` of ``summary`` with their ``count``, in the order of
    their smallest customer id, and the bytes collected."""
    counted = (
        summary.groupBy(*columns)
        .agg(F.count(F.lit(1)).cast("int").alias("count"), F.min(CUSTOMER_ID).alias(_FIRST))
        .orderBy(_FIRST)
        .drop(_FIRST)
        .toArrow()
    )
    return counted.to_pandas(), counted.nbytes
