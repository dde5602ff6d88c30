"""The pyfunc form of a :class:`clvlab.CLVModel`: the model folder MLflow logs, serves and
loads back, written here and exported to local folders.

The folder runs :mod:`clvlab.serving.pyfunc_model` (models-from-code), which scores with
:func:`clvlab.score`; it holds the fitted state as JSON, the resolved run config, clvlab's own
source (MLflow's code_paths: a scoring environment needs only the pinned third-party
requirements, not clvlab installed), the signature with its params and an input example.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from clvlab.models.clv import CLVModel
from clvlab.models.contractual.model import ContractualModel
from clvlab.outputs import write_folder
from clvlab.tracking.provenance import PACKAGE_SOURCE, STATE_ARTIFACT, pinned_requirements

if TYPE_CHECKING:
    from clvlab.config import RunConfig

PYFUNC_CODE = Path(__file__).with_name("pyfunc_model.py")
#: The model folder's artifacts: the fitted state and the resolved run config.
MODEL_ARTIFACT = "clv_model.json"
CONFIG_ARTIFACT = "run_config.yaml"


def _column_type(column: pd.Series) -> str:
    return "double" if pd.api.types.is_numeric_dtype(column) else "string"


def _signature(model: CLVModel | ContractualModel, example: pd.DataFrame) -> Any:
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema, TensorSpec
    from mlflow.types.schema import AnyType

    if isinstance(model, ContractualModel):  # a subscription table, by its own column names
        names = model.columns
        columns = [ColSpec(AnyType(), names.get("customer_id") or "customer_id")]
        columns += [ColSpec("string", names.get(key) or key) for key in ("start", "end")]
        if names.get("price"):
            columns.append(ColSpec("double", str(names["price"])))
        return ModelSignature(
            inputs=Schema(columns), params=ParamSchema([ParamSpec("as_of", "string", "")])
        )

    # Ids are keys, not inputs of the model: integers or strings, answered in the type sent.
    inputs: list[ColSpec | TensorSpec] = [
        ColSpec(AnyType(), "customer_id"),
        ColSpec("datetime", "date"),
    ]
    if model.spend is not None:
        inputs.append(ColSpec("double", "amount"))
    inputs += [ColSpec(_column_type(example[c]), c) for c in model.covariates]
    params = ParamSchema(
        [
            ParamSpec("as_of", "string", ""),
            ParamSpec("horizon_days", "double", model.horizon_days),
            ParamSpec("explain", "boolean", False),
            ParamSpec("intervals", "double", None),
        ]
    )
    return ModelSignature(inputs=Schema(inputs), params=params)


def write_model(
    model: CLVModel | ContractualModel,
    folder: Path,
    input_example: pd.DataFrame,
    config: RunConfig | None = None,
    tags: dict[str, str] | None = None,
) -> None:
    """Save the pyfunc model to ``folder`` (which must not exist): the fitted state as JSON,
    the resolved run config, clvlab's source, the signature, an input example, the pinned
    requirements and the provenance ``tags`` (in the MLmodel file's metadata).

    Training writes it into its run (:func:`clvlab.tracking.log_run` logs the folder);
    :func:`export_model` into a local folder."""
    import mlflow
    import yaml

    with tempfile.TemporaryDirectory() as scratch:
        state = Path(scratch) / MODEL_ARTIFACT
        model.save(state)
        artifacts = {STATE_ARTIFACT: str(state)}
        if config is not None:
            artifacts["run_config"] = str(Path(scratch) / CONFIG_ARTIFACT)
            Path(artifacts["run_config"]).write_text(
                yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
            )
        mlflow.pyfunc.save_model(
            path=str(folder),
            python_model=str(PYFUNC_CODE),
            artifacts=artifacts,
            code_paths=[str(PACKAGE_SOURCE)],
            signature=_signature(model, input_example),
            input_example=input_example,
            pip_requirements=pinned_requirements(),
            metadata=dict(tags or {}),
        )


def export_model(
    model: CLVModel | ContractualModel,
    folder: str | Path,
    input_example: pd.DataFrame,
    config: RunConfig | None = None,
    tags: dict[str, str] | None = None,
) -> Path:
    """Save the pyfunc model to a local folder, replacing any previous export atomically
    (``config`` and ``tags`` as in :func:`write_model`)."""
    return write_folder(
        Path(folder).resolve(),
        lambda built: write_model(model, built, input_example, config, tags),
    )
