"""Score customers on Spark: the local scoring code itself, run on partitions of customers.

Each customer's rows go to one partition (a hash of the id, modulo the number of
partitions); each partition is one pandas table, read, cleaned and scored by what
:func:`clvlab.score` runs after its checks (which the driver makes once, for all the data).
The model travels to the executors as its versioned JSON, not as a pickle. ``as_of`` is
resolved once, on the driver, so every partition scores at the same date, and a customer
with no purchase by then keeps a row with its ``reason``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from clvlab.data.clean import DataReport
from clvlab.data.io import CUSTOMER_ID, DATE, reading_roles
from clvlab.data.validate import require_columns
from clvlab.errors import DataError
from clvlab.features.rfm import DateLike
from clvlab.models.clv import CLVModel
from clvlab.scoring import (
    ScoreValues,
    as_model,
    check_arguments,
    check_as_of,
    check_customer_ids,
    column_names,
    prepare,
    read_columns,
    score_prepared,
)
from clvlab.spark.frames import as_naive_timestamp, naive
from clvlab.spark.identity import resolve_identities
from clvlab.spark.io import read_canonical
from clvlab.spark.jobs import PARTITION, partition_count, raised_on_driver

_INTEGERS = (T.ByteType, T.ShortType, T.IntegerType, T.LongType)
_TIMES = (T.TimestampType, T.TimestampNTZType, T.DateType)
#: Spark types of the score table's columns, by their pandas dtype in :func:`clvlab.score`.
_SPARK_TYPES: dict[str, T.DataType] = {
    "float64": T.DoubleType(),
    "Int64": T.LongType(),
    "string": T.StringType(),
    "str": T.StringType(),
}


def score(
    model: CLVModel | str | Path,
    df: DataFrame,
    as_of: DateLike | None = None,
    horizon_days: float | None = None,
    *,
    identity_links: DataFrame | None = None,
    customer_id: str | None = None,
    date: str | None = None,
    amount: str | None = None,
    date_format: str | None = None,
    partitions: int | None = None,
) -> DataFrame:
    """Score every customer of a Spark DataFrame of transactions (:func:`clvlab.score` on
    Spark).

    Parameters
    ----------
    model
        A :class:`clvlab.CLVModel`, an MLflow model URI (``runs:/...``,
        ``models:/NAME@alias``) or a local model folder / ``clv_model.json``, loaded on the
        driver.
    df
        Transactions with the column names the model was trained on, or the canonical
        ``customer_id``, ``date`` (a timestamp) and ``amount`` (for a model with spend).
        Other columns are kept until cleaning, as locally.
    as_of
        The date the scores are for (see :func:`clvlab.score`). When None, the last
        transaction date after cleaning, found with a first pass over the data (each
        partition cleaned as for scoring); giving it saves that pass.
    horizon_days
        Horizon of the predictions, in days; defaults to the model's.
    identity_links
        Pairs of ids of one person (columns ``id_a``, ``id_b``): the transactions are read
        (:func:`clvlab.spark.io.read_canonical`, kept persisted for the job) and their ids
        mapped to one canonical id per person on Spark
        (:func:`clvlab.spark.resolve_identities`) before scoring, as :func:`clvlab.score`
        does; one row per person.
    customer_id, date, amount, date_format
        Read the transactions by these column names (and date format), as in
        :func:`clvlab.score`.
    partitions
        How many partitions the customers are scored in, each one pandas table in one
        Python worker; their transactions must fit in its memory. Defaults to
        ``spark.sql.shuffle.partitions``.

    Returns
    -------
    pyspark.sql.DataFrame
        The columns of :func:`clvlab.score` (:func:`clvlab.scoring.score_columns`), one row per
        customer id in ``df``, in no particular order; each row equal to the local score table's
        for the whole data (without intervals: a model's default ``scoring.intervals`` applies
        to :func:`clvlab.score` only). ``customer_id`` keeps an integer column's type and is
        text otherwise; a customer who cannot be scored has a ``reason``. Evaluated lazily:
        scoring runs when the result is written or collected (an error in a partition then comes
        as Spark's ``PythonException``). ``toPandas()`` gives the segment scores
        (``r_score``...) as floats, as pyspark does for any integer column with missing values;
        ``toArrow()`` keeps them integers.

    Raises
    ------
    DataError
        On the driver, before any output: a bad argument, a missing column, no customer
        ids, ``as_of`` before the first transaction, or (when ``as_of`` is None)
        transactions that cleaning cannot read. Rows without a customer id are not scored
        and give a :class:`clvlab.ClvlabWarning`.
    """
    as_of, horizon_days = check_arguments(as_of, horizon_days)
    names = column_names(customer_id=customer_id, date=date, amount=amount, date_format=date_format)
    model = as_model(model)
    columns = read_columns(model, df.columns, names)
    id_column, date_column = columns["customer_id"], columns["date"]
    roles = reading_roles(
        "transactions",
        columns["customer_id"],
        columns["date"],
        columns["amount"],
        columns["quantity"],
        columns["price"],
    )
    require_columns(pd.DataFrame(columns=df.columns), roles, "transactions", _COLUMN_FIX)
    id_type = df.schema[id_column].dataType
    if identity_links is not None:
        # Read (the dates a group's canonical id is chosen by), then resolved: the partitions
        # get canonical columns and clean them as they would the source's.
        canonical, _ = read_canonical(df, "transactions", columns)
        df, _, _ = resolve_identities(canonical, identity_links)
        id_column, date_column, names = CUSTOMER_ID, DATE, {}
    groups = partition_count(df.sparkSession, partitions)
    keyed = df.withColumn(PARTITION, F.pmod(F.xxhash64(id_column), F.lit(groups)))
    state = json.dumps(model.to_dict())
    if as_of is None:
        report, last = _cleaned(keyed, state, names)
        check_customer_ids(report, stacklevel=3)
        if last is None:
            raise DataError("every transaction was excluded by cleaning; nothing to score")
        as_of = last
    else:
        report, first = _read(df, id_column, date_column)
        check_customer_ids(report, stacklevel=3)
        check_as_of(as_of, first, model.time_unit)
    integers = isinstance(id_type, _INTEGERS)
    # Canonical ids of linked customers are text until scored (ids of the transactions:
    # given back in their type, as locally).
    as_text = integers and identity_links is not None
    schema = _schema(model, id_type if integers and not as_text else T.StringType())
    scorer = _score_partition(state, as_of, horizon_days, names)
    # Rows without an id are never scored; left in, they would turn a partition's integer
    # ids into floats (pandas has no missing integer there), and its table's ids into text.
    with_ids = keyed.where(F.col(id_column).isNotNull())
    scores = with_ids.groupBy(PARTITION).applyInPandas(scorer, schema)
    return scores.withColumn(CUSTOMER_ID, F.col(CUSTOMER_ID).cast(id_type)) if as_text else scores


_COLUMN_FIX = (
    "Give the columns the model was trained on, or the canonical customer_id, date and amount."
)


def _score_partition(
    state: str, as_of: pd.Timestamp, horizon_days: float | None, names: dict[str, str]
) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """The function that scores one partition's transactions (on an executor)."""

    def score_partition(transactions: pd.DataFrame) -> pd.DataFrame:
        model = _model(state)
        prepared = prepare(model, transactions.drop(columns=PARTITION), names=names)
        # As score() after its checks, which the driver made for the whole data: a
        # partition whose customers all start after as_of is no error, only reasons.
        # DuckDB on one thread: an executor runs a Python worker per core already.
        return score_prepared(model, prepared, as_of, horizon_days, threads=1)[0]

    return score_partition


def _cleaned(
    keyed: DataFrame, state: str, names: dict[str, str]
) -> tuple[DataReport, pd.Timestamp | None]:
    """A first pass over the partitions: the rows read and without an id, and the last
    transaction date after cleaning (None when cleaning kept none)."""

    def dates(transactions: pd.DataFrame) -> pd.DataFrame:
        prepared = prepare(_model(state), transactions.drop(columns=PARTITION), names=names)
        steps = prepared.report.steps
        last = None if prepared.canonical.empty else str(prepared.last_date)
        return pd.DataFrame(
            {
                "rows": [prepared.report.rows_read],
                "missing": [steps.get("missing_customer_id", 0)],
                "last": [last],
            }
        )

    schema = "rows long, missing long, last string"
    with raised_on_driver():
        found = keyed.groupBy(PARTITION).applyInPandas(dates, schema).collect()
    report = DataReport(
        rows_read=sum(row["rows"] for row in found),
        steps={"missing_customer_id": sum(row["missing"] for row in found)},
    )
    lasts = [pd.Timestamp(row["last"]) for row in found if row["last"] is not None]
    return report, max(lasts) if lasts else None


def _read(
    df: DataFrame, id_column: str, date_column: str
) -> tuple[DataReport, pd.Timestamp | None]:
    """One aggregation: the rows read and without an id, and the first date of a row with
    an id (None unless the dates are timestamps; before cleaning, which only removes rows,
    so an ``as_of`` before it is before the cleaned data too)."""
    has_id = F.col(id_column).isNotNull()
    aggregates = [F.count(F.lit(1)), F.count(F.when(~has_id, 1))]
    if isinstance(df.schema[date_column].dataType, _TIMES):
        aggregates.append(F.min(F.when(has_id, naive(date_column))))
    row = df.agg(*aggregates).first()
    assert row is not None  # an aggregation has one row
    report = DataReport(rows_read=row[0], steps={"missing_customer_id": row[1]})
    return report, as_naive_timestamp(row[2]) if len(row) > 2 else None


def _schema(model: CLVModel, id_type: T.DataType) -> T.StructType:
    """The score table's Spark schema: the columns and types of :func:`clvlab.score`'s."""
    table = ScoreValues.empty(model).table()
    fields = [T.StructField(CUSTOMER_ID, id_type)]
    for name, dtype in table.dtypes.items():
        if name != CUSTOMER_ID:
            fields.append(T.StructField(str(name), _SPARK_TYPES[str(dtype)]))
    return T.StructType(fields)


@functools.lru_cache(maxsize=4)
def _model(state: str) -> CLVModel:
    """The model of its JSON ``state``, rebuilt once per Python worker (workers are reused
    between partitions)."""
    return CLVModel.from_dict(json.loads(state))
