"""Holdout evaluation: metrics (one registry), per-customer predictions vs actuals, the
backtest of every candidate, and plots.

The submodules are imported on first use, so that the run config can validate metric names
against :data:`clvlab.evaluation.metrics.METRICS` without importing the models.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "holdout_metrics": "clvlab.evaluation.holdout",
    "holdout_predictions": "clvlab.evaluation.holdout",
    "holdout_tracking": "clvlab.evaluation.holdout",
}

__all__ = ["holdout_metrics", "holdout_predictions", "holdout_tracking"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'clvlab.evaluation' has no attribute {name!r}")
