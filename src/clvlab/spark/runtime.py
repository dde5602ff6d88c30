"""A Spark session set up for clvlab, with the checks that make a failed start say why."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from pyspark.sql import SparkSession

from clvlab.errors import ClvlabError

#: The oldest Java that Spark 4 runs on.
MIN_JAVA = 17
#: Settings clvlab's Spark code expects unless told otherwise: naive timestamps move between
#: pandas and Spark in UTC, where no wall-clock time is skipped or repeated (as it is at a
#: daylight-saving change in a local zone); pandas tables move through Arrow.
DEFAULTS = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
}
_INSTALL_JAVA = (
    "install a JDK (Debian/Ubuntu: sudo apt-get install openjdk-17-jre-headless; macOS: "
    "brew install openjdk@17) or set JAVA_HOME to one"
)


def session(
    master: str | None = "local[2]",
    *,
    app_name: str = "clvlab",
    conf: Mapping[str, str] | None = None,
) -> SparkSession:
    """A Spark session (the running one, if any) with clvlab's defaults.

    Parameters
    ----------
    master
        Where Spark runs: ``"local[N]"`` (N cores of this machine) or a cluster's URL
        (``spark://HOST:7077``, ``yarn``, ``k8s://...``); clvlab must be installed where the
        executors run. None: Spark's choice (``spark-submit --master``, ``spark.master`` in
        ``spark-defaults.conf``, else ``local[*]``).
    app_name
        The application's name in Spark's UI and logs.
    conf
        Spark settings (``{"spark.sql.shuffle.partitions": "64"}``); they override
        :data:`DEFAULTS`.

    Raises
    ------
    ClvlabError
        If no Java is found, or it is older than Java 17, with how to install one.

    Notes
    -----
    In local mode, Python workers run this interpreter (``PYSPARK_PYTHON`` unless it is set):
    Spark would otherwise start ``python3`` from ``PATH``, which may lack pyarrow and clvlab.
    """
    check_java()
    builder = SparkSession.builder.appName(app_name)
    if master is not None:
        builder = builder.master(master)
    for key, value in {**DEFAULTS, **(conf or {})}.items():
        builder = builder.config(key, value)
    with _python_workers(master):
        return builder.getOrCreate()


def check_java() -> None:
    """Raise a :class:`ClvlabError` saying how to install Java unless Java 17+ is found
    where Spark looks for it (``JAVA_HOME``, else ``java`` on ``PATH``)."""
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if java is None or not Path(java).is_file():
        where = f"JAVA_HOME={home} has no bin/java" if home else "no java on PATH"
        raise ClvlabError(f"Spark needs Java {MIN_JAVA} or later ({where}): {_INSTALL_JAVA}")
    try:
        shown = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=30, check=False
        ).stderr
    except OSError as exc:
        raise ClvlabError(f"Spark needs Java {MIN_JAVA} or later; {java} failed: {exc}") from None
    found = re.search(r'version "(\d+)(?:\.(\d+))?', shown)
    if found:  # "1.8.0_392" is Java 8, "17.0.15" Java 17
        major = int(found[2] or 0) if found[1] == "1" else int(found[1])
        if major < MIN_JAVA:
            raise ClvlabError(
                f"Spark needs Java {MIN_JAVA} or later; {java} is Java {major}: {_INSTALL_JAVA}"
            )


@contextmanager
def _python_workers(master: str | None) -> Iterator[None]:
    """While a local session (or one whose master Spark chooses) starts: ``PYSPARK_PYTHON``
    set to this interpreter unless set. pyspark reads it once, when the SparkContext is
    created."""
    cluster = master is not None and not master.startswith("local")
    if cluster or "PYSPARK_PYTHON" in os.environ:
        yield
        return
    os.environ["PYSPARK_PYTHON"] = sys.executable
    try:
        yield
    finally:
        del os.environ["PYSPARK_PYTHON"]
