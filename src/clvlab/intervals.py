"""How sure each score is: intervals by parametric bootstrap, and the predictive interval of
the number of purchases (``clvlab.score(..., intervals=0.9)``, ``clvlab score --intervals
0.9``, ``scoring.intervals: 0.9`` in a run config).

Parameter uncertainty
    The fitted parameters are estimates. Their sampling distribution is taken to be the
    normal distribution of the log-parameters with the fit's covariance (the inverse Hessian
    of the log-likelihood whose diagonal gives the standard errors; see
    :attr:`clvlab.models.btyd.BTYDEstimator.covariance_`). :data:`DRAWS` parameter vectors
    are drawn from it for each BTYD model of the score (the targets' purchase models and
    Gamma-Gamma; each model's draws are the same on every call, so a customer's interval does
    not depend on who else is scored), and every customer's ``p_alive``,
    ``expected_purchases`` and ``expected_revenue`` are computed with each draw:
    ``<column>_lower`` and ``<column>_upper`` are the equal-tailed quantiles of the draws
    (5 % and 95 % for a 90 % interval). ``clv`` is ``expected_revenue`` discounted; its
    interval is that of ``expected_revenue`` times the customer's discount factor
    (``clv / expected_revenue``) at the point estimate: when the purchases come within the
    horizon moves far less with the parameters than how many there are.

    A target that a GBM, the historical formula or an ensemble predicts has no parameters to
    draw: its interval is its point prediction times the relative interval (lower / point,
    upper / point) of the target's BTYD model, the one that stands in for it.

    The draws are vectorised: a customer's prediction given alive depends on his frequency
    and T only (:func:`clvlab.models.clv.per_alive_history`), so each draw evaluates the
    costly functions once per distinct pair and the probability of being alive per customer.

Process uncertainty
    ``purchases_lower`` and ``purchases_upper`` bound the number of purchases itself within
    the horizon, which is what a holdout can check: whole numbers from P(X(t) = n | history)
    averaged over the first :data:`COUNT_DRAWS` parameter draws (parameter plus process
    uncertainty; the parameters' share of it is small, and an average of probabilities over
    10 draws varies little from one set of draws to another). The lower bound is the
    smallest n whose cumulative probability exceeds (1 - level) / 2; the upper bound the
    smallest n with P(lower <= X <= upper) >= level (so when the lower bound is 0 the whole
    1 - level lies above the upper bound). Training reports the share of holdout customers
    inside it (``holdout.interval_coverage``, at ``scoring.intervals`` or 0.9).
"""

from __future__ import annotations

import copy
import numbers
import warnings
import weakref
import zlib
from collections.abc import Callable, Mapping
from functools import partial

import numpy as np
import pandas as pd

from clvlab.errors import ClvlabError, ClvlabWarning, DataError
from clvlab.models.btyd import BTYDEstimator, PurchaseModel
from clvlab.models.clv import BTYD, CLVModel, TargetSource, distinct_alive_histories

#: The level of the intervals a backtest checks when the run config sets none.
DEFAULT_LEVEL = 0.9
#: Parameter draws per BTYD model.
DRAWS = 200
#: Of those, the draws the predictive distribution of the purchase count averages over.
COUNT_DRAWS = 10
#: The columns that get ``_lower`` and ``_upper`` bounds from the parameter draws.
BOUNDED = ("p_alive", "expected_purchases", "expected_revenue", "clv")
#: The bounds of the purchase count (whole numbers).
COUNT_BOUNDS = ("purchases_lower", "purchases_upper")
#: Every interval column of a score table, in order.
INTERVAL_COLUMNS = [
    *(f"{column}_{side}" for column in BOUNDED for side in ("lower", "upper")),
    *COUNT_BOUNDS,
]
#: Customers evaluated together: the draws of a block are held at once (DRAWS x block).
_BLOCK = 25_000
#: The seed of every model's draws.
_SEED = 0
#: Counts whose probabilities are computed in the first two calls (then twice as many as in
#: the call before).
_FIRST_COUNTS = 1
#: Rounding the cumulative probabilities may leave short of ``level`` (a sum of many terms).
_CDF_TOLERANCE = 1e-12
#: Log-parameters are drawn within these bounds (exp of them stays finite and positive).
_LOG_LIMIT = 700.0

