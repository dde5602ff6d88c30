"""Holdout metrics for purchases, churn and revenue predictions."""

from __future__ import annotations

import numpy as np
import pandas as pd
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
    n = len(actual)
    if n == 0 or actual.sum() == 0:
        return float("nan")
    lorenz = _gains(actual, predicted)[1][1:]
    return float(lorenz.sum() / n - (n + 1) / (2 * n))


def normalized_gini(actual: np.ndarray, predicted: np.ndarray) -> float:
    """Gini of the prediction's ranking over that of the perfect one (1 perfect, 0 random)."""
    best = gini(actual, actual)
    if not best or np.isnan(best):
        return float("nan")
    return gini(actual, predicted) / best


def brier(event: np.ndarray, probability: np.ndarray) -> float:
    """Brier score: mean squared difference between the probability and the 0/1 event."""
    event = np.asarray(event, float)
    return float(np.mean((np.asarray(probability, float) - event) ** 2))


def spearman(actual: np.ndarray, predicted: np.ndarray) -> float:
    """Spearman rank correlation; NaN when either side is constant."""
    from scipy.stats import spearmanr

    actual, predicted = np.asarray(actual, float), np.asarray(predicted, float)
    if np.ptp(actual) == 0 or np.ptp(predicted) == 0:
        return float("nan")
    return float(spearmanr(actual, predicted).statistic)


def top_decile_capture(actual: np.ndarray, predicted: np.ndarray) -> float:
    """Share of the total actual value that falls to the 10 % of customers ranked highest by
    the prediction (ties at the boundary share evenly, as in :func:`gini`)."""
    actual = np.asarray(actual, float)
    total = actual.sum()
    if len(actual) == 0 or total == 0:
        return float("nan")
    return float(np.interp(0.1, *_gains(actual, np.asarray(predicted, float))))


def gains_curve(actual: np.ndarray, predicted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative share of customers (ranked by prediction, highest first) against the
    cumulative share of the actual total they hold, starting at (0, 0)."""
    return _gains(np.asarray(actual, float), np.asarray(predicted, float))


def _gains(actual: np.ndarray, predicted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = len(actual)
    order = np.argsort(-predicted, kind="stable")
    sorted_actual, sorted_pred = actual[order], predicted[order]
    starts = np.flatnonzero(np.r_[True, sorted_pred[1:] != sorted_pred[:-1]])
    sizes = np.diff(np.r_[starts, n])
    means = np.add.reduceat(sorted_actual, starts) / sizes
    share = np.r_[0.0, np.cumsum(np.repeat(means, sizes)) / actual.sum()]
    return np.arange(n + 1) / n, share


def decile_table(actual: np.ndarray, predicted: np.ndarray) -> pd.DataFrame:
    """Customers in ten groups by prediction (1 = highest): size, mean predicted, mean actual
    and the group's share of the actual total."""
    frame = pd.DataFrame({"actual": np.asarray(actual, float), "predicted": predicted})
    ranks = frame["predicted"].rank(method="first", ascending=False)
    frame["decile"] = np.ceil(ranks * 10 / len(frame)).clip(1, 10).astype(int)
    table = frame.groupby("decile").agg(
        customers=("actual", "size"),
        mean_predicted=("predicted", "mean"),
        mean_actual=("actual", "mean"),
        actual_total=("actual", "sum"),
    )
    total = table["actual_total"].sum()
    table["share_of_actual"] = table["actual_total"] / total if total else np.nan
    return table.drop(columns="actual_total")


def calibration_curve(event: np.ndarray, probability: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Reliability table: customers in ``bins`` equal-width probability bins, with the mean
    predicted probability and the observed event rate of each non-empty bin."""
    frame = pd.DataFrame({"event": np.asarray(event, float), "p": np.asarray(probability, float)})
    frame["bin"] = np.minimum((frame["p"] * bins).astype(int), bins - 1)
    return frame.groupby("bin").agg(
        customers=("p", "size"), mean_predicted=("p", "mean"), observed=("event", "mean")
    )
