"""The sufficient statistics of the BTYD and Gamma-Gamma fits, counted in Spark.

A purchase model sees a customer only through ``(frequency, recency, T)`` and Gamma-Gamma
through ``(frequency, monetary_value)``: the distinct rows with their counts
(:class:`clvlab.models.statistics.SufficientStatistics`) are aggregated where the customers
are, and only they reach the driver, which fits the models on them. Their size grows with
the distinct histories, not with the customers (a history in whole periods has at most a few
hundred thousand distinct values however many customers share it).

The rows are ordered by the smallest customer id (text order) they count: the order in
which the local fit, on :func:`clvlab.rfm`'s table sorted by id, meets them first; so the
fitted parameters are those of the local fit, bit for bit.
"""

from __future__ import annotations

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from clvlab.data.io import CUSTOMER_ID
from clvlab.models.statistics import PURCHASE_COLUMNS, SPEND_COLUMNS, SufficientStatistics

_FIRST = "_clvlab_first_customer"


def sufficient_statistics(summary: DataFrame) -> SufficientStatistics:
    """Count the distinct rows of a Spark RFM summary and collect them to the driver.

    Parameters
    ----------
    summary
        One row per customer, as :func:`clvlab.spark.rfm` gives it: ``customer_id``,
        ``frequency``, ``recency``, ``T`` and optionally ``monetary_value``.

    Returns
    -------
    SufficientStatistics
        What :func:`clvlab.models.clv.fit_clv_model` fits as it fits the per-customer
        summary.
    """
    summary = summary.withColumn(CUSTOMER_ID, F.col(CUSTOMER_ID).cast("string"))
    purchases = _counts(summary, PURCHASE_COLUMNS[:3])
    spend, nonpositive = None, 0
    totals = [F.count(F.lit(1)).alias("customers")]
    if "monetary_value" in summary.columns:
        repeat = F.col("frequency") > 0
        positive = repeat & (F.col("monetary_value") > 0)
        totals.append(F.count(F.when(repeat & ~F.coalesce(positive, F.lit(False)), 1)))
        spend = _counts(summary.where(positive), SPEND_COLUMNS[:2])
    row = summary.agg(*totals).first()
    assert row is not None  # an aggregation has one row
    if len(row) > 1:
        nonpositive = int(row[1])
    return SufficientStatistics(purchases, spend, nonpositive, int(row[0]))


def _counts(summary: DataFrame, columns: list[str]) -> pd.DataFrame:
    """The distinct rows of ``summary[columns]`` with their ``count``, in the order of their
    smallest customer id."""
    counted = (
        summary.groupBy(*columns)
        .agg(F.count(F.lit(1)).alias("count"), F.min(CUSTOMER_ID).alias(_FIRST))
        .orderBy(_FIRST)
        .drop(_FIRST)
    )
    return counted.toPandas()