#: Each estimator's draws, while it lives: (its params_ when drawn, the draws).
_DRAWN: weakref.WeakKeyDictionary[BTYDEstimator, tuple[pd.Series, list[BTYDEstimator]]] = (
    weakref.WeakKeyDictionary()
)


def check_level(level: object) -> float:
    """``level`` as a float, or a :class:`~clvlab.DataError` unless it is strictly between 0
    and 1."""
    if isinstance(level, bool) or not isinstance(level, numbers.Real) or not 0 < float(level) < 1:
        raise DataError(
            "an interval level is a probability strictly between 0 and 1, e.g. 0.9 for 90 % "
            f"intervals; got {level!r}"
        )
    return float(level)


def parameter_draws(model: BTYDEstimator, n_draws: int = DRAWS) -> list[BTYDEstimator]:
    """Copies of a fitted ``model`` with parameters drawn from their sampling distribution:
    the log-parameters normal around the fitted ones with the fit's covariance (parameters
    without a standard error stay at their fitted value). The same draws on every call.

    Raises
    ------
    ClvlabError
        If the model has no covariance (saved by an earlier clvlab): train it again.
    """
    cov = getattr(model, "covariance_", None)
    if cov is None:
        raise ClvlabError(
            f"{type(model).__name__} was saved without the covariance of its parameters (by an "
            "earlier clvlab), which score intervals draw from: train the model again"
        )
    params = model.params_.to_numpy(dtype=float)
    matrix = cov.to_numpy(dtype=float)
    variance = np.diag(matrix)
    free = np.isfinite(variance) & (variance > 0)
    logs = np.tile(np.log(params), (n_draws, 1))
    if free.any():
        log_cov = matrix[np.ix_(free, free)] / np.outer(params[free], params[free])
        values, vectors = np.linalg.eigh(log_cov)
        root = vectors * np.sqrt(np.clip(values, 0.0, None))
        # A stream of its own per model (by its class), so that the draws of the models of
        # one score are independent.
        stream = zlib.crc32(type(model).__name__.encode())
        normal = np.random.default_rng([_SEED, stream]).standard_normal((n_draws, int(free.sum())))
        logs[:, free] += normal @ root.T
    names = list(model.params_.index)
    draws = []
    for row in np.exp(np.clip(logs, -_LOG_LIMIT, _LOG_LIMIT)):
        draw = copy.copy(model)
        draw.params_ = pd.Series(row, index=names, name="params", dtype=float)
        draws.append(draw)
    return draws


def _draws_of(model: BTYDEstimator) -> list[BTYDEstimator]:
    """:func:`parameter_draws` of ``model``, drawn once while its parameters stay."""
    drawn = _DRAWN.get(model)
    if drawn is None or drawn[0] is not model.params_:
        if not np.isfinite(model.stderr_.to_numpy(dtype=float)).any():
            warnings.warn(
                f"{type(model).__name__}'s parameters have no standard errors (the data do not "
                "identify them; see the fit's warning): its score intervals show no parameter "
                "uncertainty",
                ClvlabWarning,
                stacklevel=4,
            )
        drawn = _DRAWN[model] = (model.params_, parameter_draws(model))
    return drawn[1]


