"""One backtest for every candidate model, and champion selection that never sees the holdout.

Two windows of the same data:

- the **holdout**: the config's ``calibration_end`` to ``holdout_end`` (``H`` days). It is only
  reported: candidates are fitted on the data up to ``calibration_end`` and scored on it.
- the **validation** window: the ``H`` days before ``calibration_end``, with candidates fitted
  on the data before it. Champions are chosen here, one per target (purchases, churn,
  revenue), by the metric the config names. When the history before the holdout is shorter
  than ``2 H``, the validation window is shortened to half of that history, and said so.

The candidates: each BTYD purchase model (with Gamma-Gamma when there are amounts), the
LightGBM predictors of :mod:`clvlab.models.gbm` trained for exactly ``H`` days, and the naive
historical formula (each customer's past repeat-purchase rate and mean spend carried
forward: average value x purchases per period x periods; churn as a Poisson zero at that
rate). A GBM
that the data cannot train for ``H`` days, or that the validation window cannot judge for
``H`` days, is skipped with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from clvlab.config import RunConfig, load_config
from clvlab.errors import DataError
from clvlab.evaluation import metrics
from clvlab.evaluation.holdout import beside_actuals, holdout_metrics, holdout_predictions
from clvlab.features.rfm import calibration_holdout
from clvlab.features.windows import PurchaseDays, customer_covariates
from clvlab.models.clv import GBM, fit_clv_model
from clvlab.models.gbm import GBMPredictor, InsufficientHistoryError
from clvlab.models.historical import HISTORICAL, historical_predictions
from clvlab.progress import stage

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Selection metrics for which higher is better (for the others lower is).
HIGHER_IS_BETTER = {"churn_roc_auc", "revenue_normalized_gini", "revenue_top_decile_capture"}


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
    predictions
        Window name -> candidate -> per-customer predictions next to the actuals.
    deciles
        Candidate -> decile table of the holdout (by predicted revenue, or purchases for
        count-only data).
    figures
        File name -> matplotlib figure.
    """

    metrics: pd.DataFrame
    validation_metrics: pd.DataFrame
    champions: dict[str, str]
    btyd_champions: dict[str, str]
    btyd_candidates: dict[str, str]
    skipped: dict[str, str]
    notes: list[str]
    windows: dict[str, Window]
    predictions: dict[str, dict[str, pd.DataFrame]] = field(repr=False)
    deciles: dict[str, pd.DataFrame] = field(repr=False)
    figures: dict[str, Figure] = field(repr=False, default_factory=dict)

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
            "holdout_metrics": self.metrics.to_dict(orient="index"),
            "validation_metrics": self.validation_metrics.to_dict(orient="index"),
            "holdout_deciles": {
                name: table.reset_index().to_dict(orient="records")
                for name, table in self.deciles.items()
            },
        }


def backtest(
    transactions: pd.DataFrame,
    config: RunConfig | dict[str, Any] | str,
    *,
    customers: pd.DataFrame | None = None,
    figures: bool = True,
) -> BacktestResult:
    """Score every candidate on the validation window and the holdout; choose champions on the
    validation window only.

    Parameters
    ----------
    transactions
        Canonical, cleaned transactions (see :func:`clvlab.clean_transactions`).
    config
        The run config (its ``split``, ``time_unit``, ``models`` and ``selection``).
    customers
        Static covariates indexed by ``customer_id``; by default those named in
        ``models.gbm.static_columns``, taken from the transactions.
    figures
        Whether to draw the figures.
    """
    config = load_config(config)
    cutoff = pd.Timestamp(config.split.calibration_end)
    end = pd.Timestamp(config.split.holdout_end)
    if transactions.empty:
        raise DataError("no transactions to backtest")
    purchases = PurchaseDays.from_transactions(transactions)
    if customers is None and config.models.gbm.static_columns:
        customers = customer_covariates(transactions, config.models.gbm.static_columns)
    holdout = Window("holdout", cutoff, end)
    notes: list[str] = []
    validation = _validation_window(holdout, purchases.start, notes)
    skipped: dict[str, str] = {}
    results = {}
    for window in (validation, holdout):
        results[window.name] = _evaluate(
            transactions, purchases, customers, config, window, holdout.days, skipped
        )
    tables = {name: _table(preds) for name, preds in results.items()}
    rule = config.selection.as_dict()
    btyd_candidates = {
        name: frame.attrs["purchase_model"]
        for name, frame in results["holdout"].items()
        if "purchase_model" in frame.attrs
    }
    champions = choose_champions(tables["validation"], rule)
    btyd_champions = choose_champions(tables["validation"].loc[list(btyd_candidates)], rule)
    has_revenue = purchases.has_amount
    deciles = {
        name: metrics.decile_table(
            frame["actual_revenue" if has_revenue else "actual_purchases"],
            frame["predicted_revenue" if has_revenue else "predicted_purchases"],
        )
        for name, frame in results["holdout"].items()
    }
    result = BacktestResult(
        metrics=tables["holdout"],
        validation_metrics=tables["validation"],
        champions=champions,
        btyd_champions=btyd_champions,
        btyd_candidates=btyd_candidates,
        skipped=skipped,
        notes=notes,
        windows={"validation": validation, "holdout": holdout},
        predictions=results,
        deciles=deciles,
    )
    if figures:
        from clvlab.evaluation.plots import backtest_figures

        result.figures = backtest_figures(result, transactions, config)
    return result


