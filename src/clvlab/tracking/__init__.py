"""Runs and the registry in MLflow: log a training run, copy and load models back.

Which tracking store is used is decided in :mod:`clvlab.tracking.store`: ``MLFLOW_TRACKING_URI``,
else the run config's ``tracking.uri``, else ``~/.clvlab/mlruns/mlflow.db``, wherever clvlab is
run from. The registry's rules are in :mod:`clvlab.tracking.registry`, the provenance tags in
:mod:`clvlab.tracking.provenance`.

This package sits below scoring: it logs a model folder it is given and loads models back,
but never writes the pyfunc form, which scores (that is :mod:`clvlab.serving.packaging`;
:mod:`clvlab.training` composes the two).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from clvlab.errors import ClvlabError
from clvlab.outputs import write_folder
from clvlab.tracking.provenance import STATE_ARTIFACT, environment, provenance
from clvlab.tracking.store import (
    describe_store,
    experiment_id,
    tracking_uri,
    use_tracking_store,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from clvlab.config import RunConfig
    from clvlab.evaluation.backtest import BacktestResult
    from clvlab.models.clv import CLVModel
    from clvlab.models.saved import ScoringModel

__all__ = [
    "CHAMPION",
    "TrackedRun",
    "environment",
    "export_registered",
    "load_model",
    "load_scoring_model",
    "log_contractual_run",
    "log_run",
    "provenance",
    "resolve_model_uri",
    "start_run",
    "ui_command",
]

#: Written into a model folder exported from the registry: which version it is.
_SOURCE_FILE = "clvlab_source.json"
#: The registry alias that marks the version in use.
CHAMPION = "champion"


@dataclass(frozen=True)
class TrackedRun:
    """A training run in MLflow (see :func:`start_run`)."""

    run_id: str
    experiment_id: str

    @property
    def model_uri(self) -> str:
        """Where the run's model is logged: ``runs:/<run_id>/model``."""
        return f"runs:/{self.run_id}/model"


@contextmanager
def start_run(config: RunConfig) -> Iterator[TrackedRun]:
    """Start the training run of ``config`` in its experiment (the tracking store is created
    if needed) and end it on leaving; :func:`log_run` logs into it."""
    import mlflow

    use_tracking_store(config.tracking.uri, create=True)
    experiment = experiment_id(config.experiment_name, config.tracking.uri)
    with mlflow.start_run(experiment_id=experiment, run_name=config.name) as run:
        yield TrackedRun(run.info.run_id, experiment)


def log_run(
    run: TrackedRun,
    config: RunConfig,
    *,
    data_report: dict[str, Any],
    backtest: BacktestResult,
    figures: dict[str, Figure],
    champion_metrics: dict[str, float],
    fitted_params: dict[str, dict[str, float]],
    model_label: str,
    model_folder: Path,
    tags: dict[str, str],
    segment_rules: dict[str, Any] | None = None,
) -> None:
    """Log one training run into ``run`` (the active run, see :func:`start_run`): config,
    fitted parameters, data report, package versions (``environment.json``), the backtest
    (its report, the ``figures`` by file name and one nested run per candidate with its
    validation and holdout metrics), the scoring model's holdout metrics
    (``holdout.<metric>``), the provenance ``tags`` (see :func:`provenance`), the scoring
    model's ``model_label`` (tag ``clvlab.model``) and the model folder already written
    (:func:`clvlab.serving.packaging.write_model`, with ``run.model_uri`` as the model's
    version), as the artifact ``model``; the model's ``segment_rules``, its segment cut
    points (:meth:`clvlab.segments.SegmentRules.to_dict`), as ``segment_rules.json``; and the
    holdout GBM's feature importance (gain per target), when it was trained, as
    ``gbm_feature_importance.json``.
    """
    import mlflow

    mlflow.log_params(config.to_flat_dict())
    mlflow.log_params(
        {
            f"{stage}.{key}": value
            for stage, values in fitted_params.items()
            for key, value in values.items()
        }
    )
    mlflow.set_tags(
        {
            **tags,
            "clvlab.model": model_label,
            **{f"clvlab.champion.{t}": name for t, name in backtest.champions.items()},
        }
    )
    mlflow.log_dict(data_report, "data_report.json")
    mlflow.log_dict(environment(), "environment.json")
    mlflow.log_metrics({f"holdout.{k}": v for k, v in champion_metrics.items()})
    mlflow.log_dict(backtest.report(), "backtest_report.json")
    if segment_rules is not None:
        mlflow.log_dict(segment_rules, "segment_rules.json")
    from clvlab.models.clv import GBM
    from clvlab.models.gbm import GBMPredictor

    gbm = backtest.candidates["holdout"].get(GBM)
    if gbm is not None and isinstance(gbm.model, GBMPredictor):
        mlflow.log_dict(gbm.model.feature_importance(), "gbm_feature_importance.json")
    for name, figure in figures.items():
        mlflow.log_figure(figure, name)
    _log_candidates(backtest, run.experiment_id)
    mlflow.log_artifacts(str(model_folder), artifact_path="model")


