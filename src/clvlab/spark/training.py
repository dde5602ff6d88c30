"""The training job's data on Spark (``engine: spark`` in the run config).

What grows with the customers stays in Spark; what reaches the driver is bounded:

- the transactions are read, resolved and cleaned on Spark
  (:func:`clvlab.spark.read_transactions`), and the data report counts every row;
- the BTYD and Gamma-Gamma models of each backtest window and of the final model are fitted
  on the counted sufficient statistics of every customer
  (:func:`clvlab.spark.statistics.sufficient_statistics`),
  which are small whatever the number of customers;
- the transactions of a fixed hash sample of ``spark.sample_customers`` customers (all of
  them when there are fewer) come to the driver: the backtest judges every candidate on
  them, the LightGBM predictors learn from them and the segment cut points are fixed on
  them. With no more customers than the sample, the run is the local run, result for result.
"""

from __future__ import annotations

import functools

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from clvlab.config import RunConfig
from clvlab.data.io import CUSTOMER_ID, DATE
from clvlab.models.btyd import NEEDS_LITT
from clvlab.models.statistics import SufficientStatistics
from clvlab.progress import stage
from clvlab.spark.io import read_transactions
from clvlab.spark.runtime import session
from clvlab.spark.statistics import sufficient_statistics
from clvlab.training import TrainingData, cleaned_summary, identity_counts

#: Buckets of the customer sample's hash (the sampled share is a whole number of them).
_BUCKETS = 1_000_000


def training_data(config: RunConfig) -> TrainingData:
    """Read, resolve and clean the run config's transactions on Spark; the sampled
    customers' transactions on the driver and the statistics of all customers on demand.

    The session is ``spark.master`` with ``spark.conf`` (an existing session is reused, as
    under ``spark-submit``).
    """
    data, settings = config.data, config.spark
    spark = session(settings.master, conf=dict(settings.conf))
    with stage("read and clean on Spark") as step:
        loaded = read_transactions(
            spark,
            data.source,
            **data.columns(),
            cleaning=config.cleaning,
            invoice=data.invoice,
            until=config.split.holdout_end,
            identity_links=data.identity_links,
            partitions=settings.partitions,
        )
        step.summary = f"{cleaned_summary(loaded.report)} ({spark.sparkContext.master})"
    frame = loaded.frame
    with stage("collect the customer sample") as step:
        transactions = _collect(_sample(frame, loaded.report.customers, settings.sample_customers))
        sampled = int(transactions[CUSTOMER_ID].nunique())
        step.summary = f"{sampled:,} of {loaded.report.customers:,} customers"

    # MBG/CNBD-k needs the times between purchases too (see clvlab.models.btyd.NEEDS_LITT).
    litt = bool(NEEDS_LITT.intersection({*config.models.candidates, config.models.purchases}))

    @functools.cache
    def statistics(as_of: pd.Timestamp) -> SufficientStatistics:
        with stage(f"count the statistics on Spark as of {as_of.date()}") as step:
            counted = sufficient_statistics(frame, as_of, unit_days=config.unit_days, litt=litt)
            step.summary = (
                f"{counted.customers:,} customers in {len(counted.purchases):,} histories, "
                f"{(counted.transferred_bytes or 0) / 1e6:.1f} MB collected"
            )
        return counted

    return TrainingData(
        transactions,
        loaded.report,
        identity={} if loaded.identity is None else identity_counts(loaded.identity),
        statistics=statistics,
        extra={"spark.customers_sampled": sampled},
        close=loaded.unpersist,
    )


def _sample(frame: DataFrame, customers: int, size: int) -> DataFrame:
    """The rows of about ``size`` customers chosen by a hash of their id (the same ones in
    every run), or all rows when there are no more customers than that."""
    if customers <= size:
        return frame
    share = round(_BUCKETS * size / customers)
    bucket = F.pmod(F.xxhash64(F.col(CUSTOMER_ID), F.lit("clvlab-sample")), F.lit(_BUCKETS))
    return frame.where(bucket < share)


def _collect(frame: DataFrame) -> pd.DataFrame:
    """Spark rows as the local cleaning gives them: text ids, sorted by customer and date
    (rows of one customer keep the order cleaning left them in)."""
    table = frame.toPandas()
    table[CUSTOMER_ID] = table[CUSTOMER_ID].astype("string")
    return table.sort_values([CUSTOMER_ID, DATE], kind="stable", ignore_index=True)
