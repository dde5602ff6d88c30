"""Read back what a training run logged: its record, chosen artifacts and registered versions.

A run is named by its id, a ``runs:/RUN_ID/...`` URI, or a registered version
(``models:/NAME/VERSION``, ``models:/NAME@ALIAS``), looked up in the tracking store
(:func:`clvlab.tracking.store.use_tracking_store`, which must exist). Only training runs that
logged a model are read: anything else is a :class:`ClvlabError` that says what was found.
"""

from __future__ import annotations

import datetime as dt
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from clvlab.errors import ClvlabError
from clvlab.tracking.store import describe_store, use_tracking_store

if TYPE_CHECKING:
    from mlflow import MlflowClient

#: MLflow's run ids: 32 hexadecimal digits.
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")
#: The file every logged model folder has; a run without it has no model.
_MODEL_FILE = "model/MLmodel"


@dataclass(frozen=True)
class RegisteredVersion:
    """A version of a registered model made from a run."""

    name: str
    version: str
    aliases: tuple[str, ...] = ()

    @property
    def uri(self) -> str:
        """``models:/NAME/VERSION``."""
        return f"models:/{self.name}/{self.version}"


@dataclass(frozen=True)
class LoggedRun:
    """A training run as the tracking store holds it (see :func:`fetch_run`).

    Attributes
    ----------
    run_id, name, experiment
        The run's id and name, and its experiment's name.
    started
        When the run started (UTC).
    status
        MLflow's status of the run (``FINISHED``, ``RUNNING``, ``FAILED``...).
    artifact_uri
        Where the run's artifacts are (its model is at ``<artifact_uri>/model``).
    params, metrics, tags
        What the run logged (the latest value of each metric).
    artifacts
        The requested artifacts the run has: path -> content.
    versions
        The registered model versions made from the run's model.
    requested
        How the run was named (a run id, a ``runs:/`` or a ``models:/`` URI).
    """

    run_id: str
    name: str
    experiment: str
    started: dt.datetime
    status: str
    artifact_uri: str
    params: dict[str, str]
    metrics: dict[str, float]
    tags: dict[str, str]
    artifacts: dict[str, bytes] = field(repr=False)
    versions: tuple[RegisteredVersion, ...]
    requested: str

    @property
    def model_uri(self) -> str:
        """Where the run's model is logged: ``runs:/<run_id>/model``."""
        return f"runs:/{self.run_id}/model"


def run_id_of(run_or_uri: str, configured: str | None = None) -> str:
    """The id of the run that ``run_or_uri`` names: a run id as it is, the run of a
    ``runs:/RUN_ID/...`` URI, or the run a registered version (``models:/NAME/VERSION``,
    ``models:/NAME@ALIAS``) was made from, in the tracking store (``configured``: a run
    config's ``tracking.uri``, see :func:`clvlab.tracking.store.tracking_uri`). The store must
    exist; a registered name, version or alias it does not have is a :class:`ClvlabError`."""
    text = run_or_uri.strip()
    if _RUN_ID.match(text):
        return text
    if text.startswith("runs:/"):
        found = text.removeprefix("runs:/").strip("/").split("/", 1)[0]
        if _RUN_ID.match(found):
            return found
        raise ClvlabError(
            f"{run_or_uri!r} names no run: a runs:/ URI is runs:/RUN_ID/model, with the run id "
            "of 32 hexadecimal digits that `clvlab train` prints"
        )
    if not text.startswith("models:/"):
        raise ClvlabError(
            f"{run_or_uri!r} is not a run id (32 hexadecimal digits, printed by `clvlab "
            "train`), a runs:/RUN_ID/model URI nor a registered version, models:/NAME/VERSION "
            "or models:/NAME@ALIAS"
        )
    store = describe_store(use_tracking_store(configured))
    import mlflow
    from mlflow.exceptions import MlflowException

    name, at, alias = text.removeprefix("models:/").partition("@")
    if not at:
        name, _, number = name.partition("/")
    client = mlflow.MlflowClient()
    try:
        if at:
            version = client.get_model_version_by_alias(name, alias)
        else:
            version = client.get_model_version(name, number)
    except MlflowException as error:
        reason = str(error).splitlines()[0].rstrip(".")
        raise ClvlabError(
            f"{run_or_uri!r} is not in the tracking store {store}: "
            f"{reason}. `clvlab models {name}` lists its versions and aliases; "
            "MLFLOW_TRACKING_URI or clvlab --tracking-uri points at another store"
        ) from None
    return str(version.run_id)