def choose_champions(table: pd.DataFrame, rule: dict[str, str]) -> dict[str, str]:
    """The best candidate per target by the metric ``rule`` names (NaN never wins)."""
    champions = {}
    for target, metric in rule.items():
        if metric not in table or table[metric].isna().all():
            continue
        column = table[metric]
        champions[target] = str(column.idxmax() if metric in HIGHER_IS_BETTER else column.idxmin())
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
    config: RunConfig,
    window: Window,
    horizon_days: int,
    skipped: dict[str, str],
) -> dict[str, pd.DataFrame]:
    """Per-customer predictions and actuals of every candidate on one window (a BTYD
    candidate's purchase model name, fitted :class:`CLVModel` and the calibration summary in
    its frame's ``attrs``, the last two for the tracking plot)."""
    calibration = calibration_holdout(
        transactions, window.start, window.end, freq="D", freq_multiplier=config.unit_days
    )
    summary = calibration.rename(columns=lambda c: c.removesuffix("_cal"))
    predictions = {}
    for name in btyd_candidates(config):
        with stage(f"backtest on the {window.name} window: {name}") as step:
            model, _ = fit_clv_model(summary, config, name)
            predictions[model.name] = holdout_predictions(model, calibration)
            predictions[model.name].attrs.update(
                purchase_model=name, model=model, calibration=calibration
            )
            step.summary = f"{len(calibration):,} customers"
    naive = historical_predictions(summary, config.unit_days, window.days)
    predictions[HISTORICAL] = beside_actuals(naive, calibration)
    if config.models.gbm.enabled:
        with stage(f"backtest on the {window.name} window: {GBM}") as step:
            gbm = _gbm_predictions(purchases, customers, config, window, horizon_days, skipped)
            if gbm is not None:
                predictions[GBM] = beside_actuals(gbm.reindex(calibration.index), calibration)
            step.summary = "trained" if gbm is not None else "skipped (see the report)"
    return predictions


def _gbm_predictions(
    purchases: PurchaseDays,
    customers: pd.DataFrame | None,
    config: RunConfig,
    window: Window,
    horizon_days: int,
    skipped: dict[str, str],
) -> pd.DataFrame | None:
    if window.days != horizon_days:
        _skip(
            skipped,
            f"{window.name} window: it has {window.days} days, and a GBM is only judged on "
            f"the horizon it is trained for ({horizon_days} days)",
        )
        return None
    model = gbm_from_config(config, horizon_days)
    try:
        model.fit(purchases, window.start, customers)
    except InsufficientHistoryError as error:
        _skip(skipped, f"{window.name} window: {error}")
        return None
    return model.predict(purchases, window.start, customers)


def _skip(skipped: dict[str, str], reason: str) -> None:
    skipped[GBM] = f"{skipped[GBM]}; {reason}" if GBM in skipped else reason


def btyd_candidates(config: RunConfig) -> list[str]:
    """The BTYD purchase models of the backtest: ``models.candidates``, and the model
    ``models.purchases`` pins if it is not among them."""
    names = list(config.models.candidates)
    if config.models.purchases not in ("champion", *names):
        names.append(config.models.purchases)
    return names


def gbm_from_config(config: RunConfig, horizon_days: float) -> GBMPredictor:
    """A :class:`GBMPredictor` with the config's settings, for ``horizon_days``."""
    settings = config.models.gbm
    return GBMPredictor(
        horizon_days,
        unit_days=config.unit_days,
        windows=settings.windows_days,
        origin_step_days=settings.origin_step_days,
        max_origins=settings.max_origins,
        min_history_days=settings.min_history_days,
        hybrid=settings.hybrid,
        learning_rate=settings.learning_rate,
        num_leaves=settings.num_leaves,
        min_child_samples=settings.min_child_samples,
        n_estimators=settings.n_estimators,
        early_stopping_rounds=settings.early_stopping_rounds,
        random_state=settings.seed,
    )


def _table(predictions: dict[str, pd.DataFrame]) -> pd.DataFrame:
    table = pd.DataFrame({name: holdout_metrics(frame) for name, frame in predictions.items()}).T
    table.index.name = "candidate"
    return table
