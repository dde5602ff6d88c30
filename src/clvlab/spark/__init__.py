"""clvlab on Spark: the RFM summaries and identity resolution in Spark SQL, and scoring by
customer partitions.

The results equal the local path's (:func:`clvlab.rfm`, :func:`clvlab.calibration_holdout`,
:func:`clvlab.score`) on the same transactions; scoring runs the local code itself on each
partition of customers, so there is no second implementation of the models.

Needs the ``spark`` extra (``pip install 'clvlab[spark]'``, pyspark 4) and Java 17 or later.
``import clvlab`` never imports pyspark; ``import clvlab.spark`` does.
"""

from __future__ import annotations

try:
    import pyspark  # noqa: F401
except ImportError as exc:  # pragma: no cover - the extra is installed with the dev tools
    raise ImportError(
        "clvlab.spark needs pyspark 4: install clvlab with the spark extra "
        "(pip install 'clvlab[spark]')"
    ) from exc

from clvlab.spark.identity import link_components, resolve_identities
from clvlab.spark.io import SparkTransactions, read_transactions
from clvlab.spark.rfm import calibration_holdout, rfm
from clvlab.spark.runtime import session
from clvlab.spark.scoring import score

__all__ = [
    "SparkTransactions",
    "calibration_holdout",
    "link_components",
    "read_transactions",
    "resolve_identities",
    "rfm",
    "score",
    "session",
]
