"""Saved scoring models (JSON) of either setting: a :class:`~clvlab.models.clv.CLVModel`
(transactions) or a :class:`~clvlab.models.contractual.model.ContractualModel`
(subscriptions), told apart by the format they were saved in."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeAlias

from clvlab.models.clv import CLVModel
from clvlab.models.contractual.model import ContractualModel, is_contractual

#: A model :func:`clvlab.score` scores with.
ScoringModel: TypeAlias = CLVModel | ContractualModel


def model_from_dict(state: dict[str, Any]) -> ScoringModel:
    """The model a saved JSON state describes, of either setting."""
    if is_contractual(state):
        return ContractualModel.from_dict(state)
    return CLVModel.from_dict(state)


def load_scoring_model(path: str | Path) -> ScoringModel:
    """Read a model saved as JSON (``clv_model.json``), of either setting."""
    return model_from_dict(json.loads(Path(path).read_text()))