class _Histories:
    """A block of customer histories and, where a model allows (see
    :func:`clvlab.models.clv.per_alive_history`), one history per distinct ``(frequency,
    T)``: a prediction about purchases after T is then its value at the customer's distinct
    history times the ratio of the probabilities of being alive (:meth:`scale`)."""

    def __init__(self, x: np.ndarray, t_x: np.ndarray, age: np.ndarray) -> None:
        self.own = (x, t_x, age)
        self.codes, *pairs = distinct_alive_histories(x, age)
        self.pairs = tuple(pairs)

    def __len__(self) -> int:
        return len(self.codes)

    @staticmethod
    def shared(model: BTYDEstimator) -> bool:
        return isinstance(model, PurchaseModel) and not model.future_needs_recency()

    def scale(self, model: BTYDEstimator, alive: np.ndarray) -> np.ndarray | None:
        """Each customer's P(alive) (``alive``, from ``model``) over that of his distinct
        history; None where ``model`` is evaluated at every customer's own history."""
        if not self.shared(model):
            return None
        at_pair = model.p_alive(*self.pairs)[self.codes]  # type: ignore[attr-defined]
        return np.divide(alive, at_pair, out=np.zeros_like(alive), where=at_pair > 0)

    def evaluate(
        self,
        scale: np.ndarray | None,
        predict: Callable[..., np.ndarray],
        customers: np.ndarray | None = None,
    ) -> np.ndarray:
        """``predict(frequency, recency, T)`` (a prediction about purchases after T, 0 for a
        customer who dropped out) of every customer, or of the ``customers`` given (indices),
        evaluated at the distinct histories when ``scale`` is given."""
        if scale is None:
            own = self.own if customers is None else (v[customers] for v in self.own)
            return predict(*own)
        if customers is None:
            return predict(*self.pairs)[..., self.codes] * scale
        used, codes = np.unique(self.codes[customers], return_inverse=True)
        values = predict(*(values[used] for values in self.pairs))
        return values[..., codes] * scale[customers]


def score_intervals(
    model: CLVModel,
    summary: Mapping[str, np.ndarray] | pd.DataFrame,
    predictions: Mapping[str, np.ndarray],
    horizon_days: float | None,
    level: float,
    *,
    gbm_inputs: bool = False,
) -> dict[str, np.ndarray]:
    """The interval columns (:data:`INTERVAL_COLUMNS`) of customers with RFM ``summary`` (in
    the model's time unit) and point ``predictions`` (:meth:`CLVModel.predict_columns`' at
    ``horizon_days``), at ``level`` (e.g. 0.9). ``gbm_inputs``: whether the predictions had
    the GBM's inputs (see :meth:`CLVModel.sources_for`). Spend columns are NaN for a
    count-only model. See the module docstring for the method."""
    level = check_level(level)
    horizon_days = model.horizon_days if horizon_days is None else horizon_days
    horizon = horizon_days / model.unit_days
    x, t_x, age = (np.asarray(summary[c], dtype=float) for c in ("frequency", "recency", "T"))
    out = {name: np.full(len(x), np.nan) for name in INTERVAL_COLUMNS}
    sources = model.sources_for(horizon_days, gbm_inputs=gbm_inputs)
    monetary = None if model.spend is None else np.asarray(summary["monetary_value"], float)
    for block in _blocks(x, age):
        bounds = _Block(
            model,
            sources,
            horizon,
            _Histories(x[block], t_x[block], age[block]),
            None if monetary is None else monetary[block],
        ).bounds(
            {name: np.asarray(values[block], float) for name, values in predictions.items()}, level
        )
        for name, values in bounds.items():
            out[name][block] = values
    return out


