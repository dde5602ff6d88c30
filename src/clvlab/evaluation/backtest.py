"""One backtest for every candidate model, and champion selection that never sees the holdout.

Two windows of the same data:

- the **holdout**: ``calibration_end`` to ``holdout_end`` (``H`` days). It is only
  reported: candidates are fitted on the data up to ``calibration_end`` and scored on it.
- the **validation** window: the ``H`` days before ``calibration_end``, with candidates fitted
  on the data before it. Champions are chosen here, one per target (purchases, churn,
  revenue), by the metric the settings name. When the history before the holdout is shorter
  than ``2 H``, the validation window is shortened to half of that history, and said so.

The candidates: each BTYD purchase model (with Gamma-Gamma when there are amounts), the
LightGBM predictors of :mod:`clvlab.models.gbm` trained for exactly ``H`` days, and the naive
historical formula (each customer's past repeat-purchase rate and mean spend carried
forward: average value x purchases per period x periods; churn as a Poisson zero at that
rate). A GBM that the data cannot train for ``H`` days, or that the validation window cannot
judge for ``H`` days, is skipped with the reason; so is the GBM of an hourly model
(``time_unit: H``), which would count purchase days where the hourly models and the actuals
count purchase hours. Last, the ensemble (:mod:`clvlab.evaluation.
ensemble`): per target, a convex blend of the candidates judged on both windows, with weights
fitted on the validation window (out of fold there).

What to compare and how to choose is a :class:`BacktestSettings`; the training job builds it
from the run config (:func:`clvlab.training.backtest_settings`). Each candidate's result is a
:class:`CandidateResult`; drawing them is :func:`clvlab.evaluation.plots.backtest_figures`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd

from clvlab.config import UNIT_DAYS, resolution
from clvlab.errors import ClvlabError, ConfigError, DataError
from clvlab.evaluation import metrics
from clvlab.evaluation.ensemble import FOLDS, Blend, fit_blend, out_of_fold
from clvlab.evaluation.holdout import (
    beside_actuals,
    holdout_metrics,
    holdout_predictions,
    holdout_tracking,
    purchase_interval,
)
from clvlab.features.rfm import calibration_holdout
from clvlab.features.windows import PurchaseDays, customer_covariates
from clvlab.models.btyd import NEEDS_LITT, PURCHASE_MODELS
from clvlab.models.clv import ENSEMBLE, GBM, TARGETS, CLVModel, fit_clv_model
from clvlab.models.engines import Engine
from clvlab.models.gbm import GBMPredictor, InsufficientHistoryError
from clvlab.models.historical import HISTORICAL, historical_predictions
from clvlab.models.statistics import SufficientStatistics
from clvlab.progress import stage

#: Fewest validation customers the ensemble candidate is fitted and judged on.
ENSEMBLE_MIN_CUSTOMERS = 100
#: Why an hourly backtest has no GBM candidate (its ``skipped`` entry).
HOURLY_GBM = (
    "time_unit H: the GBM counts purchases per day and predicts for whole days, while an "
    "hourly model's purchases (and the holdout's actual purchases) are distinct purchase "
    "hours, so its predictions would not be comparable; use time_unit D, W or M to compare "
    "the GBM, or set models.gbm.enabled: false"
)


@dataclass(frozen=True)
class BacktestSettings:
    """What :func:`backtest` compares and how it chooses champions.

    :func:`clvlab.training.backtest_settings` builds them from a run config (its ``split``,
    ``time_unit``, ``models`` and ``selection``).

    Attributes
    ----------
    calibration_end, holdout_end
        The holdout: candidates are fitted on the data up to ``calibration_end`` (its whole
        day) and judged on the days after it up to ``holdout_end``.
    time_unit
        ``"D"``, ``"W"``, ``"M"`` (at daily resolution) or ``"H"`` (hours, at hourly
        resolution; see :func:`clvlab.config.resolution`): the unit of the BTYD models' time.
    candidates
        The BTYD purchase models compared (``"bgnbd"``, ``"mbgnbd"``, ``"pareto_nbd"``,
        ``"mbgcnbd"``), each with Gamma-Gamma when there are amounts.
    selection
        Target (``purchases``, ``churn``, ``revenue``) -> the metric that chooses its
        champion (a selecting metric of :data:`clvlab.evaluation.metrics.METRICS`).
    engine, penalizer_coef
        Who fits the BTYD models (``"clvlab"`` or ``"lifetimes"``) and their L2 penalty.
    gbm
        An unfitted :class:`GBMPredictor` with the GBM candidate's settings (each window
        trains a copy for the holdout's length), or None: no GBM candidate. Skipped (with
        :data:`HOURLY_GBM` in ``skipped``) when ``time_unit`` is ``"H"``.
    static_columns
        Transaction columns the GBM takes static covariates from when :func:`backtest` is not
        given ``customers``.
    ensemble
        Whether the ensemble of the other candidates is a candidate too.
    """

    calibration_end: dt.date | pd.Timestamp | str
    holdout_end: dt.date | pd.Timestamp | str
    time_unit: str
    candidates: tuple[str, ...]
    selection: Mapping[str, str]
    engine: Engine = "clvlab"
    penalizer_coef: float = 0.0
    gbm: GBMPredictor | None = None
    static_columns: tuple[str, ...] = ()
    ensemble: bool = True

    def __post_init__(self) -> None:
        if self.time_unit not in UNIT_DAYS:
            raise ConfigError(f"time_unit must be one of {list(UNIT_DAYS)}, not {self.time_unit!r}")
        unknown = [name for name in self.candidates if name not in PURCHASE_MODELS]
        if unknown or not self.candidates:
            raise ConfigError(
                f"candidates must name BTYD purchase models of {list(PURCHASE_MODELS)}; "
                f"got {list(self.candidates)}"
            )
        for target, metric in self.selection.items():
            if target not in TARGETS:
                raise ConfigError(
                    f"selection: unknown target {target!r}; the targets are {TARGETS}"
                )
            if metric in metrics.METRICS and metrics.METRICS[metric].target != target:
                raise ConfigError(
                    f"selection of {target}: {metric!r} judges {metrics.METRICS[metric].target}, "
                    f"not {target}; choose a {target}_* metric"
                )
            if metric not in metrics.SELECTION_METRICS:
                raise ConfigError(
                    f"selection of {target}: {metric!r} is not a selecting metric; choose one "
                    f"of {list(metrics.SELECTION_METRICS)}"
                )

    @property
    def unit_days(self) -> float:
        """Length of one :attr:`time_unit` in days."""
        return UNIT_DAYS[self.time_unit]


@dataclass(frozen=True)
class Window:
    """Fit on the data up to ``start`` (its whole day); evaluate on the days after it up to
    ``end``."""

    name: str
    start: pd.Timestamp
    end: pd.Timestamp

    @property
    def days(self) -> int:
        return int((self.end - self.start).days)


@dataclass
class CandidateResult:
    """One candidate of a backtest on one window.

    Attributes
    ----------
    name
        ``"bgnbd_gamma_gamma"`` (``"bgnbd"`` for count-only data) and the like for a BTYD
        candidate, ``"gbm"``, ``"historical"`` or ``"ensemble"``.
    predictions
        Per-customer predictions next to the actuals (the frame of
        :func:`clvlab.evaluation.holdout.holdout_predictions`).
    metrics
        Its metrics (:func:`clvlab.evaluation.holdout.holdout_metrics` of ``predictions``).
    model
        The fitted model: a :class:`CLVModel` for a BTYD candidate, the
        :class:`GBMPredictor`, the ensemble's :class:`~clvlab.evaluation.ensemble.Blend`
        (on the validation window, that of the whole window; its predictions there are out of
        fold), None for the historical formula.
    purchase_model
        A BTYD candidate's purchase model (``"bgnbd"``, ...), else None.
    calibration
        The window's calibration summary (:func:`clvlab.calibration_holdout`'s output, the
        same for every candidate of the window): what was fitted on and judged against.
    """

    name: str
    predictions: pd.DataFrame = field(repr=False)
    metrics: dict[str, float]
    model: CLVModel | GBMPredictor | Blend | None = field(repr=False)
    purchase_model: str | None
    calibration: pd.DataFrame = field(repr=False)


@dataclass
class BacktestResult:
    """What :func:`backtest` measured.

    Attributes
    ----------
    metrics
        Holdout metrics: one row per candidate, one column per metric (reported only).
    validation_metrics
        The same on the validation window (what champions are chosen by).
    champions
        Target (``purchases``, ``churn``, ``revenue``) -> the chosen candidate.
    btyd_champions
        Target -> the best BTYD candidate by the same rule (what stands in for a GBM champion
        where the GBM cannot predict).
    btyd_candidates
        BTYD candidate name (``"bgnbd_gamma_gamma"``, or ``"bgnbd"`` for count-only data) ->
        its purchase model (``"bgnbd"``).
    skipped
        Candidate -> why it was not evaluated.
    notes
        Other things the reader must know (a shortened validation window, ...).
    windows
        ``"validation"`` and ``"holdout"``.
    candidates
        Window name -> candidate name -> its :class:`CandidateResult`.
    deciles
        Candidate -> decile table of the holdout (by predicted revenue, or purchases for
        count-only data).
    blend
        The ensemble's weights, fitted on the validation window (what a scoring model whose
        champion is the ensemble uses), or None: no ensemble.
    """

    metrics: pd.DataFrame
    validation_metrics: pd.DataFrame
    champions: dict[str, str]
    btyd_champions: dict[str, str]
    btyd_candidates: dict[str, str]
    skipped: dict[str, str]
    notes: list[str]
    windows: dict[str, Window]
    candidates: dict[str, dict[str, CandidateResult]] = field(repr=False)
    deciles: dict[str, pd.DataFrame] = field(repr=False)
    blend: Blend | None = None

    def report(self) -> dict[str, Any]:
        """A JSON-friendly summary (what ``--report`` writes)."""
        return {
            "windows": {
                name: {"fit_until": str(w.start.date()), "until": str(w.end.date())}
                for name, w in self.windows.items()
            },
            "champions": self.champions,
            "btyd_champions": self.btyd_champions,
            "skipped": self.skipped,
            "notes": self.notes,
            "ensemble_weights": None if self.blend is None else self.blend.weights,
            "holdout_metrics": self.metrics.to_dict(orient="index"),
            "validation_metrics": self.validation_metrics.to_dict(orient="index"),
            "holdout_deciles": {
                name: table.reset_index().to_dict(orient="records")
                for name, table in self.deciles.items()
            },
        }

    def btyd_candidate(self, purchase_model: str) -> str:
        """The name of the BTYD candidate of ``purchase_model`` (``"bgnbd"`` ->
        ``"bgnbd_gamma_gamma"``, or ``"bgnbd"`` for count-only data)."""
        return next(name for name, model in self.btyd_candidates.items() if model == purchase_model)

    def add_interval_coverage(self, candidate: str, level: float) -> float:
        """The share of holdout customers whose purchases fall inside the BTYD ``candidate``'s
        predictive interval at ``level`` (:func:`clvlab.intervals.purchase_count_bounds`),
        added to its holdout predictions and metrics (``interval_coverage``; computed for
        the candidate a scoring model's intervals come from, as it costs more than the
        other metrics)."""
        result = self.candidates["holdout"][candidate]
        if not isinstance(result.model, CLVModel):
            raise ClvlabError(f"{candidate!r} is not a BTYD candidate: it has no interval")
        bounds = purchase_interval(result.model, result.calibration, level)
        result.predictions[bounds.columns] = bounds
        metric = metrics.METRICS["interval_coverage"]
        coverage = result.metrics[metric.name] = metric(result.predictions)
        self.metrics.loc[candidate, metric.name] = coverage
        return coverage

    def tracking_curves(self, transactions: pd.DataFrame) -> dict[str, pd.DataFrame]:
        """Cumulative purchases over the holdout, actual and predicted by each BTYD candidate
        (:func:`clvlab.evaluation.holdout.holdout_tracking`), by candidate name.

        Parameters
        ----------
        transactions
            The transactions the backtest was run on.
        """
        window = self.windows["holdout"]
        after = transactions[transactions["date"] >= window.start + pd.Timedelta(days=1)]
        return {
            name: holdout_tracking(candidate.model, candidate.calibration, after, window.start)
            for name, candidate in self.candidates["holdout"].items()
            if isinstance(candidate.model, CLVModel)
        }


def backtest(
    transactions: pd.DataFrame,
    settings: BacktestSettings,
    *,
    customers: pd.DataFrame | None = None,
    fit_statistics: Callable[[pd.Timestamp], SufficientStatistics] | None = None,
) -> BacktestResult:
    """Score every candidate on the validation window and the holdout; choose champions on the
    validation window only.

    Parameters
    ----------
    transactions
        Canonical, cleaned transactions (see :func:`clvlab.clean_transactions`).
    settings
        The holdout, the candidates and the selection rule (for a run config:
        :func:`clvlab.training.backtest_settings`).
    customers
        Static covariates indexed by ``customer_id``; by default those named in
        ``settings.static_columns``, taken from the transactions.
    fit_statistics
        The BTYD and Gamma-Gamma models of a window are fitted on what this returns for the
        window's start (the counted statistics of every customer, e.g. from Spark) instead
        of the calibration summary of ``transactions`` (then a sample of the customers, on
        which the candidates are judged).
    """
    cutoff = pd.Timestamp(settings.calibration_end)
    end = pd.Timestamp(settings.holdout_end)
    if transactions.empty:
        raise DataError("no transactions to backtest")
    purchases = PurchaseDays.from_transactions(transactions)
    if customers is None and settings.static_columns:
        customers = customer_covariates(transactions, settings.static_columns)
    holdout = Window("holdout", cutoff, end)
    notes: list[str] = []
    validation = _validation_window(holdout, purchases.start, notes)
    skipped: dict[str, str] = {}
    if settings.gbm is not None and resolution(settings.time_unit)[0] == "H":
        skipped[GBM] = HOURLY_GBM
        settings = replace(settings, gbm=None)
    results = {}
    for window in (validation, holdout):
        results[window.name] = _evaluate(
            transactions,
            purchases,
            customers,
            settings,
            window,
            holdout.days,
            skipped,
            fit_statistics,
        )
    rule = dict(settings.selection)
    blend = _add_ensemble(results, rule, notes) if settings.ensemble else None
    tables = {name: _table(candidates) for name, candidates in results.items()}
    btyd_candidates = {
        name: candidate.purchase_model
        for name, candidate in results["holdout"].items()
        if candidate.purchase_model is not None
    }
    champions = choose_champions(tables["validation"], rule)
    btyd_champions = choose_champions(tables["validation"].loc[list(btyd_candidates)], rule)
    value = "revenue" if purchases.has_amount else "purchases"
    deciles = {
        name: metrics.decile_table(
            candidate.predictions[f"actual_{value}"], candidate.predictions[f"predicted_{value}"]
        )
        for name, candidate in results["holdout"].items()
        if f"predicted_{value}" in candidate.predictions
    }
    return BacktestResult(
        metrics=tables["holdout"],
        validation_metrics=tables["validation"],
        champions=champions,
        btyd_champions=btyd_champions,
        btyd_candidates=btyd_candidates,
        skipped=skipped,
        notes=notes,
        windows={"validation": validation, "holdout": holdout},
        candidates=results,
        deciles=deciles,
        blend=blend,
    )


def _add_ensemble(
    results: dict[str, dict[str, CandidateResult]], rule: dict[str, str], notes: list[str]
) -> Blend | None:
    """Add the ensemble of the candidates judged on both windows to each window's results
    (last, so that a tie goes to the single candidate); its weights, or None when no target
    has two candidates to blend or the validation window has too few customers for its
    folds (said in ``notes``)."""
    validation, holdout = results["validation"], results["holdout"]
    members = [name for name in validation if name in holdout]
    on_validation = {name: validation[name].predictions for name in members}
    customers = len(next(iter(on_validation.values()))) if on_validation else 0
    if customers < ENSEMBLE_MIN_CUSTOMERS:
        notes.append(
            f"ensemble skipped: {customers} customers in the validation window, fewer than "
            f"{ENSEMBLE_MIN_CUSTOMERS} to fit and judge its weights on {FOLDS} folds"
        )
        return None
    blend = fit_blend(on_validation, rule)
    if not blend.weights:
        return None
    judged = {
        "validation": out_of_fold(on_validation, rule),
        "holdout": blend.predict({name: holdout[name].predictions for name in members}),
    }
    for window, predictions in judged.items():
        calibration = next(iter(results[window].values())).calibration
        results[window][ENSEMBLE] = CandidateResult(
            ENSEMBLE, predictions, holdout_metrics(predictions), blend, None, calibration
        )
    return blend


def choose_champions(table: pd.DataFrame, rule: dict[str, str]) -> dict[str, str]:
    """The best candidate per target by the metric ``rule`` names (NaN never wins; of equals,
    the first)."""
    champions = {}
    for target, metric in rule.items():
        if metric not in table or table[metric].isna().all():
            continue
        column = table[metric]
        best = column.idxmax() if metrics.METRICS[metric].greater_is_better else column.idxmin()
        champions[target] = str(best)
    return champions


def _validation_window(holdout: Window, start: pd.Timestamp, notes: list[str]) -> Window:
    history = (holdout.start.normalize() - start.normalize()).days
    days = holdout.days
    if history < 2 * days:
        days = max(history // 2, 1)
        notes.append(
            f"validation window shortened to {days} days (the holdout has {holdout.days}): "
            f"only {history} days of data precede the holdout"
        )
    return Window("validation", holdout.start - pd.Timedelta(days=days), holdout.start)


def _evaluate(
    transactions: pd.DataFrame,
    purchases: PurchaseDays,
    customers: pd.DataFrame | None,
    settings: BacktestSettings,
    window: Window,
    horizon_days: int,
    skipped: dict[str, str],
    fit_statistics: Callable[[pd.Timestamp], SufficientStatistics] | None,
) -> dict[str, CandidateResult]:
    """Every candidate fitted before ``window`` and judged on it."""
    freq, multiplier = resolution(settings.time_unit)
    calibration = calibration_holdout(
        transactions,
        window.start,
        window.end,
        freq=freq,
        freq_multiplier=multiplier,
        litt=bool(NEEDS_LITT.intersection(settings.candidates)),
    )
    summary = calibration.rename(columns=lambda c: c.removesuffix("_cal"))
    fit_on = summary if fit_statistics is None else fit_statistics(window.start)
    candidates: dict[str, CandidateResult] = {}

    def add(
        name: str,
        predictions: pd.DataFrame,
        model: CLVModel | GBMPredictor | None,
        purchase_model: str | None = None,
    ) -> None:
        candidates[name] = CandidateResult(
            name, predictions, holdout_metrics(predictions), model, purchase_model, calibration
        )

    for name in settings.candidates:
        with stage(f"backtest on the {window.name} window: {name}") as step:
            model, _ = fit_clv_model(
                fit_on,
                name,
                engine=settings.engine,
                penalizer_coef=settings.penalizer_coef,
                time_unit=settings.time_unit,
            )
            add(model.name, holdout_predictions(model, calibration), model, name)
            step.summary = f"{len(calibration):,} customers"
    naive = historical_predictions(summary, settings.unit_days, window.days)
    add(HISTORICAL, beside_actuals(naive, calibration), None)
    if settings.gbm is not None:
        with stage(f"backtest on the {window.name} window: {GBM}") as step:
            fitted = _fit_gbm(purchases, customers, settings.gbm, window, horizon_days, skipped)
            if fitted is not None:
                gbm, predicted = fitted
                add(GBM, beside_actuals(predicted.reindex(calibration.index), calibration), gbm)
            step.summary = "trained" if fitted is not None else "skipped (see the report)"
    return candidates


def _fit_gbm(
    purchases: PurchaseDays,
    customers: pd.DataFrame | None,
    template: GBMPredictor,
    window: Window,
    horizon_days: int,
    skipped: dict[str, str],
) -> tuple[GBMPredictor, pd.DataFrame] | None:
    """A copy of ``template`` trained for ``horizon_days`` on the data up to the window's
    start, and its predictions for the window; None (and why, in ``skipped``) when it cannot
    be trained or judged."""
    if window.days != horizon_days:
        _skip(
            skipped,
            f"{window.name} window: it has {window.days} days, and a GBM is only judged on "
            f"the horizon it is trained for ({horizon_days} days)",
        )
        return None
    model = template.clone(horizon_days=horizon_days)
    try:
        model.fit(purchases, window.start, customers)
    except InsufficientHistoryError as error:
        _skip(skipped, f"{window.name} window: {error}")
        return None
    return model, model.predict(purchases, window.start, customers)


def _skip(skipped: dict[str, str], reason: str) -> None:
    skipped[GBM] = f"{skipped[GBM]}; {reason}" if GBM in skipped else reason


def _table(candidates: dict[str, CandidateResult]) -> pd.DataFrame:
    table = pd.DataFrame({name: candidate.metrics for name, candidate in candidates.items()}).T
    table.index.name = "candidate"
    return table
