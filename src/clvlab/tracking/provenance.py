"""Provenance of a training run and its model: clvlab's version and git commit, the
fingerprints of the data and the config, and the versions of the packages scoring needs."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from clvlab.config import RunConfig

#: clvlab's own source: its git commit tags every run, and every model packs it.
PACKAGE_SOURCE = Path(__file__).resolve().parents[1]
#: The pyfunc artifact that holds a model's fitted state (JSON): written by
#: :func:`clvlab.serving.packaging.write_model`, read by the pyfunc and by
#: :func:`clvlab.tracking.load_model`.
STATE_ARTIFACT = "clv_model"
#: Third-party packages a scoring environment needs, pinned to the versions that trained the
#: model.
REQUIREMENTS = [
    "mlflow",
    "pandas",
    "numpy",
    "scipy",
    "duckdb",
    "pyarrow",
    "scikit-learn",
    "lightgbm",
    "pydantic",
    "pyyaml",
]


def pinned_requirements() -> list[str]:
    """:data:`REQUIREMENTS` pinned to the installed versions (``name==version``)."""
    return [f"{name}=={importlib.metadata.version(name)}" for name in REQUIREMENTS]


def provenance(config: RunConfig, transactions: pd.DataFrame) -> dict[str, str]:
    """What a run and its model are tagged with: clvlab's version, the git commit of its
    source (``-dirty`` with uncommitted changes; ``unknown`` outside a git checkout), the
    fingerprint of the (cleaned, canonical) training transactions and of the resolved
    config."""
    from clvlab import __version__
    from clvlab.data.fingerprint import fingerprint

    return {
        "clvlab.version": __version__,
        "clvlab.git_commit": _git_commit(),
        "clvlab.data_fingerprint": fingerprint(transactions),
        "clvlab.config_hash": config.fingerprint(),
    }


def environment() -> dict[str, str]:
    """Python, the platform and the version of every package scoring needs."""
    import platform

    versions = {name: importlib.metadata.version(name) for name in (*REQUIREMENTS, "lifetimes")}
    return {"python": platform.python_version(), "platform": platform.platform(), **versions}


def _git_commit() -> str:
    import subprocess

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(PACKAGE_SOURCE), *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        return done.stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit
