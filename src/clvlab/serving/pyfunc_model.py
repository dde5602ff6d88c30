"""The MLflow pyfunc form of a :class:`clvlab.CLVModel`, logged as models-from-code.

MLflow runs this file when it loads the model; the fitted state comes from the JSON artifact
``clv_model``, so nothing is unpickled. Input: a transactions table; params ``as_of`` (empty:
the last transaction date in the input), ``horizon_days``, ``explain`` (each target's
reasons, as ``clvlab score --explain``) and ``intervals`` (a level such as 0.9, as ``clvlab
score --intervals``; none: the model's default); output: the score table. The
signature declares ``customer_id`` of any type: integer ids are scored and answered as
integers, string ids as strings (see :func:`clvlab.score`).

Served with ``mlflow models serve``, a request MLflow cannot match to the signature (a missing
column, a value of the wrong type) is answered 400 by MLflow itself; a request clvlab rejects
(a :class:`clvlab.errors.ClvlabError`, e.g. a bad ``as_of``) is re-raised as an
``MlflowException`` with ``INVALID_PARAMETER_VALUE``, so that it is answered 400 with clvlab's
message too, not as an unexpected error with the message buried in a stack trace.
"""

from typing import Any

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel


class CLVPyfunc(PythonModel):
    """Scores transactions with the CLV model stored in the ``clv_model`` artifact."""

    def load_context(self, context) -> None:
        from clvlab.models.saved import load_scoring_model
        from clvlab.tracking.provenance import STATE_ARTIFACT

        self.model = load_scoring_model(context.artifacts[STATE_ARTIFACT])

    # A DataFrame type hint tells MLflow not to infer a schema from hints: the model is logged
    # with an explicit signature instead.
    def predict(
        self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        from clvlab.errors import ClvlabError
        from clvlab.models.contractual.model import ContractualModel
        from clvlab.scoring import score

        params = params or {}
        try:
            if isinstance(self.model, ContractualModel):  # subscriptions; only as_of applies
                return score(self.model, model_input, as_of=_as_of(params.get("as_of")))
            return score(
                self.model,
                model_input,
                as_of=_as_of(params.get("as_of")),
                horizon_days=params.get("horizon_days"),
                explain=bool(params.get("explain", False)),
                intervals=params.get("intervals"),
            )
        except ClvlabError as err:
            raise MlflowException(str(err), error_code=INVALID_PARAMETER_VALUE) from err


def _as_of(value: Any) -> Any:
    """The ``as_of`` param; None (the last transaction date in the request) when empty.
    :func:`clvlab.score` checks the rest."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return value


mlflow.models.set_model(CLVPyfunc())
