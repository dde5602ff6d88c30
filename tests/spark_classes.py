"""A class-data-sharing archive of the JVM classes the Spark tests load, made once when the
venv is set up (``make``), so that starting Spark in the tests loads them mapped from it
instead of parsing and verifying them again: Spark starts in half the time and CPU.

``python tests/spark_classes.py`` runs a small Spark job of the kinds clvlab's Spark code runs
(pandas in and out through Arrow, aggregations, windows, joins, ``applyInPandas``) with
``-XX:ArchiveClassesAtExit``; the JVM writes the archive as it exits. Without Java (or if
anything fails) it says so and makes none: the tests then start Spark without it (and fail
with the reason if there is no Java). An archive of another JVM is ignored by the JVM, which
then loads its classes as usual.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

#: Where the archive is kept: in the venv, which it belongs to (the JVM's classes and Spark's
#: jars there).
ARCHIVE = Path(sys.prefix) / "spark-classes.jsa"
#: The JVM options of the test session: the quick compiler only (the optimizing one took
#: 2 cores' time from these short jobs) and the one-thread collector (the default parallel one
#: took 15 % more CPU over the Spark tests), and the archive when there is one.
QUICK_JVM = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"


def java_options() -> str:
    """The test session's ``spark.driver.extraJavaOptions``."""
    if ARCHIVE.is_file():
        return f"{QUICK_JVM} -XX:SharedArchiveFile={ARCHIVE}"
    return QUICK_JVM


def main() -> int:
    warnings.simplefilter("ignore")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    try:
        import pandas as pd
        from pyspark.sql import Window
        from pyspark.sql import functions as F

        import clvlab.spark

        spark = clvlab.spark.session(
            "local[2]",
            app_name="clvlab-class-archive",
            conf={
                "spark.ui.enabled": "false",
                "spark.ui.showConsoleProgress": "false",
                "spark.log.level": "ERROR",
                "spark.sql.shuffle.partitions": "2",
                "spark.driver.extraJavaOptions": (
                    f"{QUICK_JVM} -XX:ArchiveClassesAtExit={ARCHIVE} -Xlog:cds=off"
                ),
            },
        )
        frame = pd.DataFrame(
            {
                "customer_id": ["a", "b", "a", "c"],
                "date": pd.to_datetime(["2020-01-01", "2020-01-02", "2020-02-01", "2020-03-01"]),
                "amount": [1.0, 2.0, None, 4.0],
            }
        )
        table = spark.createDataFrame(frame)
        first = Window.partitionBy("customer_id")
        summary = (
            table.withColumn("first", F.min("date").over(first))
            .groupBy("customer_id")
            .agg(F.countDistinct(F.to_date("date")).alias("days"), F.sum("amount"))
        )
        summary.join(table.select("customer_id").distinct(), "customer_id", "left").toPandas()
        table.groupBy("customer_id").applyInPandas(lambda part: part, table.schema).toPandas()
        # The JVM writes the archive as it exits, which it does when its stdin closes: wait
        # for it, so that the archive is whole before anything uses it.
        jvm = spark.sparkContext._gateway.proc  # type: ignore[union-attr]
        spark.stop()
        jvm.stdin.close()
        jvm.wait(timeout=300)
    except Exception as exc:
        print(f"No Spark class archive (the Spark tests start without it): {exc}")
        return 0
    print(f"Spark class archive: {ARCHIVE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