def fetch_run(
    run_or_uri: str, artifacts: Iterable[str] = (), *, configured: str | None = None
) -> LoggedRun:
    """Read a training run from the tracking store.

    Parameters
    ----------
    run_or_uri
        A run id, a ``runs:/RUN_ID/...`` URI, or ``models:/NAME/VERSION`` or
        ``models:/NAME@ALIAS`` (see :func:`run_id_of`).
    artifacts
        Paths of top-level artifacts to read (``"backtest_report.json"``); those the run
        does not have are left out of :attr:`LoggedRun.artifacts`.
    configured
        A run config's ``tracking.uri``, if any (see
        :func:`clvlab.tracking.store.tracking_uri`).

    Raises
    ------
    ClvlabError
        If the store, the registered version or the run does not exist, or the run has no
        model (a candidate's nested run, or a training that stopped before logging it).
    """
    run_id = run_id_of(run_or_uri, configured)
    store = describe_store(use_tracking_store(configured))
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient()
    try:
        run = client.get_run(run_id)
    except MlflowException as error:
        if error.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        raise ClvlabError(
            f"no run {run_id} in the tracking store {store}. `clvlab train` prints the id of "
            "the run it logs (Run: ...); MLFLOW_TRACKING_URI or clvlab --tracking-uri points "
            "at another store"
        ) from None
    present = {item.path for item in client.list_artifacts(run_id)}
    has_model = "model" in present and _MODEL_FILE in {
        item.path for item in client.list_artifacts(run_id, "model")
    }
    if not has_model:
        parent = run.data.tags.get("mlflow.parentRunId")
        what = (
            f"it is the nested run of candidate {run.info.run_name!r} of the training run "
            f"{parent}: name that one"
            if parent
            else "it is not a clvlab training run, or its training stopped before logging the model"
        )
        raise ClvlabError(f"run {run_id} in {store} has no model ({_MODEL_FILE}): {what}")
    experiment = client.get_experiment(run.info.experiment_id)
    return LoggedRun(
        run_id=run_id,
        name=run.info.run_name or run_id,
        experiment=experiment.name if experiment is not None else run.info.experiment_id,
        started=dt.datetime.fromtimestamp(run.info.start_time / 1000, tz=dt.UTC),
        status=run.info.status,
        artifact_uri=run.info.artifact_uri,
        params=dict(run.data.params),
        metrics=dict(run.data.metrics),
        tags=dict(run.data.tags),
        artifacts=_read_artifacts(run.info.artifact_uri, [p for p in artifacts if p in present]),
        versions=_registered_versions(client, run_id),
        requested=run_or_uri,
    )


def _read_artifacts(root: str, paths: list[str]) -> dict[str, bytes]:
    """The contents of the artifacts ``paths`` under the run's artifact URI ``root``. A local
    store's files are read in place (no copy, and none of MLflow's download bars); others are
    downloaded into a temporary folder."""
    import mlflow

    local = urlparse(root).scheme in ("", "file")
    contents = {}
    with tempfile.TemporaryDirectory() as scratch:
        for path in paths:
            found = mlflow.artifacts.download_artifacts(
                artifact_uri=f"{root.rstrip('/')}/{path}", dst_path=None if local else scratch
            )
            contents[path] = Path(found).read_bytes()
    return contents


def _registered_versions(client: MlflowClient, run_id: str) -> tuple[RegisteredVersion, ...]:
    """The registered versions of the run's model, with their aliases."""
    found = []
    for version in client.search_model_versions(f"run_id = '{run_id}'"):
        # Searches do not fill in aliases; the version itself has them.
        full = client.get_model_version(version.name, version.version)
        found.append(
            RegisteredVersion(version.name, str(version.version), tuple(full.aliases or ()))
        )
    return tuple(sorted(found, key=lambda v: (v.name, int(v.version))))


def attach_file(run_id: str, path: Path) -> None:
    """Log the file ``path`` as a top-level artifact of the run ``run_id`` (finished or not)."""
    import mlflow

    mlflow.MlflowClient().log_artifact(run_id, str(path))
