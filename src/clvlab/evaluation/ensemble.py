r"""The ensemble candidate: per target, a convex blend of the other candidates' predictions.

Stacking as in Wolpert (1992) and Breiman (1996), constrained so that the blend of
expectations is still an expectation and the blend of probabilities a probability: each
target's prediction is :math:`\sum_k w_k \hat y_k` with :math:`w_k \ge 0` and
:math:`\sum_k w_k = 1`. The weights minimise, on the validation window only, the loss that
matches the target's selection metric: absolute error for ``*_mae``, log-loss for churn,
squared error otherwise.

Judged on the window it is fitted on, a blend would look better than it is. So its
validation predictions are out of fold: the customers are split into :data:`FOLDS` groups by
a hash of their id, and each group is predicted with weights fitted on the others. It becomes
a target's champion only if those predictions beat every single candidate there. Its holdout
predictions use the weights fitted on the whole validation window (reported only, as every
candidate's), and so does the scoring model.

Weights under :data:`MIN_WEIGHT` are dropped (the rest rescaled to sum to 1): a blend that
keeps one candidate is that candidate, and ties with it rather than winning by rounding.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from clvlab.evaluation.metrics import METRICS

#: Folds of the out-of-fold validation predictions.
FOLDS = 5
#: Weights below this are dropped: a member that moves the blend by less than 1 % is noise
#: (and the smoothed absolute loss leaves such weights where the exact one has none).
MIN_WEIGHT = 0.01
#: Probabilities are clipped to [EPSILON, 1 - EPSILON] in the log-loss.
_EPSILON = 1e-9


@dataclass(frozen=True)
class Blend:
    """Fitted blend weights: target -> candidate name -> weight (each target's sum to 1).

    Attributes
    ----------
    weights
        Only the candidates kept (weight at least :data:`MIN_WEIGHT`), largest first.
    """

    weights: dict[str, dict[str, float]]

    def predict(self, predictions: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
        """The blend of candidates' predictions-beside-actuals frames (the same customers, in
        the first frame's order), as such a frame: the actuals, and the predicted column of
        each blended target whose members all predict it (no other predicted column, so the
        blend has no metric for a target it does not predict)."""
        frames = list(predictions.values())
        first = frames[0]
        blended = first.drop(columns=[c for c in first if c in _PREDICTED_COLUMNS])
        for target, weights in self.weights.items():
            column, actual = _columns(target)
            if not all(column in predictions[name] for name in weights):
                continue
            if actual not in blended:
                having = [frame for frame in frames if actual in frame]
                if not having:
                    continue
                blended[actual] = having[0][actual].reindex(first.index)
            blended[column] = sum(
                weight * predictions[name][column].reindex(first.index).to_numpy(dtype=float)
                for name, weight in weights.items()
            )
        order = [c for c in first if c in blended] + [c for c in blended if c not in first]
        return blended[order]


def fit_blend(predictions: Mapping[str, pd.DataFrame], selection: Mapping[str, str]) -> Blend:
    """Blend weights per target of ``selection`` (target -> the metric choosing its
    champion), from candidates' predictions-beside-actuals frames on the same customers.
    A target takes the candidates that predict it for every customer; one with fewer than two
    gets no blend."""
    weights = {}
    index = next(iter(predictions.values())).index
    for target, metric in selection.items():
        column, actual = _columns(target)
        members = [
            name
            for name, frame in predictions.items()
            if column in frame and actual in frame and np.isfinite(frame[column]).all()
        ]
        if len(members) < 2 or len(index) == 0:
            continue
        matrix = np.column_stack(
            [predictions[name][column].reindex(index).to_numpy(float) for name in members]
        )
        observed = predictions[members[0]][actual].reindex(index).to_numpy(float)
        fitted = convex_weights(matrix, observed, _loss(target, metric))
        kept = {name: float(w) for name, w in zip(members, fitted, strict=True) if w >= MIN_WEIGHT}
        total = sum(kept.values())
        weights[target] = {
            name: w / total for name, w in sorted(kept.items(), key=lambda item: -item[1])
        }
    return Blend(weights)


def out_of_fold(
    predictions: Mapping[str, pd.DataFrame], selection: Mapping[str, str]
) -> pd.DataFrame:
    """The blend's predictions-beside-actuals frame in which each customer's prediction comes
    from weights fitted without the customer's fold (:data:`FOLDS` folds by a hash of the
    customer id), in the first frame's order."""
    index = next(iter(predictions.values())).index
    aligned = {name: frame.reindex(index) for name, frame in predictions.items()}
    folds = fold_of(index)
    parts = []
    for fold in range(FOLDS):
        inside = folds == fold
        if not inside.any():
            continue
        blend = fit_blend({name: frame[~inside] for name, frame in aligned.items()}, selection)
        parts.append(blend.predict({name: frame[inside] for name, frame in aligned.items()}))
    return pd.concat(parts).reindex(index)


