"""Score tables written from Spark, whole or not at all, as the command line does.

The output is written as batch scoring writes its own: built under a temporary name beside
the target and moved into place only when complete (:func:`clvlab.outputs.publish`), so a
failed or killed job leaves the previous output, never half of a new one.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from pyspark.sql import DataFrame

from clvlab.errors import ConfigError
from clvlab.outputs import publish
from clvlab.spark.jobs import raised_on_driver


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
