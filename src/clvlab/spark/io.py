"""Transactions read, resolved and cleaned on Spark, as the local path reads, resolves and
cleans them (:func:`clvlab.read_transactions`, :func:`clvlab.resolve_identities`,
:func:`clvlab.clean_transactions`).

Three steps, each the local code where the local code works row by row or customer by
customer, so there is no second implementation of the checks or of the cleaning policy:

1. **read**: each Arrow batch of the source is read into canonical columns by
   :func:`clvlab.data.io.to_canonical` (``mapInPandas``, no shuffle). The rows whose date or
   amount cannot be read are counted per batch and added up on the driver, which raises the
   local :class:`DataError` with the whole table's count (examples are labelled by customer
   id: a Spark table has no row numbers).
2. **identities** (when links are given): :func:`clvlab.spark.resolve_identities`.
3. **clean**: each hash partition of customers is cleaned by
   :func:`clvlab.clean_transactions` (``applyInPandas``); every partition's
   :class:`DataReport` comes back to the driver, where they add up to the local report
   (steps, customers, dates). Rows keep the order of the source within a customer, so that
   invoice lines and returns are matched as locally, ties included.

The result is persisted (memory, then disk) because training reads it several times; the
caller unpersists it (:meth:`SparkTransactions.unpersist`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from pyspark import StorageLevel
from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from clvlab.data.clean import CleaningPolicy, DataReport, clean_transactions
from clvlab.data.datasets import is_packaged_source, load_packaged
from clvlab.data.identity import LEFT, RIGHT, IdentityReport
from clvlab.data.io import AMOUNT, CUSTOMER_ID, DATE, to_canonical
from clvlab.data.validate import BadValues
from clvlab.errors import DataError
from clvlab.features.rfm import DateLike, as_timestamp
from clvlab.spark.identity import resolve_identities
from clvlab.spark.jobs import PARTITION, partition_count, raised_on_driver

#: Extra columns of the steps: each row's place in the source; a part's report (JSON).
_ROW, _REPORT = "_clvlab_row", "_clvlab_report"

Source = str | Path | DataFrame


@dataclass
class SparkTransactions:
    """Cleaned canonical transactions on Spark, and what happened to the rows.

    Attributes
    ----------
    frame
        ``customer_id`` (text; the canonical id of its group when links were given),
        ``date`` (``TIMESTAMP_NTZ``), ``amount`` (double, unless count-only), the kept
        columns (and ``source_customer_id`` with links). Persisted.
    report
        Rows read, excluded by cleaning step, kept: equal to the local report.
    identity
        The identity resolution's counts, when links were given.
    """

    frame: DataFrame
    report: DataReport
    identity: IdentityReport | None = None

    def unpersist(self) -> None:
        """Free the persisted rows."""
        self.frame.unpersist()


def read_transactions(
    spark: SparkSession,
    source: Source,
    *,
    customer_id: str = CUSTOMER_ID,
    date: str = DATE,
    amount: str | None = AMOUNT,
    quantity: str | None = None,
    price: str | None = None,
    date_format: str | None = None,
    timezone: str | None = None,
    keep: Sequence[str] | None = None,
    cleaning: CleaningPolicy | None = None,
    invoice: str | None = None,
    until: DateLike | None = None,
    identity_links: Source | None = None,
    partitions: int | None = None,
) -> SparkTransactions:
    """Read, resolve and clean transactions on Spark (:func:`clvlab.read_transactions`,
    :func:`clvlab.resolve_identities` and :func:`clvlab.clean_transactions` in one job).

    Parameters
    ----------
    spark
        The Spark session.
    source
        A Spark DataFrame, a CSV file (a header row; cells read as text, as locally), Parquet
        (a file, a folder or a glob), a table of the Spark catalog, or a data set lifetimes
        ships (``lifetimes:CDNOW_master``, read on the driver).
    customer_id, date, amount, quantity, price, date_format, timezone, keep
        As in :func:`clvlab.read_transactions`.
    cleaning, invoice, until
        As in :func:`clvlab.clean_transactions` (``policy``, ``invoice``, ``until``).
    identity_links
        Pairs of ids of one person (columns ``id_a``, ``id_b``): a Spark DataFrame, or a
        file or table as ``source``. Resolved before cleaning, as the training job does.
    partitions
        Partitions of customers the cleaning runs in (each one pandas table in one Python
        worker); ``spark.sql.shuffle.partitions`` by default.

    Returns
    -------
    SparkTransactions

    Raises
    ------
    DataError
        On the driver, before anything is returned: the source cannot be read or has no
        rows, a column is missing, dates or amounts cannot be read (the count over the
        whole table, examples), or the cleaning policy does not fit the data.
    """
    raw = source if isinstance(source, DataFrame) else read_source(spark, str(source))
    where = "transactions" if isinstance(source, DataFrame) else str(source)
    reading: dict[str, Any] = {
        "customer_id": customer_id,
        "date": date,
        "amount": amount,
        "quantity": quantity,
        "price": price,
        "date_format": date_format,
        "timezone": timezone,
        "keep": keep,
    }
    sample = _check_columns(raw, where, reading)
    groups = partition_count(spark, partitions)
    policy = cleaning or CleaningPolicy()
    end = None if until is None else as_timestamp(until, "until")
    clean_transactions(sample, policy=policy, invoice=invoice)  # the policy fits the columns

    # The read step's report rows (no customer id) travel with the rows, through the
    # cleaning partitions untouched, to the one collect at the end.
    canonical = _read_step(raw, sample, where, reading)
    identity, persisted = None, None
    if identity_links is not None:
        links = (
            identity_links
            if isinstance(identity_links, DataFrame)
            else read_source(spark, str(identity_links))
        )
        # Resolution reads the transactions several times: read and parsed once.
        canonical = persisted = canonical.persist(StorageLevel.MEMORY_AND_DISK)
        canonical, _, identity = resolve_identities(canonical, links, left=LEFT, right=RIGHT)
    keyed = canonical.withColumn(PARTITION, F.pmod(F.xxhash64(CUSTOMER_ID), F.lit(groups)))
    out_schema = T.StructType([field for field in canonical.schema.fields if field.name != _ROW])
    cleaned = (
        keyed.groupBy(PARTITION)
        .applyInPandas(_clean_partition(policy, invoice, end), out_schema)
        .persist(StorageLevel.MEMORY_AND_DISK)
    )
    try:
        with raised_on_driver():
            found = [
                json.loads(row[0])
                for row in cleaned.where(F.col(_REPORT).isNotNull()).select(_REPORT).collect()
            ]
        rows = _check_read([part["read"] for part in found if "read" in part], where)
    except BaseException:
        cleaned.unpersist()
        raise
    finally:
        if persisted is not None:
            persisted.unpersist()
    report = DataReport.combine([DataReport(**part["clean"]) for part in found if "clean" in part])
    if report.rows_read != rows:  # every row read went through one partition's cleaning
        raise AssertionError(f"{rows} rows read, {report.rows_read} cleaned")
    frame = cleaned.where(F.col(_REPORT).isNull()).drop(_REPORT)
    return SparkTransactions(frame, report, identity)


def read_canonical(
    raw: DataFrame, where: str, reading: dict[str, Any]
) -> tuple[DataFrame, DataFrame]:
    """``raw`` read into canonical columns as :func:`clvlab.read_transactions` reads them
    (``reading``: its column arguments), before cleaning: the rows (persisted; the caller
    unpersists the second result), or the local :class:`DataError` on the driver when some
    date or amount cannot be read (counted over the whole table)."""
    read = _read_step(raw, _check_columns(raw, where, reading), where, reading).persist(
        StorageLevel.MEMORY_AND_DISK
    )
    try:
        with raised_on_driver():
            found = read.where(F.col(_REPORT).isNotNull()).select(_REPORT).collect()
        _check_read([json.loads(row[0])["read"] for row in found], where)
    except BaseException:
        read.unpersist()
        raise
    return read.where(F.col(_REPORT).isNull()).drop(_REPORT, _ROW), read


def read_source(spark: SparkSession, source: str) -> DataFrame:
    """A table as a Spark DataFrame: a CSV file (a header row; every column text, as clvlab
    reads CSV), Parquet (a file, a folder or a glob), a table name of the Spark catalog, or
    a data set lifetimes ships (``lifetimes:CDNOW_master``, read on the driver)."""
    if is_packaged_source(source):
        return spark.createDataFrame(load_packaged(source))
    try:
        if source.lower().endswith(".csv"):
            return spark.read.csv(source, header=True)
        if "/" in source or source.lower().endswith(".parquet") or Path(source).exists():
            return spark.read.parquet(source)
        return spark.table(source)
    except AnalysisException as exc:  # no such file or table: Spark's reason, first line
        reason = str(exc).strip().splitlines()[0]
        raise DataError(f"{source!r} cannot be read: {reason}") from None


def _check_columns(raw: DataFrame, where: str, reading: dict[str, Any]) -> pd.DataFrame:
    """The table-wide checks of reading (columns, names, quantity and price, time zone) on
    the first row of ``raw``, on the driver; that row read."""
    with raised_on_driver():
        first = raw.limit(1).toPandas()
    return to_canonical(first, where, strict=False, **reading)[0]


def _read_step(
    raw: DataFrame, sample: pd.DataFrame, where: str, reading: dict[str, Any]
) -> DataFrame:
    """The read step's rows (numbered in the source's order) and report rows."""
    numbered = raw.withColumn(_ROW, F.monotonically_increasing_id())
    return numbered.mapInPandas(_read_batches(where, reading), _canonical_schema(sample, raw))


def _canonical_schema(sample: pd.DataFrame, raw: DataFrame) -> T.StructType:
    """The read step's columns: the canonical ones, the kept ones in the source's types, the
    row number and the report."""
    fields = [
        T.StructField(CUSTOMER_ID, T.StringType()),
        T.StructField(DATE, T.TimestampNTZType()),
    ]
    if AMOUNT in sample:
        fields.append(T.StructField(AMOUNT, T.DoubleType()))
    fields += [raw.schema[str(name)] for name in sample.columns[len(fields) :]]
    return T.StructType(
        [*fields, T.StructField(_ROW, T.LongType()), T.StructField(_REPORT, T.StringType())]
    )


def _read_batches(where: str, reading: dict[str, Any]) -> Any:
    """The read step (on an executor): each batch's canonical rows, then one report row with
    the batch's row count and the rows it could not read."""

    def read(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            # Examples of bad values are labelled by customer id.
            batch.index = pd.Index(batch[reading["customer_id"]].astype("string"))
            rows = batch.pop(_ROW).to_numpy()
            canonical, _, problems = to_canonical(
                batch, where, strict=False, label="customer", **reading
            )
            if not problems:
                yield canonical.assign(**{_ROW: rows, _REPORT: None})
            summary = {"rows": len(batch), "bad": [dataclasses.asdict(p) for p in problems]}
            yield _report_row(canonical, {"read": summary}, _ROW)

    return read


def _check_read(summaries: list[dict[str, Any]], where: str) -> int:
    """The rows read, from the read step's batch reports; the local :class:`DataError`
    (with the whole table's counts) when some date or amount could not be read."""
    rows = sum(summary["rows"] for summary in summaries)
    bad = [
        BadValues(**{**part, "examples": tuple(tuple(pair) for pair in part["examples"])})
        for summary in summaries
        for part in summary["bad"]
    ]
    if bad:
        order = {"no date": 0, "not a date": 0, "not a number": 1}  # dates first, as locally
        first = min(BadValues.combine(bad, rows), key=lambda found: order[found.problem])
        raise DataError(first.message(where))
    return rows


def _clean_partition(policy: CleaningPolicy, invoice: str | None, until: pd.Timestamp | None):
    """The clean step (on an executor): a partition's cleaned rows, its report (JSON) in one
    extra row, and the read step's report rows as they came."""

    def clean(transactions: pd.DataFrame) -> pd.DataFrame:
        reports = transactions[_REPORT].notna().to_numpy()
        passed = transactions[reports].drop(columns=[PARTITION, _ROW])
        rows = transactions[~reports]
        if rows.empty:
            return passed
        ordered = rows.sort_values(_ROW, kind="stable").drop(columns=[PARTITION, _ROW, _REPORT])
        kept, report = clean_transactions(
            ordered.reset_index(drop=True), policy=policy, invoice=invoice, until=until
        )
        summary = _report_row(kept, {"clean": dataclasses.asdict(report)})
        return pd.concat([kept.assign(**{_REPORT: None}), summary, passed], ignore_index=True)

    return clean


def _report_row(like: pd.DataFrame, summary: dict[str, Any], *extra: str) -> pd.DataFrame:
    """One row with the columns of ``like`` (and ``extra``) empty and ``summary`` as JSON in
    the report column."""
    row = pd.DataFrame({name: [None] for name in [*like.columns, *extra]})
    return row.assign(**{_REPORT: json.dumps(summary)})
