"""Holdout metrics for purchases, churn and revenue predictions, and their registry.

:data:`METRICS` is the one list of the metrics a backtest reports, as scikit-learn's scorers:
each :class:`Metric` names its target, the columns of the predictions-beside-actuals frame it
reads (see :func:`clvlab.evaluation.holdout.holdout_predictions`), its function and which way
is better. Champion selection, the run config's validation, the registry's promotion rule and
the training job's champion metrics all look metrics up here.

This module imports nothing else of clvlab's and no heavy library at import time: the run
config validates metric names against it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd


def mae(actual: npt.ArrayLike, predicted: npt.ArrayLike) -> float:
    """Mean absolute error."""
    return float(np.mean(np.abs(np.asarray(predicted, float) - np.asarray(actual, float))))


def rmse(actual: npt.ArrayLike, predicted: npt.ArrayLike) -> float:
    """Root mean squared error."""
    return float(np.sqrt(np.mean((np.asarray(predicted, float) - np.asarray(actual, float)) ** 2)))


def bias_pct(actual: npt.ArrayLike, predicted: npt.ArrayLike) -> float:
    """Aggregate bias: (total predicted - total actual) / total actual, in percent."""
    total = float(np.sum(actual))
    if total == 0:
        return float("nan")
    return 100.0 * (float(np.sum(predicted)) - total) / total


def roc_auc(event: npt.ArrayLike, probability: npt.ArrayLike) -> float:
    """ROC-AUC of a probability for a binary event; NaN when only one class occurs.

    The Mann-Whitney form: the chance that an event's probability ranks above a non-event's,
    ties counting half (average ranks), which is the area under the ROC curve as
    scikit-learn's ``roc_auc_score`` computes it, without importing scikit-learn's metrics
    (and SciPy's statistics) into every training process.
    """
    event = np.asarray(event, bool)
    if event.all() or not event.any():
        return float("nan")
    ranks = _average_ranks(probability)
    positives = int(event.sum())
    negatives = len(event) - positives
    wins = float(ranks[event].sum()) - positives * (positives + 1) / 2
    return wins / (positives * negatives)


def gini(actual: npt.ArrayLike, predicted: npt.ArrayLike) -> float:
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


def normalized_gini(actual: npt.ArrayLike, predicted: npt.ArrayLike) -> float:
    """Gini of the prediction's ranking over that of the perfect one (1 perfect, 0 random)."""
    best = gini(actual, actual)
    if not best or np.isnan(best):
        return float("nan")
    return gini(actual, predicted) / best


def brier(event: npt.ArrayLike, probability: npt.ArrayLike) -> float:
    """Brier score: mean squared difference between the probability and the 0/1 event."""
    event = np.asarray(event, float)
    return float(np.mean((np.asarray(probability, float) - event) ** 2))


def spearman(actual: npt.ArrayLike, predicted: npt.ArrayLike) -> float:
    """Spearman rank correlation (the Pearson correlation of average ranks, as SciPy's
    ``spearmanr``); NaN when either side is constant."""
    actual, predicted = np.asarray(actual, float), np.asarray(predicted, float)
    if np.ptp(actual) == 0 or np.ptp(predicted) == 0:
        return float("nan")
    return float(np.corrcoef(_average_ranks(actual), _average_ranks(predicted))[0, 1])


def _average_ranks(values: npt.ArrayLike) -> np.ndarray:
    """Ranks 1..n, tied values sharing their average rank (pandas' ``rank``)."""
    return pd.Series(np.asarray(values, float)).rank(method="average").to_numpy()


def top_decile_capture(actual: npt.ArrayLike, predicted: npt.ArrayLike) -> float:
    """Share of the total actual value that falls to the 10 % of customers ranked highest by
    the prediction (ties at the boundary share evenly, as in :func:`gini`)."""
    actual = np.asarray(actual, float)
    total = actual.sum()
    if len(actual) == 0 or total == 0:
        return float("nan")
    return float(np.interp(0.1, *_gains(actual, np.asarray(predicted, float))))


def gains_curve(actual: npt.ArrayLike, predicted: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
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


def coverage(actual: npt.ArrayLike, lower: npt.ArrayLike, upper: npt.ArrayLike) -> float:
    """Share of the actual values within ``[lower, upper]`` (an interval's coverage)."""
    actual = np.asarray(actual, float)
    inside = (actual >= np.asarray(lower, float)) & (actual <= np.asarray(upper, float))
    return float(np.mean(inside)) if len(actual) else float("nan")


def decile_table(actual: npt.ArrayLike, predicted: npt.ArrayLike) -> pd.DataFrame:
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


def calibration_curve(
    event: npt.ArrayLike, probability: npt.ArrayLike, bins: int = 10
) -> pd.DataFrame:
    """Reliability table: customers in ``bins`` equal-width probability bins, with the mean
    predicted probability and the observed event rate of each non-empty bin."""
    frame = pd.DataFrame({"event": np.asarray(event, float), "p": np.asarray(probability, float)})
    frame["bin"] = np.minimum((frame["p"] * bins).astype(int), bins - 1)
    return frame.groupby("bin").agg(
        customers=("p", "size"), mean_predicted=("p", "mean"), observed=("event", "mean")
    )


@dataclass(frozen=True)
class Metric:
    """One holdout metric of the registry :data:`METRICS`.

    Attributes
    ----------
    name
        ``<target>_<measure>``, e.g. ``purchases_mae`` (``interval_coverage``: of the
        purchase count's interval): the column of the backtest's metric tables and the
        MLflow metric ``holdout.<name>``.
    target
        The prediction it judges: ``purchases``, ``churn`` or ``revenue``.
    actual, predicted
        The columns of the predictions-beside-actuals frame it reads (``predicted`` may be
        several, e.g. an interval's bounds).
    function
        ``function(actual, *predicted) -> float``, given the columns.
    greater_is_better
        Which way is better; None for a measure without a better direction (a signed bias).
    selects
        Whether a run config may name it to choose champions (``selection``) and to decide
        promotions (``registry.metrics``).
    """

    name: str
    target: str
    actual: str
    predicted: str | tuple[str, ...]
    function: Callable[..., float]
    greater_is_better: bool | None
    selects: bool

    @property
    def predicted_columns(self) -> tuple[str, ...]:
        """The predicted column(s) it reads."""
        return (self.predicted,) if isinstance(self.predicted, str) else self.predicted

    def __call__(self, predictions: pd.DataFrame) -> float:
        """The metric of a predictions-beside-actuals frame."""
        predicted = (predictions[column] for column in self.predicted_columns)
        return self.function(predictions[self.actual], *predicted)

    def applies_to(self, predictions: pd.DataFrame) -> bool:
        """Whether ``predictions`` has the columns it reads (revenue only with amounts, the
        interval's coverage only with the interval)."""
        return all(c in predictions for c in (self.actual, *self.predicted_columns))


def _metrics(*metrics: Metric) -> dict[str, Metric]:
    return {metric.name: metric for metric in metrics}


_PURCHASES = ("purchases", "actual_purchases", "predicted_purchases")
_CHURN = ("churn", "actual_churn", "p_churn")
_REVENUE = ("revenue", "actual_revenue", "predicted_revenue")

#: Every holdout metric by name, in the order of the metric tables.
METRICS: dict[str, Metric] = _metrics(
    Metric("purchases_mae", *_PURCHASES, mae, greater_is_better=False, selects=True),
    Metric("purchases_rmse", *_PURCHASES, rmse, greater_is_better=False, selects=True),
    Metric("purchases_bias_pct", *_PURCHASES, bias_pct, greater_is_better=None, selects=False),
    Metric("purchases_spearman", *_PURCHASES, spearman, greater_is_better=True, selects=False),
    Metric(
        "interval_coverage",
        "purchases",
        "actual_purchases",
        ("purchases_lower", "purchases_upper"),
        coverage,
        greater_is_better=None,  # best at the interval's level, not at either end
        selects=False,
    ),
    Metric("churn_roc_auc", *_CHURN, roc_auc, greater_is_better=True, selects=True),
    Metric("churn_brier", *_CHURN, brier, greater_is_better=False, selects=True),
    Metric("revenue_mae", *_REVENUE, mae, greater_is_better=False, selects=True),
    Metric(
        "revenue_normalized_gini", *_REVENUE, normalized_gini, greater_is_better=True, selects=True
    ),
    Metric("revenue_spearman", *_REVENUE, spearman, greater_is_better=True, selects=False),
    Metric(
        "revenue_top_decile_capture",
        *_REVENUE,
        top_decile_capture,
        greater_is_better=True,
        selects=True,
    ),
)

#: The metrics a run config may name in ``selection`` and ``registry.metrics``.
SELECTION_METRICS: tuple[str, ...] = tuple(name for name, m in METRICS.items() if m.selects)


def evaluate(predictions: pd.DataFrame) -> dict[str, float]:
    """Every metric of :data:`METRICS` that applies to a predictions-beside-actuals frame, by
    name, in the registry's order."""
    return {name: m(predictions) for name, m in METRICS.items() if m.applies_to(predictions)}