class _Block:
    """The parameter draws' predictions of one block of customers (see
    :func:`score_intervals`)."""

    def __init__(
        self,
        model: CLVModel,
        sources: Mapping[str, TargetSource],
        horizon: float,
        histories: _Histories,
        monetary: np.ndarray | None,
    ) -> None:
        self.model, self.sources, self.horizon = model, sources, horizon
        self.histories, self.monetary = histories, monetary
        churn = model.source("churn").btyd
        purchases = sources["purchases"].btyd
        revenue = sources["revenue"].btyd if "revenue" in sources else None
        wanted = [purchases] if revenue is None else [purchases, revenue]
        models = {id(m): m for m in (churn, *wanted)}
        draws = {key: _draws_of(m) for key, m in models.items()}
        spend_draws = None if model.spend is None else _draws_of(model.spend)
        shape = (DRAWS, len(histories))
        self.alive = np.empty(shape)
        expected = {id(m): np.empty(shape) for m in wanted}
        self.spend = None if spend_draws is None else np.empty(shape)
        for b in range(DRAWS):
            for key, each in draws.items():
                draw = each[b]
                alive = draw.p_alive(*histories.own)  # type: ignore[attr-defined]
                if key == id(churn):
                    self.alive[b] = alive
                if key in expected:
                    predict = partial(draw.expected_purchases, horizon)  # type: ignore[attr-defined]
                    scale = histories.scale(draw, alive)
                    expected[key][b] = histories.evaluate(scale, predict)
            if self.spend is not None and spend_draws is not None:
                frequency = histories.own[0]
                self.spend[b] = spend_draws[b].expected_spend(frequency, monetary)  # type: ignore[attr-defined]
        self.purchases = expected[id(purchases)]
        self.revenue = (
            None if revenue is None or self.spend is None else expected[id(revenue)] * self.spend
        )

    def bounds(self, predictions: Mapping[str, np.ndarray], level: float) -> dict[str, np.ndarray]:
        """The interval columns of the block's customers with point ``predictions``."""
        tail = (1.0 - level) / 2.0
        bounds: dict[str, np.ndarray] = {}
        bounds["p_alive_lower"], bounds["p_alive_upper"] = _quantiles(self.alive, tail)
        stacks = {"expected_purchases": ("purchases", self.purchases)}
        if self.revenue is not None:
            stacks["expected_revenue"] = ("revenue", self.revenue)
        for column, (target, stack) in stacks.items():
            low, high = _quantiles(stack, tail)
            source = self.sources[target]
            if source.kind != BTYD:  # relative to the BTYD model's own point prediction
                point = self._btyd_point(source.btyd, column)
                low, high = (
                    predictions[column] * np.divide(q, point, out=np.ones_like(q), where=point > 0)
                    for q in (low, high)
                )
            bounds[f"{column}_lower"], bounds[f"{column}_upper"] = low, high
        if self.revenue is not None:
            revenue, clv = predictions["expected_revenue"], predictions["clv"]
            factor = np.divide(clv, revenue, out=np.ones_like(clv), where=revenue > 0)
            bounds["clv_lower"] = bounds["expected_revenue_lower"] * factor
            bounds["clv_upper"] = bounds["expected_revenue_upper"] * factor
        purchases = self.sources["purchases"].btyd
        bounds["purchases_lower"], bounds["purchases_upper"] = _count_bounds(
            purchases, self.histories, self.horizon, level
        )
        return bounds

    def _btyd_point(self, btyd: BTYDEstimator, column: str) -> np.ndarray:
        """``btyd``'s own point prediction of ``column``."""
        expected = btyd.expected_purchases(self.horizon, *self.histories.own)  # type: ignore[attr-defined]
        if column == "expected_revenue" and self.model.spend is not None:
            frequency = self.histories.own[0]
            return np.asarray(expected * self.model.spend.expected_spend(frequency, self.monetary))
        return np.asarray(expected, dtype=float)


def _quantiles(draws: np.ndarray, tail: float) -> tuple[np.ndarray, np.ndarray]:
    """The ``tail`` and ``1 - tail`` quantiles of each column of ``draws`` (draws x
    customers), as :func:`numpy.quantile` interpolates them (a sort of each customer's draws
    is several times quicker than its partition)."""
    ordered = np.sort(draws, axis=0)
    positions = np.array([tail, 1.0 - tail]) * (len(draws) - 1)
    below = np.floor(positions).astype(int)
    above = np.minimum(below + 1, len(draws) - 1)
    share = positions - below
    low, high = (
        ordered[below[k]] * (1.0 - share[k]) + ordered[above[k]] * share[k] for k in range(2)
    )
    return low, high


def _blocks(frequency: np.ndarray, T: np.ndarray) -> list[np.ndarray]:
    """The customers in blocks of :data:`_BLOCK` (indices), in the order of their frequency
    and T: customers who share a distinct history then share a block, so each distinct
    history is evaluated in one block only."""
    order = np.lexsort((T, frequency))
    return [order[start : start + _BLOCK] for start in range(0, len(order), _BLOCK)]