def log_contractual_run(
    run: TrackedRun,
    config: RunConfig,
    *,
    data_report: dict[str, Any],
    backtest: dict[str, Any],
    champion_metrics: dict[str, float],
    fitted_params: dict[str, float],
    model_label: str,
    model_folder: Path,
    tags: dict[str, str],
) -> None:
    """:func:`log_run` of a contractual training (:mod:`clvlab.training_contractual`): the
    config, the fitted parameters (``full.<cohort>.<param>``), the data report, the package
    versions, the backtest report (``backtest_report.json``), the holdout metrics of the
    scoring model (``holdout.<metric>``), the tags and the model folder."""
    import mlflow

    mlflow.log_params(config.to_flat_dict())
    mlflow.log_params({f"full.{key}": value for key, value in fitted_params.items()})
    champion = backtest["champions"]["churn"]
    mlflow.set_tags({**tags, "clvlab.model": model_label, "clvlab.champion.churn": champion})
    mlflow.log_dict(data_report, "data_report.json")
    mlflow.log_dict(environment(), "environment.json")
    mlflow.log_metrics({f"holdout.{k}": v for k, v in champion_metrics.items()})
    mlflow.log_dict(backtest, "backtest_report.json")
    mlflow.log_artifacts(str(model_folder), artifact_path="model")


def _log_candidates(backtest: BacktestResult, experiment_id: str) -> None:
    """One nested run per backtest candidate: its metrics on both windows, the targets it is
    champion of, or why it was skipped; the ensemble's weights as its params
    (``weight.<target>.<candidate>``)."""
    import mlflow

    from clvlab.models.clv import ENSEMBLE

    tables = {"validation": backtest.validation_metrics, "holdout": backtest.metrics}
    candidates = dict.fromkeys([*backtest.validation_metrics.index, *backtest.metrics.index])
    for candidate in [*candidates, *(c for c in backtest.skipped if c not in candidates)]:
        with mlflow.start_run(experiment_id=experiment_id, run_name=candidate, nested=True):
            targets = [t for t, name in backtest.champions.items() if name == candidate]
            mlflow.set_tags(
                {"clvlab.candidate": candidate, "clvlab.champion_for": ",".join(targets)}
            )
            if candidate in backtest.skipped:
                mlflow.set_tag("clvlab.skipped", backtest.skipped[candidate])
            if candidate == ENSEMBLE and backtest.blend is not None:
                mlflow.log_params(
                    {
                        f"weight.{target}.{name}": round(weight, 6)
                        for target, weights in backtest.blend.weights.items()
                        for name, weight in weights.items()
                    }
                )
            mlflow.log_metrics(
                {
                    f"{window}.{metric}": float(value)
                    for window, table in tables.items()
                    if candidate in table.index
                    for metric, value in table.loc[candidate].items()
                    if pd.notna(value)
                }
            )


