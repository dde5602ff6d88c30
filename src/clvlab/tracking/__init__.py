"""Everything that talks to MLflow: runs, the pyfunc model, loading models back.

Which tracking store is used is decided in :mod:`clvlab.tracking.store`: ``MLFLOW_TRACKING_URI``,
else the run config's ``tracking.uri``, else ``~/.clvlab/mlruns/mlflow.db``, wherever clvlab is
run from.
"""

from __future__ import annotations

import importlib.metadata
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from clvlab.errors import ClvlabError
from clvlab.models.clv import CLVModel
from clvlab.outputs import publish
from clvlab.tracking.store import (
    describe_store,
    experiment_id,
    tracking_uri,
    use_tracking_store,
)

if TYPE_CHECKING:
    from clvlab.config import RunConfig
    from clvlab.evaluation.backtest import BacktestResult

_PYFUNC_CODE = Path(__file__).with_name("pyfunc_model.py")
#: clvlab's own source, packed into every model (MLflow's code_paths): a scoring environment
#: needs only the third-party requirements below, not clvlab installed.
_PACKAGE_SOURCE = Path(__file__).resolve().parents[1]
_MODEL_ARTIFACT = "clv_model.json"
_CONFIG_ARTIFACT = "run_config.yaml"
#: Written into a model folder exported from the registry: which version it is.
_SOURCE_FILE = "clvlab_source.json"
#: The registry alias that marks the version in use.
CHAMPION = "champion"
#: Third-party packages a scoring environment needs, pinned to the versions that trained the
#: model.
_REQUIREMENTS = [
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


def _column_type(column: pd.Series) -> str:
    return "double" if pd.api.types.is_numeric_dtype(column) else "string"


def _signature(model: CLVModel, example: pd.DataFrame) -> Any:
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    inputs = [ColSpec("string", "customer_id"), ColSpec("datetime", "date")]
    if model.spend is not None:
        inputs.append(ColSpec("double", "amount"))
    inputs += [ColSpec(_column_type(example[c]), c) for c in model.covariates]
    params = ParamSchema(
        [ParamSpec("as_of", "string", ""), ParamSpec("horizon_days", "double", model.horizon_days)]
    )
    return ModelSignature(inputs=Schema(inputs), params=params)


def _requirements() -> list[str]:
    return [f"{name}=={importlib.metadata.version(name)}" for name in _REQUIREMENTS]


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

    versions = {name: importlib.metadata.version(name) for name in (*_REQUIREMENTS, "lifetimes")}
    return {"python": platform.python_version(), "platform": platform.platform(), **versions}


def _git_commit() -> str:
    import subprocess

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(_PACKAGE_SOURCE), *args],
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


def _write_model(
    model: CLVModel,
    folder: Path,
    input_example: pd.DataFrame,
    config: RunConfig | None = None,
    tags: dict[str, str] | None = None,
) -> None:
    """Save the pyfunc model to ``folder`` (which must not exist): the fitted state as JSON,
    the resolved run config, clvlab's source, the signature, an input example, the pinned
    requirements and the provenance ``tags`` (in the MLmodel file's metadata)."""
    import mlflow
    import yaml

    with tempfile.TemporaryDirectory() as scratch:
        state = Path(scratch) / _MODEL_ARTIFACT
        model.save(state)
        artifacts = {"clv_model": str(state)}
        if config is not None:
            artifacts["run_config"] = str(Path(scratch) / _CONFIG_ARTIFACT)
            Path(artifacts["run_config"]).write_text(
                yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
            )
        mlflow.pyfunc.save_model(
            path=str(folder),
            python_model=str(_PYFUNC_CODE),
            artifacts=artifacts,
            code_paths=[str(_PACKAGE_SOURCE)],
            signature=_signature(model, input_example),
            input_example=input_example,
            pip_requirements=_requirements(),
            metadata=dict(tags or {}),
        )


def log_run(
    config: RunConfig,
    *,
    data_report: dict[str, Any],
    backtest: BacktestResult,
    champion_metrics: dict[str, float],
    fitted_params: dict[str, dict[str, float]],
    model: CLVModel,
    input_example: pd.DataFrame,
    tags: dict[str, str],
) -> tuple[str, str, str]:
    """Log one training run: config, fitted parameters, data report, package versions
    (``environment.json``), the backtest (its report, figures and one nested run per candidate
    with its validation and holdout metrics), the scoring model's holdout metrics
    (``holdout.<metric>``), the provenance ``tags`` (see :func:`provenance`) and the pyfunc
    model.

    ``model.version`` is set to the model's URI, ``runs:/<run_id>/model``, before it is
    logged.

    Returns
    -------
    (run_id, model_uri, experiment_id)
    """
    import mlflow

    use_tracking_store(config.tracking.uri, create=True)
    experiment = experiment_id(config.experiment_name, config.tracking.uri)
    with mlflow.start_run(experiment_id=experiment, run_name=config.name) as run:
        run_id = run.info.run_id
        model.version = f"runs:/{run_id}/model"
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
                "clvlab.model": model.label(),
                **{f"clvlab.champion.{t}": name for t, name in backtest.champions.items()},
            }
        )
        mlflow.log_dict(data_report, "data_report.json")
        mlflow.log_dict(environment(), "environment.json")
        mlflow.log_metrics({f"holdout.{k}": v for k, v in champion_metrics.items()})
        mlflow.log_dict(backtest.report(), "backtest_report.json")
        for name, figure in backtest.figures.items():
            mlflow.log_figure(figure, name)
        _log_candidates(backtest, experiment)
        with tempfile.TemporaryDirectory() as scratch:
            folder = Path(scratch) / "model"
            _write_model(model, folder, input_example, config, tags)
            mlflow.log_artifacts(str(folder), artifact_path="model")
    return run_id, f"runs:/{run_id}/model", experiment


