"""The scorable CLV model: each target's champion turned into one score table.

At its core are the fitted BTYD models (a purchase-and-dropout model and Gamma-Gamma for
spend). After a backtest (:mod:`clvlab.evaluation.backtest`) the model also knows each
target's champion, as a :class:`TargetSource`: for expected purchases, churn and revenue the
source may be a BTYD model, the LightGBM predictor (:class:`clvlab.models.gbm.GBMPredictor`),
the historical formula or a convex blend of these (the ensemble).
``p_alive`` and ``expected_spend`` always come from the BTYD models, which are the only ones
that predict them; a GBM predicts only the horizon it was trained for, so for any other horizon
the target's BTYD champion stands in, and the score table's ``model`` column says so.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from clvlab.config import UNIT_DAYS
from clvlab.errors import ClvlabError, ConfigError
from clvlab.models.btyd import (
    NEEDS_LITT,
    PURCHASE_MODELS,
    BTYDEstimator,
    GammaGamma,
    PurchaseModel,
    estimator_from_dict,
)
from clvlab.models.engines import Engine, fit_estimator
from clvlab.models.historical import HISTORICAL, historical_predictions
from clvlab.models.statistics import SufficientStatistics, positive_repeat_spend

if TYPE_CHECKING:
    from clvlab.features.windows import PurchaseDays
    from clvlab.models.gbm import GBMPredictor
    from clvlab.segments import SegmentRules

#: Columns of the score table's prediction part, in its order (after the customer's RFM
#: summary, before the model's name and version).
PREDICTION_COLUMNS = [
    "p_alive",
    "p_churn",
    "expected_purchases",
    "expected_spend",
    "expected_revenue",
    "clv",
]

#: The targets a champion is chosen for.
TARGETS = ("purchases", "churn", "revenue")
#: Each target's column in the predictions of a GBM or the historical formula.
_PREDICTED = {
    "purchases": "expected_purchases",
    "churn": "p_churn",
    "revenue": "expected_revenue",
}
#: The kinds of source of a target's predictions (with :data:`HISTORICAL`).
GBM = "gbm"
BTYD = "btyd"
ENSEMBLE = "ensemble"

#: Gauss-Legendre rule of each panel of the continuous discounting quadrature (nodes on
#: [-1, 1] and weights); see :meth:`CLVModel.discounted_purchases`.
_GAUSS_NODES, _GAUSS_WEIGHTS = np.polynomial.legendre.leggauss(6)
#: Largest length of a panel in ``v = ln(1 + t / c) + delta t``.
_PANEL_LENGTH = 3.0
#: Up to this many customers, :meth:`CLVModel.discounted_purchases` evaluates the model at
#: the horizon and at every node of the quadrature in one call.
_STACKED_CUSTOMERS = 4096
#: Newton steps placing the panel ends (any ends make a valid rule: they only even out panels).
_PANEL_NEWTON_STEPS = 3
#: lifetimes' month in each time unit, for its monthly discounting (30 days, 4.345 weeks,
#: 30 days of hours).
_LIFETIMES_MONTH = {"D": 30.0, "W": 4.345, "M": 1.0, "H": 720.0}
#: per_alive_history evaluates per distinct (frequency, T) from this many customers on, when
#: the pairs are at most this share of the customers.
_DISTINCT_MIN_CUSTOMERS = 10_000
_DISTINCT_MAX_SHARE = 0.5
#: The JSON formats :meth:`CLVModel.to_dict` writes, and those :meth:`CLVModel.from_dict`
#: reads (format 1 had no champions: every target from ``purchases``). Format 3 is format 2
#: with segment rules, format 4 format 3 with ensembles, format 5 format 4 with a default
#: interval level; a model is written in the oldest format that holds it, which older clvlab
#: versions read.
_FORMAT = "clvlab.CLVModel/2"
_SEGMENTS_FORMAT = "clvlab.CLVModel/3"
_ENSEMBLE_FORMAT = "clvlab.CLVModel/4"
_INTERVALS_FORMAT = "clvlab.CLVModel/5"
_READABLE_FORMATS = (
    "clvlab.CLVModel/1",
    _FORMAT,
    _SEGMENTS_FORMAT,
    _ENSEMBLE_FORMAT,
    _INTERVALS_FORMAT,
)


@dataclass(frozen=True)
class TargetSource:
    """Where one target's predictions come from.

    Attributes
    ----------
    kind
        ``"btyd"``: the BTYD purchase model :attr:`btyd` (with the spend model for revenue);
        ``"gbm"``: the :class:`CLVModel`'s LightGBM predictor; ``"historical"``: the formula
        of :mod:`clvlab.models.historical`; ``"ensemble"``: the blend of :attr:`members`.
    btyd
        The target's fitted BTYD purchase model: its predictions when :attr:`kind` is
        ``"btyd"``, and what stands in for a GBM (or an ensemble with a GBM) that cannot
        answer (another horizon, no purchase history). Whatever the kind, churn's also gives
        ``p_alive``, and revenue's the timing of purchases that discounts revenue to ``clv``.
    members
        An ensemble's sources (of the other kinds) and their weights (non-negative, summing
        to 1): the target's prediction is the weighted sum of theirs
        (:mod:`clvlab.evaluation.ensemble`). Empty for the other kinds.
    """

    kind: str
    btyd: BTYDEstimator
    members: tuple[tuple[TargetSource, float], ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in (BTYD, GBM, HISTORICAL, ENSEMBLE):
            raise ClvlabError(
                f"a target's source is {BTYD!r}, {GBM!r}, {HISTORICAL!r} or {ENSEMBLE!r}, "
                f"not {self.kind!r}"
            )
        if (self.kind == ENSEMBLE) != bool(self.members):
            raise ClvlabError("an ensemble source, and only an ensemble source, has members")
        weights = [weight for _, weight in self.members]
        if self.members and (
            min(weights) < 0
            or not math.isclose(sum(weights), 1.0, abs_tol=1e-9)
            or any(member.kind == ENSEMBLE for member, _ in self.members)
        ):
            raise ClvlabError(
                "an ensemble's members are sources of the other kinds, with non-negative "
                f"weights that sum to 1; got {[(m.kind, w) for m, w in self.members]}"
            )

    def uses(self, kind: str) -> bool:
        """Whether this source, or one of its members, is of ``kind``."""
        return any(each.kind == kind for each in self.with_members())

    def with_members(self) -> tuple[TargetSource, ...]:
        """This source and its members (an ensemble's), each with its BTYD model."""
        return (self, *(member for member, _ in self.members))

    @property
    def btyd_name(self) -> str:
        """The run config's name of :attr:`btyd` (``"bgnbd"``, ``"mbgnbd"``,
        ``"pareto_nbd"``)."""
        return _purchase_model_name(self.btyd)

    def label(self, target: str) -> str:
        """What the score table's ``model`` column says of this source for ``target``: the
        kind, or the BTYD model's name (``"<name>_gamma_gamma"`` for revenue); an ensemble's
        members with their weights."""
        if self.kind == ENSEMBLE:
            parts = [f"{weight:.2f} {member.label(target)}" for member, weight in self.members]
            return f"ensemble({' + '.join(parts)})"
        if self.kind != BTYD:
            return self.kind
        return f"{self.btyd_name}_gamma_gamma" if target == "revenue" else self.btyd_name


@dataclass
class CLVModel:
    """Fitted BTYD models plus what scoring needs to use them.

    Parameters
    ----------
    purchases
        Fitted purchase-and-dropout model (BG/NBD, MBG/NBD, ...), in units of ``time_unit``.
    spend
        Fitted Gamma-Gamma model, or None for count-only data (no revenue, no CLV).
    time_unit
        ``"D"``, ``"W"``, ``"M"`` or ``"H"``: the unit of recency, T and the model's rates
        (scoring summarizes transactions at the resolution
        :func:`clvlab.config.resolution` gives it: days, or hours for ``"H"``).
    horizon_days
        Default scoring horizon.
    annual_discount_rate
        Discount rate per year for ``clv``.
    discounting
        ``"continuous"``: cash flows discounted at the instant they are expected, at the rate
        ``log(1 + annual rate)`` (as CLVTools' DERT); ``"monthly"``: lifetimes'
        ``customer_lifetime_value``, whole months of lifetimes' length (30 days, 4.345 weeks)
        each discounted at the end of the month at ``(1 + annual rate) ** (1 / 12) - 1``.
    columns
        How the training transactions were read (``customer_id``, ``date``, ``amount``,
        ``quantity``, ``price``, ``invoice``, ``date_format``, ``timezone``), used again
        when scoring.
    cleaning
        The cleaning policy applied in training (fields of
        :class:`clvlab.data.CleaningPolicy`), applied again when scoring.
    name, version
        Identify the model in the score table.
    sources
        Target (``purchases``, ``churn``, ``revenue``) -> its champion, the
        :class:`TargetSource` of its predictions. A target not named is predicted by
        ``purchases`` (``TargetSource("btyd", purchases)``). The sources hold one fitted
        model per BTYD purchase model: ``purchases`` or another.
    gbm
        The fitted LightGBM predictor when a source is ``"gbm"``.
    covariates
        Transaction columns the GBM takes static covariates from (each customer's latest
        value); the transactions scored must have them.
    segments
        The segment rules fixed at training (:class:`clvlab.segments.SegmentRules`): with
        them the score table has the segment columns too; None: no segments.
    interval_level
        The default level of the score table's intervals (``scoring.intervals`` of the run
        config, e.g. 0.9; see :mod:`clvlab.intervals`); None: no intervals unless asked for.
    """

    purchases: BTYDEstimator
    spend: GammaGamma | None
    time_unit: str = "W"
    horizon_days: float = 365.0
    annual_discount_rate: float = 0.10
    discounting: str = "continuous"
    columns: dict[str, str | None] = field(default_factory=dict)
    cleaning: dict[str, Any] = field(default_factory=dict)
    name: str = "bgnbd+gamma_gamma"
    version: str = ""
    sources: dict[str, TargetSource] = field(default_factory=dict)
    gbm: GBMPredictor | None = None
    covariates: tuple[str, ...] = ()
    segments: SegmentRules | None = None
    interval_level: float | None = None

    def __post_init__(self) -> None:
        if not self.sources:
            return
        models = {_purchase_model_name(self.purchases): self.purchases}
        for target, source in self.sources.items():
            if target not in TARGETS:
                raise ClvlabError(f"unknown target {target!r}: the targets are {TARGETS}")
            for each in source.with_members():
                if models.setdefault(each.btyd_name, each.btyd) is not each.btyd:
                    raise ClvlabError(
                        f"two fitted {each.btyd_name} models: the sources of a CLVModel hold "
                        "one fitted model per BTYD purchase model (`purchases` for its own)"
                    )

    @property
    def unit_days(self) -> float:
        """Length of one ``time_unit`` in days."""
        return UNIT_DAYS[self.time_unit]

    def predict(
        self,
        summary: pd.DataFrame,
        horizon_days: float | None = None,
        *,
        history: PurchaseDays | None = None,
        as_of: pd.Timestamp | str | None = None,
        covariates: pd.DataFrame | None = None,
    ) -> pd.DataFrame:
        """Predict each customer's future from an RFM summary in units of ``time_unit``.

        The table of :meth:`predict_columns`' predictions, indexed as ``summary`` (see there
        for the parameters and columns).
        """
        columns = self.predict_columns(
            summary, horizon_days, history=history, as_of=as_of, covariates=covariates
        )
        return pd.DataFrame(columns, index=summary.index)

    def predict_columns(
        self,
        summary: pd.DataFrame | Mapping[str, np.ndarray],
        horizon_days: float | None = None,
        *,
        history: PurchaseDays | None = None,
        as_of: pd.Timestamp | str | None = None,
        covariates: pd.DataFrame | None = None,
    ) -> dict[str, np.ndarray]:
        """Predict each customer's future from an RFM summary in units of ``time_unit``: the
        columns of :meth:`predict` as arrays (no table built: cheaper for a few customers).

        Parameters
        ----------
        summary
            ``frequency``, ``recency``, ``T`` and (with a spend model) ``monetary_value``: a
            table, or its columns as arrays (a GBM or historical source needs the table, whose
            index is the customer ids the GBM's predictions are matched to).
        horizon_days
            Prediction horizon; the model's default when None.
        history, as_of, covariates
            What a GBM champion predicts from: the customers' purchase days, the date the
            summary is at, and the static covariates (indexed by ``customer_id``; needed when
            :attr:`covariates` names columns). Without ``history`` the BTYD champions stand in
            for the GBM (see :meth:`sources_for`).

        Returns
        -------
        dict of numpy.ndarray
            :data:`PREDICTION_COLUMNS`, in the order of ``summary``'s rows. ``p_churn`` is the
            probability of no purchase within the horizon; ``expected_spend`` the expected
            value of one purchase; ``expected_revenue`` the undiscounted expected revenue within
            the horizon and ``clv`` the same discounted. Spend columns are NaN without a spend
            model.
        """
        horizon_days = self.horizon_days if horizon_days is None else horizon_days
        horizon = horizon_days / self.unit_days
        x, t_x, age = (np.asarray(summary[c], dtype=float) for c in ("frequency", "recency", "T"))
        sources = self.sources_for(horizon_days, gbm_inputs=history is not None)
        # The predictions of the sources other than BTYD, each computed once.
        other: dict[str, pd.DataFrame] = {}
        if any(s.kind != BTYD for s in sources.values()) and not isinstance(summary, pd.DataFrame):
            raise ClvlabError("a GBM, historical or ensemble source predicts from a summary table")
        if any(source.uses(GBM) for source in sources.values()):
            if self.gbm is None or history is None or as_of is None:
                raise ClvlabError("a GBM champion predicts from `history` at `as_of`: give both")
            assert isinstance(summary, pd.DataFrame)
            other[GBM] = self.gbm.predict(history, as_of, covariates).reindex(summary.index)
        if any(source.uses(HISTORICAL) for source in sources.values()):
            assert isinstance(summary, pd.DataFrame)
            other[HISTORICAL] = historical_predictions(summary, self.unit_days, horizon_days)

        expected_by_model: dict[int, np.ndarray] = {}
        discounted = None
        if self.spend is not None and len(x) < _DISTINCT_MIN_CUSTOMERS:
            # A few customers: the revenue model's horizon and discounting in one evaluation
            # (with many, distinct histories are evaluated once each: per_alive_history).
            revenue_model = self.source("revenue").btyd
            expected_by_model[id(revenue_model)], discounted = self._expected_and_discounted(
                horizon, x, t_x, age, model=revenue_model
            )

        def expected_of(model: BTYDEstimator) -> np.ndarray:
            if id(model) not in expected_by_model:
                expected_by_model[id(model)] = per_alive_history(
                    model, x, t_x, age, partial(model.expected_purchases, horizon)
                )
            return expected_by_model[id(model)]

        spend = (
            np.full(len(x), np.nan)
            if self.spend is None
            else self.spend.expected_spend(x, np.asarray(summary["monetary_value"], dtype=float))
        )

        def predicted(target: str, source: TargetSource) -> np.ndarray:
            """``source``'s prediction of ``target``: expected purchases, P(churn) or
            expected revenue within the horizon."""
            if source.kind == ENSEMBLE:
                parts = [weight * predicted(target, member) for member, weight in source.members]
                return np.sum(parts, axis=0)
            if source.kind != BTYD:
                return other[source.kind][_PREDICTED[target]].to_numpy(dtype=float)
            if target == "churn":
                return source.btyd.p_churn(horizon, x, t_x, age)
            expected = expected_of(source.btyd)
            return expected * spend if target == "revenue" else expected

        purchases = predicted("purchases", sources["purchases"])
        p_alive = self.source("churn").btyd.p_alive(x, t_x, age)
        p_churn = predicted("churn", sources["churn"])
        if self.spend is None:  # no spend, no revenue and no CLV: skip the discounting
            revenue, clv = spend, spend
        else:
            revenue_model = self.source("revenue").btyd
            timing = expected_of(revenue_model)

            def discount(xs: np.ndarray, t_xs: np.ndarray, ages: np.ndarray) -> np.ndarray:
                # On all customers (no distinct pairs to share), reuse the horizon's purchases.
                expected = timing if xs is x else None
                return self.discounted_purchases(
                    horizon, xs, t_xs, ages, expected=expected, model=revenue_model
                )

            if discounted is None:
                discounted = per_alive_history(revenue_model, x, t_x, age, discount)
            if sources["revenue"].kind == BTYD:
                revenue, clv = timing * spend, discounted * spend
            else:
                # Discounted as the BTYD model expects the horizon's purchases to come.
                revenue = predicted("revenue", sources["revenue"])
                factor = np.divide(
                    discounted, timing, out=np.ones_like(discounted), where=timing > 0
                )
                clv = revenue * factor
        values = (p_alive, p_churn, purchases, spend, revenue, clv)
        return dict(zip(PREDICTION_COLUMNS, values, strict=True))

    def source(self, target: str) -> TargetSource:
        """The champion of ``target`` (see :attr:`sources`)."""
        source = self.sources.get(target)
        return TargetSource(BTYD, self.purchases) if source is None else source

    def sources_for(
        self, horizon_days: float | None = None, *, gbm_inputs: bool = True
    ) -> dict[str, TargetSource]:
        """Target -> the source that predicts it for ``horizon_days``: the target's champion,
        except that a GBM champion (or an ensemble with a GBM) gives way to its BTYD stand-in
        when the horizon is not the one the GBM was trained for or its inputs
        (``gbm_inputs``) are not given. Revenue only with a spend model."""
        horizon_days = self.horizon_days if horizon_days is None else horizon_days
        gbm_answers = gbm_inputs and self.gbm is not None and horizon_days == self.gbm.horizon_days
        targets = TARGETS if self.spend is not None else TARGETS[:2]
        sources = {}
        for target in targets:
            source = self.source(target)
            if source.uses(GBM) and not gbm_answers:
                source = TargetSource(BTYD, source.btyd)
            sources[target] = source
        return sources

    def label(self, horizon_days: float | None = None, *, gbm_inputs: bool = True) -> str:
        """What the score table's ``model`` column says: :attr:`name` when one BTYD model
        predicts every target, else each target's source, and why a GBM champion was not
        used."""
        sources = self.sources_for(horizon_days, gbm_inputs=gbm_inputs)
        if all(s.kind == BTYD and s.btyd is self.purchases for s in sources.values()):
            text = self.name
        else:
            text = ", ".join(f"{target}={s.label(target)}" for target, s in sources.items())
        replaced = [
            target
            for target, source in sources.items()
            if self.source(target).uses(GBM) and not source.uses(GBM)
        ]
        if replaced and self.gbm is not None:
            why = (
                "no transaction history was given"
                if not gbm_inputs
                else f"the GBM predicts {self.gbm.horizon_days:g}-day horizons only"
            )
            replaced_what = (
                "the GBM or its ensemble"
                if any(self.source(target).kind == ENSEMBLE for target in replaced)
                else "the GBM"
            )
            text += f" (BTYD champion in place of {replaced_what} for {', '.join(replaced)}: {why})"
        return text

    def purchase_models(self) -> dict[str, BTYDEstimator]:
        """Every BTYD purchase model of this model by name: :attr:`purchases` first, then
        the others of :attr:`sources` by name."""
        others = {
            each.btyd_name: each.btyd
            for source in self.sources.values()
            for each in source.with_members()
            if each.btyd is not self.purchases
        }
        main = {_purchase_model_name(self.purchases): self.purchases}
        return main | dict(sorted(others.items()))

    def discounted_purchases(
        self,
        horizon: float,
        frequency: np.ndarray,
        recency: np.ndarray,
        T: np.ndarray,
        *,
        expected: np.ndarray | None = None,
        model: BTYDEstimator | None = None,
    ) -> np.ndarray:
        r"""Expected purchases within ``horizon`` (in time units), discounted.

        Continuous: :math:`\int_0^H e^{-\delta t}\, dE[X(t)]`, :math:`\delta = \ln(1 +
        \text{annual rate})` per year, :math:`E[X(t)]` the purchase model's expected purchases
        in :math:`(T, T + t]`. Integrated by parts,

        .. math::
            \int_0^H e^{-\delta t}\, dE[X(t)] = e^{-\delta H} E[X(H)]
            + \delta \int_0^H e^{-\delta t} E[X(t)]\, dt,

        and the remaining integral, of a smooth function, by Gauss-Legendre quadrature: 6
        nodes on each of :math:`P` panels (:math:`6P` evaluations of ``expected_purchases``
        for all customers at once; :math:`P = 1` for a year at 10 %). :math:`E[X(t)]` is
        analytic in :math:`t` except on the negative axis from :math:`-(c_0 + T)` down, where
        :math:`c_0` is the model's time scale (:math:`\alpha` in BG/NBD and MBG/NBD,
        :math:`\min(\alpha, \beta)` in Pareto/NBD): it curves most near :math:`t = 0` for
        new customers. So the nodes are placed in :math:`u = \ln(1 + t / c)`,
        :math:`c = c_0 + T` (each customer his own), with :math:`dt = (c + t)\, du`, on
        panels of equal length, at most 3, in :math:`v = u + |\delta| t`: the :math:`u` part
        keeps the singularity far from each panel, the :math:`\delta t` part the decay of
        the discount factor over a panel to at most :math:`e^{-3}`. Against a fine reference
        grid the relative error is below :math:`10^{-7}` (below :math:`10^{-9}` for a year at
        10 %) for BG/NBD, MBG/NBD and Pareto/NBD, daily and weekly, horizons from a month to
        10 years and annual rates up to 200 %. With no discount (:math:`\delta = 0`) it is
        exactly :math:`E[X(H)]`.

        Monthly: lifetimes' sum over whole months of the month's expected purchases over
        ``(1 + monthly rate) ** i``.

        Parameters
        ----------
        horizon
            Length of the window, in time units.
        frequency, recency, T
            Customer histories.
        expected
            ``expected_purchases(horizon, frequency, recency, T)`` if already computed
            (continuous discounting only; it is computed when None).
        model
            The purchase model; :attr:`purchases` when None.
        """
        return self._expected_and_discounted(
            horizon, frequency, recency, T, expected=expected, model=model
        )[1]

    def _expected_and_discounted(
        self,
        horizon: float,
        frequency: np.ndarray,
        recency: np.ndarray,
        T: np.ndarray,
        *,
        expected: np.ndarray | None = None,
        model: BTYDEstimator | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The expected purchases within ``horizon`` (``expected`` when given) and the same
        discounted (:meth:`discounted_purchases`). For a few customers (a profile's event, a
        served request) continuous discounting evaluates the model once, at the horizon and at
        every node of the quadrature together: a call costs more than its arithmetic."""
        model = self.purchases if model is None else model
        if self.discounting == "monthly":
            if expected is None:
                expected = model.expected_purchases(horizon, frequency, recency, T)
            monthly = self._monthly_discounted_purchases(horizon, frequency, recency, T, model)
            return np.asarray(expected, dtype=float), monthly
        delta = math.log1p(self.annual_discount_rate) * self.unit_days / 365.25
        x, t_x, age = np.broadcast_arrays(
            *(np.asarray(a, dtype=float) for a in (frequency, recency, T))
        )
        stacked = x.ndim == 1 and x.size <= _STACKED_CUSTOMERS
        if delta == 0 or horizon == 0 or x.size == 0 or not stacked:
            if expected is None:
                expected = model.expected_purchases(horizon, frequency, recency, T)
            expected = np.asarray(expected, dtype=float)
            if delta == 0 or horizon == 0 or expected.size == 0:
                return expected, expected
            x, t_x, age = np.broadcast_arrays(x, t_x, age, expected)[:3]
        scale = age + _time_scale(model, horizon)
        decay = abs(delta)
        log_span = np.log1p(horizon / scale)  # u at the horizon
        panels = max(1, math.ceil((float(np.max(log_span)) + decay * horizon) / _PANEL_LENGTH))
        ends = [np.zeros(scale.shape), *self._panel_ends(panels, scale, decay, horizon), log_span]
        total = np.zeros(scale.shape)
        if stacked:  # every node of every panel (and the horizon) in one call
            lows, highs = np.stack(ends[:-1]), np.stack(ends[1:])
            halves = (highs - lows) / 2
            nodes = _GAUSS_NODES[np.newaxis, :, np.newaxis]
            t = scale * np.expm1(lows[:, np.newaxis] + halves[:, np.newaxis] * (1.0 + nodes))
            times = t.reshape(-1, x.size)
            if expected is None:
                times = np.concatenate([np.full((1, x.size), float(horizon)), times])
            values = model.expected_purchases(times, x, t_x, age)
            if expected is None:
                expected, values = values[0], values[1:]
            at_t = values.reshape(t.shape)
            for panel in range(panels):
                weights = _GAUSS_WEIGHTS[:, np.newaxis] * halves[panel]
                terms = weights * (scale + t[panel]) * np.exp(-delta * t[panel])
                total += np.add.reduce(terms * at_t[panel], axis=0)
        else:  # one node at a time, in bounded memory
            for low, high in itertools.pairwise(ends):
                half = (high - low) / 2
                for node, weight in zip(_GAUSS_NODES, _GAUSS_WEIGHTS, strict=True):
                    t_k = scale * np.expm1(low + half * (1.0 + node))
                    at_k = model.expected_purchases(t_k, x, t_x, age)
                    total += (weight * half) * (scale + t_k) * np.exp(-delta * t_k) * at_k
        assert expected is not None
        expected = np.asarray(expected, dtype=float)
        return expected, math.exp(-delta * horizon) * expected + delta * total

    @staticmethod
    def _panel_ends(
        panels: int, scale: np.ndarray, decay: float, horizon: float
    ) -> list[np.ndarray]:
        """Inner panel ends in ``u`` of :meth:`discounted_purchases`' quadrature.

        Each solves ``u + r (e^u - 1) = v`` (``r = c |delta|``) for ``v`` at ``1 / panels,
        2 / panels, ...`` of the way to the horizon, by a few Newton steps from above (the
        left side is convex in ``u``, so they stay above the root and decrease). Any ends in
        increasing order give a valid rule; exact roots only make the panels even.
        """
        if panels == 1:
            return []
        log_span = np.log1p(horizon / scale)
        r = scale * decay
        ends: list[np.ndarray] = []
        for k in range(1, panels):
            v = (log_span + decay * horizon) * (k / panels)
            u = np.minimum(v, np.log1p(v / r))
            for _ in range(_PANEL_NEWTON_STEPS):
                u = u - (u + r * np.expm1(u) - v) / (1.0 + r * np.exp(u))
            previous = ends[-1] if ends else 0.0
            ends.append(np.clip(u, previous, log_span))
        return ends

    def _monthly_discounted_purchases(
        self,
        horizon: float,
        frequency: np.ndarray,
        recency: np.ndarray,
        T: np.ndarray,
        model: BTYDEstimator,
    ) -> np.ndarray:
        """lifetimes' ``customer_lifetime_value`` discounting (see :meth:`discounted_purchases`)."""
        month = _LIFETIMES_MONTH[self.time_unit]
        months = max(1, round(horizon / month))
        grid = month * np.arange(months + 1)
        monthly_rate = (1 + self.annual_discount_rate) ** (1 / 12) - 1
        factors = (1 + monthly_rate) ** -np.arange(1.0, months + 1)
        total = np.zeros(len(frequency))
        previous = np.zeros(len(frequency))
        for end, factor in zip(grid[1:], factors, strict=True):
            current = model.expected_purchases(end, frequency, recency, T)
            total += (current - previous) * factor
            previous = current
        return total

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable description from which :meth:`from_dict` rebuilds the model."""
        segments = {} if self.segments is None else {"segments": self.segments.to_dict()}
        ensembles = {
            target: [
                {"kind": member.kind, "btyd": member.btyd_name, "weight": weight}
                for member, weight in source.members
            ]
            for target, source in self.sources.items()
            if source.kind == ENSEMBLE
        }
        if self.interval_level is not None:
            saved_as = _INTERVALS_FORMAT
        elif ensembles:
            saved_as = _ENSEMBLE_FORMAT
        else:
            saved_as = _FORMAT if self.segments is None else _SEGMENTS_FORMAT
        return {
            "format": saved_as,
            "purchases": self.purchases.to_dict(),
            "spend": None if self.spend is None else self.spend.to_dict(),
            "time_unit": self.time_unit,
            "horizon_days": self.horizon_days,
            "annual_discount_rate": self.annual_discount_rate,
            "discounting": self.discounting,
            "columns": self.columns,
            "cleaning": self.cleaning,
            "name": self.name,
            "version": self.version,
            # Format 2 keeps each target's source in three maps, as models saved before
            # TargetSource read it: its kind, its BTYD model's name, and those models but
            # `purchases` by name.
            "champions": {target: source.kind for target, source in self.sources.items()},
            "btyd_champions": {target: source.btyd_name for target, source in self.sources.items()},
            "alternatives": {
                name: model.to_dict()
                for name, model in self.purchase_models().items()
                if model is not self.purchases
            },
            "gbm": None if self.gbm is None else self.gbm.to_dict(),
            "covariates": list(self.covariates),
            **segments,
            **({"ensembles": ensembles} if ensembles else {}),
            **({} if self.interval_level is None else {"interval_level": self.interval_level}),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CLVModel:
        """Rebuild a model from :meth:`to_dict`'s output (formats 1 to 5)."""
        fields = dict(data)
        saved_as = fields.pop("format", _FORMAT)
        if saved_as not in _READABLE_FORMATS:
            raise ClvlabError(
                f"the model was saved as {saved_as!r}, which this clvlab cannot read (it reads "
                f"{', '.join(_READABLE_FORMATS)}): load it with the clvlab that saved it"
            )
        purchases = estimator_from_dict(fields.pop("purchases"))
        if fields.get("spend") is not None:
            fields["spend"] = estimator_from_dict(fields["spend"])
        kinds = fields.pop("champions", {})
        btyd_names = fields.pop("btyd_champions", {})
        others = {
            name: estimator_from_dict(state)
            for name, state in fields.pop("alternatives", {}).items()
        }

        ensembles = fields.pop("ensembles", {})

        def by_name(name: str | None) -> BTYDEstimator:
            return others.get(name, purchases) if name else purchases

        def source(target: str) -> TargetSource:
            members = tuple(
                (TargetSource(member["kind"], by_name(member["btyd"])), float(member["weight"]))
                for member in ensembles.get(target, ())
            )
            return TargetSource(kinds.get(target, BTYD), by_name(btyd_names.get(target)), members)

        targets = [*kinds, *(target for target in btyd_names if target not in kinds)]
        fields["sources"] = {target: source(target) for target in targets}
        if fields.get("gbm") is not None:
            from clvlab.models.gbm import GBMPredictor

            fields["gbm"] = GBMPredictor.from_dict(fields["gbm"])
        fields["covariates"] = tuple(fields.get("covariates", ()))
        if "segments" in fields:
            from clvlab.segments import SegmentRules

            fields["segments"] = SegmentRules.from_dict(fields["segments"])
        return cls(purchases=purchases, **fields)

    def save(self, path: str | Path) -> None:
        """Write the model as JSON."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path: str | Path) -> CLVModel:
        """Read a model written by :meth:`save`."""
        return cls.from_dict(json.loads(Path(path).read_text()))


def per_alive_history(
    model: BTYDEstimator,
    frequency: np.ndarray,
    recency: np.ndarray,
    T: np.ndarray,
    evaluate: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray],
) -> np.ndarray:
    """``evaluate(frequency, recency, T)`` for every customer, computed once per distinct
    ``(frequency, T)``.

    ``evaluate`` must be a prediction about purchases after ``T`` that is zero for a customer
    who has dropped out, such as the expected (discounted) purchases of ``model``. In BG/NBD,
    MBG/NBD and Pareto/NBD a customer alive at ``T`` has a future that depends on
    ``frequency`` and ``T`` alone (given alive, the purchase rate is Gamma(r + x, alpha + T)
    and the dropout Beta(a, b + x) or Gamma(s, beta + T); recency only tells whether the
    customer is alive), so such a prediction is ``P(alive | x, t_x, T)`` times a function of
    ``(x, T)``. That function is evaluated at one history per distinct ``(x, T)`` (recency
    ``T`` for repeat buyers, where being alive is likeliest) and scaled by the ratio of the
    probabilities of being alive. On daily or
    weekly data a million customers have a few tens of thousands of distinct pairs, and the
    hypergeometric functions of BG/NBD are what scoring spends its time on. Models whose
    future given alive depends on recency too
    (:meth:`~clvlab.models.btyd.PurchaseModel.future_needs_recency`, e.g. MBG/CNBD-k with
    k > 1) are evaluated for every customer.
    """
    n = len(frequency)
    shared = isinstance(model, PurchaseModel) and not model.future_needs_recency()
    if n < _DISTINCT_MIN_CUSTOMERS or not shared:
        return evaluate(frequency, recency, T)
    codes, x, t_x, age = distinct_alive_histories(frequency, T)
    if len(x) > n * _DISTINCT_MAX_SHARE:
        return evaluate(frequency, recency, T)
    alive = model.p_alive(frequency, recency, T)
    alive_at_pair = model.p_alive(x, t_x, age)[codes]  # >= alive: 0 only where alive is
    scale = np.divide(alive, alive_at_pair, out=np.zeros(n), where=alive_at_pair > 0)
    return evaluate(x, t_x, age)[codes] * scale


def distinct_alive_histories(
    frequency: np.ndarray, T: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One history per distinct ``(frequency, T)`` (see :func:`per_alive_history`): each
    customer's index into them, and their frequency, recency and T. The recency is ``T`` for
    repeat buyers (where being alive is likeliest; any recency consistent with the frequency
    would do), 0 for the others."""
    codes, pairs = pd.factorize(np.asarray(frequency, dtype=float) + 1j * np.asarray(T, float))
    x, age = pairs.real, pairs.imag
    return codes, x, np.where(x > 0, age, 0.0), age


def _time_scale(model: BTYDEstimator, horizon: float) -> float:
    """Time within which a purchase model's ``expected_purchases`` may curve sharply: the
    smallest of its :meth:`~clvlab.models.btyd.PurchaseModel.time_scales`, else the horizon."""
    scales = model.time_scales() if isinstance(model, PurchaseModel) else []
    scales = [value for value in scales if value > 0 and math.isfinite(value)]
    return min(scales) if scales else (horizon if horizon > 0 else 1.0)


def _purchase_model_name(model: BTYDEstimator) -> str:
    """The run config's name of a purchase model (``"bgnbd"``, ...): its key in
    :data:`clvlab.models.btyd.PURCHASE_MODELS`."""
    return next(name for name, cls in PURCHASE_MODELS.items() if type(model) is cls)


def fit_purchase_model(
    summary: pd.DataFrame | SufficientStatistics,
    name: str,
    *,
    engine: Engine = "clvlab",
    penalizer_coef: float = 0.0,
) -> BTYDEstimator:
    """Fit the purchase model ``name`` (``"bgnbd"``, ``"mbgnbd"``, ``"pareto_nbd"``,
    ``"mbgcnbd"``, ``"ggompertz_nbd"``).

    Parameters
    ----------
    summary
        RFM summary (``frequency``, ``recency`` and ``T``; ``litt`` too for ``"mbgcnbd"``), or
        its :class:`~clvlab.models.statistics.SufficientStatistics` (the same fit, on the
        distinct histories weighted by their counts; with ``litt`` for ``"mbgcnbd"``).
    name
        The purchase model (a key of :data:`clvlab.models.btyd.PURCHASE_MODELS`).
    engine
        Who fits: ``"clvlab"`` or ``"lifetimes"`` (see :func:`clvlab.models.engines.fit_estimator`);
        lifetimes only fits a per-customer summary.
    penalizer_coef
        L2 penalty on the log-parameters.

    Raises
    ------
    clvlab.errors.ConfigError
        ``engine="lifetimes"`` with sufficient statistics, or ``"mbgcnbd"`` with statistics
        counted without ``litt``.
    """
    model = PURCHASE_MODELS[name](penalizer_coef=penalizer_coef)
    if isinstance(summary, SufficientStatistics):
        if name not in NEEDS_LITT:
            return _fit_counted(model, summary.purchases, engine)
        if summary.litt is None:
            raise ConfigError(
                f"the purchase model {name!r} chooses its k from the times between purchases: "
                "count the statistics with litt (SufficientStatistics.from_summary of "
                "rfm(..., litt=True), or clvlab.spark.statistics.sufficient_statistics(..., "
                "litt=True))"
            )
        return _fit_counted(model, summary.purchases, engine, litt_total=summary.litt)
    columns = ["frequency", "recency", "T", *(["litt"] if name in NEEDS_LITT else [])]
    return fit_estimator(model, summary[columns], engine)


def fit_clv_model(
    summary: pd.DataFrame | SufficientStatistics,
    purchases: str,
    *,
    engine: Engine = "clvlab",
    penalizer_coef: float = 0.0,
    **settings: Any,
) -> tuple[CLVModel, dict[str, int]]:
    """Fit the purchase model ``purchases`` (``"bgnbd"``, ...) and Gamma-Gamma when there are
    amounts (``monetary_value``), into a :class:`CLVModel`.

    Gamma-Gamma needs positive spend: repeat buyers whose mean repeat spend is not positive
    are left out of its fit and counted in the returned dict.

    Parameters
    ----------
    summary
        RFM summary in the units of ``settings["time_unit"]``, or its
        :class:`~clvlab.models.statistics.SufficientStatistics` (same parameters, fitted on the
        counts; ``engine="clvlab"`` only).
    purchases
        The purchase model (a key of :data:`clvlab.models.btyd.PURCHASE_MODELS`).
    engine, penalizer_coef
        As in :func:`fit_purchase_model`; for both models.
    **settings
        The model's other settings (:class:`CLVModel`'s ``time_unit``, ``horizon_days``,
        ``annual_discount_rate``, ``discounting``, ``columns``, ``cleaning``, ...); its
        ``name`` is ``<purchases>_gamma_gamma``, or ``<purchases>`` without spend.

    Returns
    -------
    (model, excluded)
    """
    purchase_model = fit_purchase_model(
        summary, purchases, engine=engine, penalizer_coef=penalizer_coef
    )
    spend, excluded = None, {}
    gamma_gamma = GammaGamma(penalizer_coef=penalizer_coef)
    if isinstance(summary, SufficientStatistics):
        if summary.spend is not None:
            excluded["spend_fit.nonpositive_repeat_spend"] = summary.nonpositive_repeat_spend
            spend = _fit_counted(gamma_gamma, summary.spend, engine)
    elif "monetary_value" in summary:
        positive, excluded["spend_fit.nonpositive_repeat_spend"] = positive_repeat_spend(summary)
        spend = fit_estimator(gamma_gamma, positive, engine)
    name = f"{purchases}_gamma_gamma" if spend is not None else purchases
    return CLVModel(purchases=purchase_model, spend=spend, name=name, **settings), excluded


def _fit_counted(
    estimator: BTYDEstimator, rows: pd.DataFrame, engine: Engine, **fit: Any
) -> BTYDEstimator:
    """Fit ``estimator`` on distinct rows weighted by their ``count`` (clvlab's engine only:
    lifetimes' Pareto/NBD scales a weighted likelihood by the mean weight, so its fit on
    counts is not its fit on customers); ``fit`` goes to its ``fit``."""
    if engine != "clvlab":
        raise ConfigError(
            f"engine {engine!r} fits the per-customer RFM summary, not SufficientStatistics: "
            "fit the summary, or use engine 'clvlab'"
        )
    return estimator.fit(rows, sample_weight=rows["count"].to_numpy(dtype=float), **fit)