def export_registered(model: str, folder: str | Path, alias: str = CHAMPION) -> tuple[str, Path]:
    """Copy a logged or registered model to a local folder, replacing any previous export
    atomically.

    Parameters
    ----------
    model
        A registered model's name (``NAME`` or ``NAME@ALIAS``; the alias defaults to
        ``alias``), or any MLflow model URI (``models:/NAME/3``, ``runs:/RUN_ID/model``).
    folder
        The local folder to write; :func:`load_model` and ``clvlab score --model`` read it.

    Returns
    -------
    (uri, folder)
        The exact model URI copied (``models:/NAME/VERSION`` for a registered model) and
        the folder written.
    """
    uri = resolve_model_uri(model, alias)
    target = Path(folder).resolve()
    if target.exists() and not (target / "MLmodel").is_file():
        raise ClvlabError(
            f"{target} exists and is not a model folder (no MLmodel file): choose another "
            "folder, or remove it"
        )
    import mlflow

    def download(built: Path) -> None:
        # MLflow puts a runs:/ model in a subfolder of dst_path (models:/ ones in it): the
        # path it returns is the model folder either way.
        try:
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=uri, dst_path=str(built.parent / "download")
            )
        except Exception as exc:  # MLflow raises many types for a missing model
            raise ClvlabError(_not_found(uri, exc)) from None
        Path(local).rename(built)
        (built / _SOURCE_FILE).write_text(json.dumps({"model_uri": uri}) + "\n")

    return uri, write_folder(target, download)


def resolve_model_uri(model: str | Path, alias: str = CHAMPION) -> str:
    """The exact MLflow URI of ``model``: ``NAME`` or ``NAME@ALIAS`` and ``models:/NAME@ALIAS``
    become ``models:/NAME/VERSION`` (looked up in the tracking store); other URIs and
    folders stay as they are. For a ``runs:/`` or ``models:/`` URI or a name, MLflow is
    pointed at the tracking store (:func:`clvlab.tracking.store.use_tracking_store`), which
    must exist."""
    text = str(model)
    if Path(text).exists() or "://" in text:  # a folder or an artifact URI: no store needed
        return text
    use_tracking_store()  # runs:/ and models:/ URIs and names are looked up there
    name = text.removeprefix("models:/")
    if text.startswith("runs:/") or (text.startswith("models:/") and "@" not in name):
        return text
    name, _, wanted = name.partition("@")
    wanted = wanted or alias
    import mlflow

    try:
        version = mlflow.MlflowClient().get_model_version_by_alias(name, wanted).version
    except Exception:  # MLflow raises many types for a missing name or alias
        raise ClvlabError(
            f"no version of registered model {name!r} has the alias {wanted!r} in the "
            f"tracking store {describe_store(tracking_uri())}; `clvlab models {name}` lists "
            f"its versions, `clvlab train --register {name}` registers one, and "
            "MLFLOW_TRACKING_URI or clvlab --tracking-uri points at another store"
        ) from None
    return f"models:/{name}/{version}"


def load_model(uri: str | Path) -> CLVModel:
    """:func:`load_scoring_model` of a (non-contractual) CLV model: a contractual model is a
    :class:`~clvlab.errors.ClvlabError` that says it scores subscriptions."""
    from clvlab.models.clv import CLVModel

    model = load_scoring_model(uri)
    if not isinstance(model, CLVModel):
        raise ClvlabError(
            f"{uri} is a contractual model (setting: contractual), which scores subscriptions: "
            "score it with clvlab.score or clvlab score, serve it with clvlab serve"
        )
    return model


def load_scoring_model(uri: str | Path) -> ScoringModel:
    """Load a model of either setting (a :class:`~clvlab.CLVModel` or a contractual
    :class:`~clvlab.models.contractual.ContractualModel`) from an MLflow model URI
    (``runs:/...``, ``models:/NAME@alias``, ``models:/NAME/VERSION``), a local model folder
    written by :func:`export_model` or :func:`export_registered`, or a ``clv_model.json`` file.

    The model's ``version`` (the score table's ``model_version``) says where it came from:
    ``models:/NAME/VERSION`` for a registered model (also when exported from the registry),
    else ``runs:/RUN_ID/model``.

    A clvlab model is read from its fitted state (JSON) as its pyfunc form reads it, without
    MLflow's loader: a local folder needs no MLflow at all, a URI only its download. Like
    that loader, it warns when this environment differs from the model's (its pinned
    requirements, its Python version).
    """
    path = Path(uri)
    if path.suffix == ".json" and path.is_file():
        from clvlab.models.saved import load_scoring_model as load_state

        return load_state(path)
    if path.exists() and not (path / "MLmodel").is_file():
        raise ClvlabError(f"{path} is not a model folder (no MLmodel file in it)")
    if path.exists():  # a folder needs no tracking store
        exact, folder = str(path), path
        source = path / _SOURCE_FILE
        registered = json.loads(source.read_text())["model_uri"] if source.is_file() else None
    else:
        exact = resolve_model_uri(str(uri))
        registered = exact if exact.startswith("models:/") else None
        import mlflow  # after the look-up: a missing store is reported without importing it

        try:
            folder = Path(mlflow.artifacts.download_artifacts(artifact_uri=exact))
        except Exception as exc:  # MLflow raises many types for a bad URI; report them alike
            raise ClvlabError(_not_found(exact, exc)) from None
    model = _load_state(folder, exact)
    if registered is not None:
        model.version = registered
    return model


