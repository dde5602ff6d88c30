"""Transactions read for Spark and score tables written from it, as the command line does.

The output is written as batch scoring writes its own: built under a temporary name beside
the target and moved into place only when complete (:func:`clvlab.outputs.publish`), so a
failed or killed job leaves the previous output, never half of a new one.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession

from clvlab.data.datasets import is_packaged_source, load_packaged
from clvlab.errors import ConfigError, DataError
from clvlab.outputs import publish
from clvlab.spark.scoring import raised_on_driver


def read_source(spark: SparkSession, source: str) -> DataFrame:
    """Transactions as a Spark DataFrame: a CSV file (a header row; every column text, as
    clvlab reads CSV ids, the dates and amounts then read by the scoring code), Parquet (a
    file, a folder or a glob), a table name of the Spark catalog, or a data set lifetimes
    ships (``lifetimes:CDNOW_master``, read on the driver)."""
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
        raise DataError(f"transactions {source!r} cannot be read: {reason}") from None


def check_target(target: Path) -> None:
    """Raise a :class:`ConfigError` unless ``target`` names a Parquet folder."""
    if target.suffix.lower() != ".parquet":
        raise ConfigError(
            f"--output {target}: the Spark engine writes Parquet (a folder of part files); "
            "give a path ending in .parquet"
        )


def write_scores(scores: DataFrame, target: Path) -> None:
    """Write ``scores`` to the Parquet folder ``target``, whole or not at all (replacing what
    was there). ``target`` is a path the driver and every executor see: a local folder in
    local mode, a shared file system on a cluster."""
    check_target(target)
    target = target.absolute()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        built = staging / target.name
        with raised_on_driver():  # scoring runs now: a partition's DataError, as itself
            scores.write.parquet(str(built))
        publish(built, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