def purchase_count_bounds(
    model: BTYDEstimator,
    frequency: np.ndarray,
    recency: np.ndarray,
    T: np.ndarray,
    horizon: float,
    level: float,
) -> tuple[np.ndarray, np.ndarray]:
    """The predictive interval at ``level`` of each customer's number of purchases within
    ``horizon`` (time units) from the purchase ``model``: ``purchases_lower`` and
    ``purchases_upper`` of :func:`score_intervals` (see the module docstring), as floats."""
    level = check_level(level)
    x, t_x, age = (np.asarray(values, dtype=float) for values in (frequency, recency, T))
    lower, upper = np.empty(len(x)), np.empty(len(x))
    for block in _blocks(x, age):
        histories = _Histories(x[block], t_x[block], age[block])
        lower[block], upper[block] = _count_bounds(model, histories, horizon, level)
    return lower, upper


def _count_bounds(
    model: BTYDEstimator, histories: _Histories, horizon: float, level: float
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`purchase_count_bounds` of one block: P(X = n) averaged over the first
    :data:`COUNT_DRAWS` draws of ``model``, for n = 0, 1, ... until every customer's upper
    bound is found."""
    draws = [
        (draw, histories.scale(draw, draw.p_alive(*histories.own)))  # type: ignore[attr-defined]
        for draw in _draws_of(model)[:COUNT_DRAWS]
    ]
    customers = len(histories)
    tail = (1.0 - level) / 2.0
    cdf = np.zeros(customers)
    below = np.zeros(customers)  # P(X < lower bound), once the lower bound is found
    lower = np.full(customers, -1.0)
    upper = np.full(customers, -1.0)
    active = np.arange(customers)
    start, batch = 0, _FIRST_COUNTS
    while active.size:
        # P(X = n) for several n at once (a call costs more than its arithmetic); n = 0 as
        # 1 - P(X > 0), since P(X > 0) is 0 for a customer who dropped out, as spreading
        # over distinct histories needs.
        counts = np.arange(start, start + batch, dtype=float)[:, np.newaxis]
        mass = np.zeros((len(counts), active.size))
        for draw, scale in draws:
            positive = counts[counts[:, 0] > 0]
            if len(positive):
                exactly = partial(draw.p_purchases_by_count, positive[:, 0], horizon)  # type: ignore[attr-defined]
                mass[len(counts) - len(positive) :] += histories.evaluate(scale, exactly, active)
            if start == 0:
                buying = partial(_p_any_purchase, draw, horizon)
                mass[0] += 1.0 - histories.evaluate(scale, buying, active)
        mass /= len(draws)
        for k, count in enumerate(counts[:, 0]):
            row = mass[k]
            cdf[active] += row
            now = cdf[active]
            first = (lower[active] < 0) & (now > tail)
            lower[active[first]] = count
            below[active[first]] = now[first] - row[first]
            done = (lower[active] >= 0) & (now >= below[active] + level - _CDF_TOLERANCE)
            upper[active[done]] = count
            keep = ~done
            active, mass = active[keep], mass[:, keep]
            if not active.size:
                break
        # Most customers are done after a few counts; the few heavy buyers left need many.
        start, batch = start + batch, 2 * batch if start else batch
    return lower, upper


def _p_any_purchase(
    model: BTYDEstimator, horizon: float, frequency: np.ndarray, recency: np.ndarray, T: np.ndarray
) -> np.ndarray:
    """P(at least one purchase within ``horizon``)."""
    return 1.0 - model.p_churn(horizon, frequency, recency, T)  # type: ignore[attr-defined]


__all__ = [
    "BOUNDED",
    "COUNT_BOUNDS",
    "COUNT_DRAWS",
    "DEFAULT_LEVEL",
    "DRAWS",
    "INTERVAL_COLUMNS",
    "check_level",
    "parameter_draws",
    "purchase_count_bounds",
    "score_intervals",
]
