"""The MLflow pyfunc form of a :class:`clvlab.CLVModel`, logged as models-from-code.

MLflow runs this file when it loads the model; the fitted state comes from the JSON artifact
``clv_model``, so nothing is unpickled. Input: a transactions table; params ``as_of`` (empty:
the last transaction date in the input) and ``horizon_days``; output: the score table.
"""

from typing import Any

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel


class CLVPyfunc(PythonModel):
    """Scores transactions with the CLV model stored in the ``clv_model`` artifact."""

    def load_context(self, context) -> None:
        from clvlab.models.clv import CLVModel

        self.model = CLVModel.load(context.artifacts["clv_model"])

    # A DataFrame type hint tells MLflow not to infer a schema from hints: the model is logged
    # with an explicit signature instead.
    def predict(
        self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        from clvlab.scoring import score

        params = params or {}
        return score(
            self.model,
            model_input,
            as_of=params.get("as_of") or None,
            horizon_days=params.get("horizon_days"),
        )


mlflow.models.set_model(CLVPyfunc())
