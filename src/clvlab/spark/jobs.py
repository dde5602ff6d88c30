"""What the Spark jobs of clvlab share: the partition column, the default number of
partitions, and clvlab's errors from the executors raised again on the driver."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from pyspark.errors import PythonException
from pyspark.sql import SparkSession

from clvlab.errors import ClvlabError, ConfigError, DataError

#: The column that holds each row's partition while scoring (dropped before the local code).
PARTITION = "_clvlab_partition"
_ERRORS: dict[str, type[ClvlabError]] = {
    "DataError": DataError,
    "ConfigError": ConfigError,
    "ClvlabError": ClvlabError,
}


def partition_count(spark: SparkSession, partitions: int | None) -> int:
    """The number of customer partitions of a job: ``partitions``, checked to be a positive
    whole number, or ``spark.sql.shuffle.partitions`` (200 where it is not a number, as
    Databricks' ``auto``)."""
    if partitions is None:
        value = str(spark.conf.get("spark.sql.shuffle.partitions", "200"))
        return int(value) if value.isdigit() and int(value) > 0 else 200
    if isinstance(partitions, bool) or not isinstance(partitions, int) or partitions < 1:
        raise DataError(f"partitions must be a positive whole number, got {partitions!r}")
    return partitions


@contextmanager
def raised_on_driver() -> Iterator[None]:
    """clvlab's own errors raised on an executor raised again on the driver as themselves
    (with the executor's message), not as a Spark ``PythonException``."""
    try:
        yield
    except PythonException as exc:
        found = re.search(r"clvlab\.errors\.(\w+): (.*)", str(exc), flags=re.DOTALL)
        if found is None or found[1] not in _ERRORS:
            raise
        message = found[2].strip().split("\n\n")[0]
        raise _ERRORS[found[1]](message) from exc