def fold_of(ids: pd.Index) -> np.ndarray:
    """Each customer's fold, 0 to :data:`FOLDS` - 1, from a CRC-32 of the id's text: the same
    customers fall in the same fold in every run and on every machine."""
    return np.array([zlib.crc32(str(i).encode()) % FOLDS for i in ids], dtype=np.int64)


def convex_weights(matrix: np.ndarray, actual: np.ndarray, loss: str) -> np.ndarray:
    r"""Weights ``w >= 0``, ``sum(w) = 1`` minimising the ``loss`` (``"absolute"``,
    ``"squared"`` or ``"log"``) of ``matrix @ w`` against ``actual``.

    The absolute error :math:`|r|` is smoothed to :math:`\sqrt{r^2 + (\delta s)^2}`
    (:math:`s` the mean absolute actual value), which exceeds it by at most
    :math:`\delta s`, with :math:`\delta` from 0.1 down to 0.001, each solution starting
    the next: weights within about 0.01 of the exact linear program's, in a fraction of a
    second where that program takes seconds.
    """
    n, k = matrix.shape
    actual = np.asarray(actual, dtype=float)
    if loss == "log":
        probability = np.clip(matrix, _EPSILON, 1.0 - _EPSILON)

        def log_loss(w: np.ndarray) -> tuple[float, np.ndarray]:
            p = np.clip(probability @ w, _EPSILON, 1.0 - _EPSILON)
            value = -np.mean(actual * np.log(p) + (1.0 - actual) * np.log1p(-p))
            return float(value), probability.T @ (-(actual / p - (1.0 - actual) / (1.0 - p)) / n)

        return _on_simplex(log_loss, np.full(k, 1.0 / k))
    # The unit of the errors: the actuals' mean, or the predictions' when every actual is 0.
    scale = max(float(np.mean(np.abs(actual))), float(np.mean(np.abs(matrix))), 1e-12)
    if loss == "squared":

        def squared(w: np.ndarray) -> tuple[float, np.ndarray]:
            residual = (matrix @ w - actual) / scale
            return float(residual @ residual) / n, 2.0 * (matrix.T @ residual) / (n * scale)

        return _on_simplex(squared, np.full(k, 1.0 / k))
    weights = np.full(k, 1.0 / k)
    for delta in (1e-1, 1e-2, 1e-3):

        def smooth_absolute(w: np.ndarray, delta: float = delta) -> tuple[float, np.ndarray]:
            residual = (matrix @ w - actual) / scale
            root = np.sqrt(residual**2 + delta**2)
            return float(np.mean(root)), matrix.T @ (residual / root) / (n * scale)

        weights = _on_simplex(smooth_absolute, weights)
    return weights


def _best_vertex(objective: Callable[[np.ndarray], tuple[float, np.ndarray]], k: int) -> np.ndarray:
    """All weight on the one member with the smallest ``objective``."""
    values = [objective(vertex)[0] for vertex in np.eye(k)]
    return np.eye(k)[int(np.nanargmin(values))]


def _on_simplex(
    objective: Callable[[np.ndarray], tuple[float, np.ndarray]], start: np.ndarray
) -> np.ndarray:
    """The minimum of a smooth convex ``objective`` (value and gradient) over the weights
    ``w >= 0``, ``sum(w) = 1`` (SLSQP from ``start``); all on the best member if SLSQP
    fails."""
    from scipy.optimize import minimize

    k = len(start)
    result = minimize(
        objective,
        start,
        jac=True,
        method="SLSQP",
        bounds=[(0.0, 1.0)] * k,
        constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0, "jac": lambda _: np.ones(k)}],
        options={"ftol": 1e-12, "maxiter": 500},
    )
    weights = np.clip(result.x, 0.0, None)
    if not result.success or not np.isfinite(weights).all() or weights.sum() <= 0:
        return _best_vertex(objective, k)
    return weights / weights.sum()


def _columns(target: str) -> tuple[str, str]:
    """The predicted and actual columns of ``target`` in a predictions-beside-actuals
    frame."""
    return next((m.predicted_columns[0], m.actual) for m in METRICS.values() if m.target == target)


#: Every predicted column of a predictions-beside-actuals frame (an ensemble has no
#: interval: a member's is not the blend's).
_PREDICTED_COLUMNS = {column for metric in METRICS.values() for column in metric.predicted_columns}


def _loss(target: str, metric: str) -> str:
    """The loss whose minimum suits ``metric``."""
    if target == "churn":
        return "log"
    return "absolute" if metric.endswith("_mae") else "squared"
