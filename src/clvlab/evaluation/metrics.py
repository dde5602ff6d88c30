"""Holdout metrics for purchases, churn and revenue predictions."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score


def mae(actual: np.ndarray, predicted: np.ndarray) -> float:
    """Mean absolute error."""
    return float(np.mean(np.abs(np.asarray(predicted, float) - np.asarray(actual, float))))


def rmse(actual: np.ndarray, predicted: np.ndarray) -> float:
    """Root mean squared error."""
    return float(np.sqrt(np.mean((np.asarray(predicted, float) - np.asarray(actual, float)) ** 2)))


def bias_pct(actual: np.ndarray, predicted: np.ndarray) -> float:
    """Aggregate bias: (total predicted - total actual) / total actual, in percent."""
    total = float(np.sum(actual))
    if total == 0:
        return float("nan")
    return 100.0 * (float(np.sum(predicted)) - total) / total


def roc_auc(event: np.ndarray, probability: np.ndarray) -> float:
    """ROC-AUC of a probability for a binary event; NaN when only one class occurs."""
    event = np.asarray(event, bool)
    if event.all() or not event.any():
        return float("nan")
    return float(roc_auc_score(event, probability))


def gini(actual: np.ndarray, predicted: np.ndarray) -> float:
    """Gini coefficient of ``actual`` ordered by ``predicted`` (descending).

    Customers with equal predictions are one group whose actual values are spread evenly, so
    the result is the expectation over the orderings of ties rather than an artefact of one.
    """
    actual = np.asarray(actual, float)
    predicted = np.asarray(predicted, float)
    n, total = len(actual), actual.sum()
    if n == 0 or total == 0:
        return float("nan")
    order = np.argsort(-predicted, kind="stable")
    sorted_actual, sorted_pred = actual[order], predicted[order]
    # Replace each tie group's actual values by the group mean.
    starts = np.flatnonzero(np.r_[True, sorted_pred[1:] != sorted_pred[:-1]])
    sizes = np.diff(np.r_[starts, n])
    means = np.add.reduceat(sorted_actual, starts) / sizes
    lorenz = np.cumsum(np.repeat(means, sizes)) / total
    return float(lorenz.sum() / n - (n + 1) / (2 * n))


def normalized_gini(actual: np.ndarray, predicted: np.ndarray) -> float:
    """Gini of the prediction's ranking over that of the perfect one (1 perfect, 0 random)."""
    best = gini(actual, actual)
    if not best or np.isnan(best):
        return float("nan")
    return gini(actual, predicted) / best
