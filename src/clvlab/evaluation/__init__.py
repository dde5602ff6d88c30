"""Holdout evaluation: metrics, per-customer predictions vs actuals, and plots."""

from clvlab.evaluation.holdout import holdout_metrics, holdout_predictions, holdout_tracking

__all__ = ["holdout_metrics", "holdout_predictions", "holdout_tracking"]
