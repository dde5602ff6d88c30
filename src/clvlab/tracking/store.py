"""Which MLflow tracking store clvlab uses, wherever it is run from.

The store is, in this order: the one ``MLFLOW_TRACKING_URI`` names; the run config's
``tracking.uri``; else clvlab's default store, a SQLite database at
``~/.clvlab/mlruns/mlflow.db`` (``$CLVLAB_HOME/mlruns/mlflow.db`` when ``CLVLAB_HOME`` is set)
with the artifacts beside it. The current folder plays no part: the CLI, a notebook and a
script run from any folder find the same runs and models.

Only training creates a store. Looking a model up in a SQLite store that does not exist is an
error that names the store, never an empty new database.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import unquote, urlparse

from clvlab.errors import ClvlabError, ConfigError

HOME_VARIABLE = "CLVLAB_HOME"
_STORE_FOLDER = "mlruns"
_DATABASE = "mlflow.db"
_ARTIFACTS = "artifacts"


def clvlab_home() -> Path:
    """``$CLVLAB_HOME``, else ``~/.clvlab``: where clvlab's default tracking store lives."""
    configured = os.environ.get(HOME_VARIABLE)
    return Path(configured).expanduser() if configured else Path.home() / ".clvlab"


def default_tracking_uri() -> str:
    """The SQLite URI of clvlab's default store (see the module docstring)."""
    return f"sqlite:///{(clvlab_home() / _STORE_FOLDER / _DATABASE).as_posix()}"


def tracking_uri(configured: str | None = None) -> str:
    """The tracking store: ``MLFLOW_TRACKING_URI``, else ``configured`` (a run config's
    ``tracking.uri``), else :func:`default_tracking_uri`."""
    return os.environ.get("MLFLOW_TRACKING_URI") or configured or default_tracking_uri()


def describe_store(uri: str) -> str:
    """Where ``uri`` came from, for messages: which setting chose it."""
    if os.environ.get("MLFLOW_TRACKING_URI") == uri:
        source = "MLFLOW_TRACKING_URI"
    elif uri == default_tracking_uri():
        source = f"clvlab's default store; set {HOME_VARIABLE} to move it"
    else:
        source = "the run config's tracking.uri"
    return f"{uri} ({source})"


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI; None for any other store."""
    parsed = urlparse(uri)
    if parsed.scheme != "sqlite":
        return None
    return Path(unquote(parsed.path)) if parsed.path not in ("", "/:memory:") else None


def check_tracking_store(configured: str | None = None) -> None:
    """Raise ConfigError if the store is a plain folder: MLflow 3 refuses its file store
    unless ``MLFLOW_ALLOW_FILE_STORE`` is set, so say how to fix it before any work is done."""
    uri = tracking_uri(configured)
    scheme = urlparse(uri).scheme
    is_folder = scheme in ("", "file") or (len(scheme) == 1 and uri[1:3] in (":/", ":\\"))
    if is_folder and os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() not in ("1", "true"):
        raise ConfigError(
            f"the tracking store {uri!r} is a folder, and MLflow no longer accepts a file "
            "store. Use a database store, e.g. MLFLOW_TRACKING_URI=sqlite:////abs/path/mlflow.db"
            f", or unset it for clvlab's default store ({default_tracking_uri()}), or set "
            "MLFLOW_ALLOW_FILE_STORE=true."
        )


def use_tracking_store(configured: str | None = None, *, create: bool = False) -> str:
    """Point MLflow at the tracking store (see :func:`tracking_uri`) and return its URI.

    Parameters
    ----------
    configured
        A run config's ``tracking.uri``, if any.
    create
        Create the SQLite store if it does not exist yet (training does). Otherwise a missing
        SQLite store is a :class:`ClvlabError` naming it and how to point at another one.
    """
    check_tracking_store(configured)
    uri = tracking_uri(configured)
    database = sqlite_path(uri)
    if database is not None and not database.is_file():
        if not create:
            raise ClvlabError(
                f"no MLflow tracking store at {describe_store(uri)}: nothing has been trained "
                "there. Train first (clvlab train), or point at the store that has the model "
                "with MLFLOW_TRACKING_URI=... or clvlab --tracking-uri URI"
            )
        database.parent.mkdir(parents=True, exist_ok=True)
    import mlflow  # after the checks: a command that fails on them does not pay for MLflow

    mlflow.set_tracking_uri(uri)
    return uri


def experiment_id(name: str, configured: str | None = None) -> str:
    """The id of experiment ``name``, created if needed. In a SQLite store its artifacts go
    beside the database (``<store folder>/artifacts/<name>``), not under the current folder,
    which is where MLflow would put them."""
    import mlflow
    from mlflow.exceptions import MlflowException

    found = mlflow.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    database = sqlite_path(tracking_uri(configured))
    location = None
    if database is not None:
        folder = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
        location = (database.parent / _ARTIFACTS / folder).resolve().as_uri()
    try:
        return str(mlflow.create_experiment(name, artifact_location=location))
    except MlflowException as error:  # a run started at the same time created it first
        created = mlflow.get_experiment_by_name(name)
        if error.error_code != "RESOURCE_ALREADY_EXISTS" or created is None:
            raise
        return str(created.experiment_id)