def _load_state(folder: Path, uri: str) -> ScoringModel:
    """The model in the pyfunc folder ``folder`` (``uri``, for messages), from its fitted
    state; a folder that is not clvlab's pyfunc form is left to MLflow's loader."""
    import yaml

    # scipy and scikit-learn: only when loading
    from clvlab.models.saved import load_scoring_model as load_state

    try:
        meta = yaml.safe_load((folder / "MLmodel").read_text()) or {}
        flavor = meta["flavors"]["python_function"]
        state = folder / flavor["artifacts"][STATE_ARTIFACT]["path"]
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        state = None
    if state is None or not state.is_file():
        import mlflow

        try:
            loaded = mlflow.pyfunc.load_model(str(folder))
        except Exception as exc:  # MLflow raises many types for a bad model; report them alike
            raise ClvlabError(_not_found(uri, exc)) from None
        model: ScoringModel = loaded.unwrap_python_model().model
        return model
    _check_environment(folder, flavor.get("python_version"), uri)
    return load_state(state)


def _check_environment(folder: Path, python_version: str | None, uri: str) -> None:
    """Warn, as MLflow's loader does, when the installed version of a package differs from the
    model's pinned requirement (``requirements.txt``) or this Python's minor version from the
    model's. Only the pinned packages are looked up (MLflow's loader maps every installed
    distribution to its modules first, most of a second)."""
    import importlib.metadata
    import platform
    import warnings

    from packaging.requirements import InvalidRequirement, Requirement

    from clvlab.errors import ClvlabWarning

    pins = folder / "requirements.txt"
    mismatches = []
    for line in pins.read_text().splitlines() if pins.is_file() else []:
        try:
            requirement = Requirement(line.strip())
        except InvalidRequirement:  # an option (-c, -r) or a path: not a pin to check
            continue
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        try:
            installed: str | None = importlib.metadata.version(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            installed = None
        if installed is None or not requirement.specifier.contains(installed, prereleases=True):
            mismatches.append(f"{requirement} (installed: {installed or 'none'})")
    if mismatches:
        warnings.warn(
            f"model {uri} was saved with other package versions than this environment has: "
            f"{', '.join(mismatches)}; its scores may differ. Install its requirements.txt "
            "to score as it was trained",
            ClvlabWarning,
            stacklevel=4,
        )
    running = ".".join(platform.python_version_tuple()[:2])
    if python_version and ".".join(str(python_version).split(".")[:2]) != running:
        warnings.warn(
            f"model {uri} was saved with Python {python_version}, this is Python "
            f"{platform.python_version()}: it may not load or score the same",
            ClvlabWarning,
            stacklevel=4,
        )


def _not_found(uri: str, error: Exception) -> str:
    """Why ``uri`` could not be loaded, and in which store it was looked for."""
    store = describe_store(tracking_uri())
    where = "" if Path(uri).exists() else f" from the tracking store {store}"
    return (
        f"cannot load model {uri!r}{where}: {str(error).splitlines()[0]}. Point at the store "
        "that has it with MLFLOW_TRACKING_URI=... or clvlab --tracking-uri URI"
    )


def ui_command(experiment_id: str, run_id: str, configured: str | None = None) -> str:
    """The shell command that opens the MLflow UI on the tracking store (``configured``: a
    run config's ``tracking.uri``, see :func:`clvlab.tracking.store.tracking_uri`), and the
    address of the run in it."""
    uri = tracking_uri(configured)
    if uri.startswith(("http://", "https://")):
        return f"open {uri}/#/experiments/{experiment_id}/runs/{run_id}"
    beside_python = Path(sys.executable).with_name("mlflow")
    mlflow_command = str(beside_python) if beside_python.exists() else "mlflow"
    return (
        f"{mlflow_command} ui --backend-store-uri {uri}   # then open "
        f"http://127.0.0.1:5000/#/experiments/{experiment_id}/runs/{run_id}"
    )