def _log_candidates(backtest: BacktestResult, experiment_id: str) -> None:
    """One nested run per backtest candidate: its metrics on both windows, the targets it is
    champion of, or why it was skipped."""
    import mlflow

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
            mlflow.log_metrics(
                {
                    f"{window}.{metric}": float(value)
                    for window, table in tables.items()
                    if candidate in table.index
                    for metric, value in table.loc[candidate].items()
                    if pd.notna(value)
                }
            )


def export_model(
    model: CLVModel,
    folder: str | Path,
    input_example: pd.DataFrame,
    config: RunConfig | None = None,
    tags: dict[str, str] | None = None,
) -> Path:
    """Save the pyfunc model to a local folder, replacing any previous export atomically
    (``config`` and ``tags`` as in :func:`log_run`)."""
    target = Path(folder).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        _write_model(model, staging / "model", input_example, config, tags)
        publish(staging / "model", target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


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
    import mlflow

    uri = resolve_model_uri(model, alias)
    target = Path(folder).resolve()
    if target.exists() and not (target / "MLmodel").is_file():
        raise ClvlabError(
            f"{target} exists and is not a model folder (no MLmodel file): choose another "
            "folder, or remove it"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        try:
            mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(staging / "model"))
        except Exception as exc:  # MLflow raises many types for a missing model
            raise ClvlabError(_not_found(uri, exc)) from None
        (staging / "model" / _SOURCE_FILE).write_text(json.dumps({"model_uri": uri}) + "\n")
        publish(staging / "model", target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return uri, target


def resolve_model_uri(model: str | Path, alias: str = CHAMPION) -> str:
    """The exact MLflow URI of ``model``: ``NAME`` or ``NAME@ALIAS`` and ``models:/NAME@ALIAS``
    become ``models:/NAME/VERSION`` (looked up in the tracking store); other URIs and
    folders stay as they are."""
    text = str(model)
    if Path(text).exists() or "://" in text or text.startswith("runs:/"):
        return text
    name = text.removeprefix("models:/")
    if text.startswith("models:/") and "@" not in name:
        return text  # models:/NAME/VERSION
    name, _, wanted = name.partition("@")
    wanted = wanted or alias
    import mlflow

    use_tracking_store()
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
    """Load a CLV model from an MLflow model URI (``runs:/...``, ``models:/NAME@alias``,
    ``models:/NAME/VERSION``), a local model folder written by :func:`export_model` or
    :func:`export_registered`, or a ``clv_model.json`` file.

    The model's ``version`` (the score table's ``model_version``) says where it came from:
    ``models:/NAME/VERSION`` for a registered model (also when exported from the registry),
    else ``runs:/RUN_ID/model``.
    """
    path = Path(uri)
    if path.suffix == ".json" and path.is_file():
        return CLVModel.load(path)
    if path.exists() and not (path / "MLmodel").is_file():
        raise ClvlabError(f"{path} is not a model folder (no MLmodel file in it)")
    import mlflow

    if path.exists():  # a folder needs no tracking store
        exact = str(path)
        source = path / _SOURCE_FILE
        registered = json.loads(source.read_text())["model_uri"] if source.is_file() else None
    else:
        use_tracking_store()
        exact = resolve_model_uri(str(uri))
        registered = exact if exact.startswith("models:/") else None
    try:
        loaded = mlflow.pyfunc.load_model(exact)
    except Exception as exc:  # MLflow raises many types for a bad URI; report them alike
        raise ClvlabError(_not_found(exact, exc)) from None
    model: CLVModel = loaded.unwrap_python_model().model
    if registered is not None:
        model.version = registered
    return model


def _not_found(uri: str, error: Exception) -> str:
    """Why ``uri`` could not be loaded, and in which store it was looked for."""
    store = describe_store(tracking_uri())
    where = "" if Path(uri).exists() else f" from the tracking store {store}"
    return (
        f"cannot load model {uri!r}{where}: {str(error).splitlines()[0]}. Point at the store "
        "that has it with MLFLOW_TRACKING_URI=... or clvlab --tracking-uri URI"
    )


def ui_command(experiment_id: str, run_id: str) -> str:
    """The shell command that opens the MLflow UI, and the address of the run in it."""
    uri = tracking_uri()
    if uri.startswith(("http://", "https://")):
        return f"open {uri}/#/experiments/{experiment_id}/runs/{run_id}"
    beside_python = Path(sys.executable).with_name("mlflow")
    mlflow_command = str(beside_python) if beside_python.exists() else "mlflow"
    return (
        f"{mlflow_command} ui --backend-store-uri {uri}   # then open "
        f"http://127.0.0.1:5000/#/experiments/{experiment_id}/runs/{run_id}"
    )
