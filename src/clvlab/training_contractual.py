"""``clvlab train`` with ``setting: contractual``: sBG churn models of a subscription
business, backtested, logged to MLflow and registered like the non-contractual models.

The subscriptions (``data.source``; columns in ``data.customer_id`` and the
``subscriptions`` section) are read and validated, every excluded row counted. Two
candidates are compared: one sBG per cohort (the period a subscription started in; a cohort
with fewer than 20 cancellations is scored by the pooled model) and one pooled over every
subscriber. Each is fitted on the subscriptions as they stood at the start
of a window and judged on who churned within it: each subscription active then gets
P(churn before the window's end) = 1 - S(n + k | n), n its periods completed then and k the
renewals due in the window. The champion is the better of the two by ``selection.churn`` on
the validation window (the window of the same length just before the holdout), unless
``subscriptions.cohorts`` pins one; the holdout is only reported. The scoring model is the
champion refit on the subscriptions at the holdout end (a cohort model always keeps the
pooled one for cohorts that start later).
"""

from __future__ import annotations

import dataclasses
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from clvlab.config import RunConfig
from clvlab.data.subscriptions import read_subscriptions, subscriber_periods
from clvlab.evaluation.metrics import METRICS, evaluate
from clvlab.models.btyd import convergence_warning
from clvlab.models.contractual.model import ContractualModel
from clvlab.models.contractual.subscribers import ALL, fit_cohorts
from clvlab.progress import stage
from clvlab.scoring_contractual import score_subscription_table
from clvlab.tracking.store import tracking_uri
from clvlab.training import export_and_register

if TYPE_CHECKING:
    from clvlab.tracking.registry import Decision

#: The candidates: one sBG per cohort, one for all.
BY_COHORT = "sbg_by_cohort"
POOLED = "sbg_pooled"
#: Churned subscriptions a cohort needs for a model of its own (two parameters to identify);
#: the other cohorts are scored by the pooled model.
MIN_COHORT_CHURNED = 20


@dataclass
class ContractualTrainResult:
    """What ``clvlab train`` with ``setting: contractual`` made (see
    :class:`clvlab.training.TrainResult` for the non-contractual one).

    Attributes
    ----------
    model
        The scoring model: the champion refit on the subscriptions at the holdout end.
    run_id, model_uri, experiment_id
        Where MLflow has the run and the model.
    metrics, validation_metrics
        Churn metrics of each candidate on the holdout and on the validation window.
    champion
        The candidate the scoring model is (``sbg_by_cohort`` or ``sbg_pooled``).
    champion_metrics
        Its holdout metrics (logged as ``holdout.<metric>``).
    params
        Fitted parameters (``<cohort>.alpha``, ``<cohort>.beta``) of the scoring model.
    data_report
        Rows read, excluded (by reason) and kept, subscribers and active subscriptions.
    windows
        ``"validation"`` and ``"holdout"``: (start, end).
    notes
        What the reader must know (a window without churn to judge on, ...).
    local_path, tags, registry, config
        As in :class:`clvlab.training.TrainResult`.
    """

    model: ContractualModel
    run_id: str
    model_uri: str
    experiment_id: str
    metrics: pd.DataFrame
    validation_metrics: pd.DataFrame
    champion: str
    champion_metrics: dict[str, float]
    params: dict[str, float]
    data_report: dict[str, Any]
    windows: dict[str, tuple[pd.Timestamp, pd.Timestamp]]
    notes: list[str]
    local_path: Path | None
    tags: dict[str, str]
    registry: Decision | None
    config: RunConfig = field(repr=False)

    def report(self) -> dict[str, Any]:
        """The backtest and the run as a JSON-friendly dict (what ``--report`` writes)."""
        return {
            "name": self.config.name,
            "setting": "contractual",
            "run_id": self.run_id,
            "model_uri": self.model_uri,
            "model": self.model.label(),
            "champion": self.champion,
            "champion_metrics": self.champion_metrics,
            **_backtest_report(self),
            "params": self.params,
            "data_report": self.data_report,
            "tags": self.tags,
            "registry": None if self.registry is None else dataclasses.asdict(self.registry),
        }


def fit_contractual(periods: pd.DataFrame, candidate: str, config: RunConfig) -> ContractualModel:
    """The ``candidate``'s model (:data:`BY_COHORT` or :data:`POOLED`) fitted on
    :func:`clvlab.subscriber_periods`' table."""
    settings = config.subscriptions
    models = fit_cohorts(periods, by=None)
    if candidate == BY_COHORT:
        churned = periods.groupby("cohort")["churned"].sum()
        fitted = periods[periods["cohort"].isin(churned.index[churned >= MIN_COHORT_CHURNED])]
        with warnings.catch_warnings():  # the cohorts are judged together, in the backtest
            warnings.simplefilter("ignore", convergence_warning())
            models = {**fit_cohorts(fitted, by="cohort"), ALL: models[ALL]}
    return ContractualModel(
        models,
        period=settings.period,
        horizon_periods=settings.horizon_periods,
        annual_discount_rate=config.scoring.annual_discount_rate,
        columns=_columns(config),
        name=config.name,
    )


def churn_in_window(
    model: ContractualModel, subscriptions: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp
) -> pd.DataFrame:
    """Each subscription active at ``start`` with whether it churned by ``end``
    (``actual_churn``) and the model's probability of that (``p_churn``)."""
    started = subscriptions[subscriptions["start"] <= start]
    at_start = subscriber_periods(started, start, model.period)
    active = ~at_start["churned"].to_numpy(dtype=bool)
    at_end = subscriber_periods(started, end, model.period)
    never_ending = started.assign(end=pd.Series(pd.NaT, index=started.index, dtype="M8[ns]"))
    if_active = subscriber_periods(never_ending, end, model.period)
    completed = at_start["periods"].to_numpy(dtype=float)
    ahead = if_active["periods"].to_numpy(dtype=float) - completed
    frame = pd.DataFrame(
        {
            "actual_churn": at_end["churned"].to_numpy(dtype=bool),
            "p_churn": model.churn_within(at_start, ahead),
        }
    )
    return frame[active].reset_index(drop=True)


def train_contractual(
    config: RunConfig, *, register: str | None = None, export: str | Path | None = None
) -> ContractualTrainResult:
    """:func:`clvlab.train` for ``setting: contractual`` (see the module docstring)."""
    from clvlab import tracking
    from clvlab.serving import packaging

    holdout_start = pd.Timestamp(config.split.calibration_end)
    end = pd.Timestamp(config.split.holdout_end)
    validation_start = holdout_start - (end - holdout_start)
    windows = {"validation": (validation_start, holdout_start), "holdout": (holdout_start, end)}
    with stage("read") as step:
        settings = config.subscriptions
        subscriptions, report = read_subscriptions(
            config.data.source,
            customer_id=config.data.customer_id,
            start=settings.start,
            end=settings.end,
            price=settings.price,
            date_format=config.data.date_format,
        )
        kept = subscriptions[subscriptions["start"] <= end]
        read_report = report.to_dict()  # what scoring the file reports
        step.summary = f"{report.rows_kept:,} of {report.rows_read:,} subscriptions kept"
    # Subscriptions starting after the holdout end are excluded (and counted) too.
    report.excluded["starts_after_holdout_end"] = report.rows_kept - len(kept)
    report.rows_kept = len(kept)
    report.subscribers = int(kept["customer_id"].nunique())
    report.active = int(kept["end"].isna().sum())
    data_report = report.to_dict()
    candidates = (BY_COHORT, POOLED)
    tables: dict[str, pd.DataFrame] = {}
    notes: list[str] = []
    for window, (start, until) in windows.items():
        with stage(f"backtest on the {window} window") as step:
            rows = {}
            periods = subscriber_periods(
                kept[kept["start"] <= start], start, config.subscriptions.period
            )
            for candidate in candidates:
                if periods.empty:
                    continue
                model = fit_contractual(periods, candidate, config)
                judged = churn_in_window(model, kept, start, until)
                if judged["actual_churn"].nunique() < 2:
                    continue
                rows[candidate] = evaluate(judged)
            tables[window] = pd.DataFrame.from_dict(rows, orient="index")
            if not rows:
                notes.append(
                    f"{window} window ({start.date()} to {until.date()}): no subscription "
                    "active at its start both churned and stayed in it, so nothing to judge"
                )
            step.summary = f"{len(rows)} candidates judged"
    champion = _champion(config, tables["validation"], notes)
    with stage("refit the champion on all data") as step:
        periods = subscriber_periods(kept, end, config.subscriptions.period)
        model = fit_contractual(periods, champion, config)
        step.summary = model.label()
    holdout = tables["holdout"]
    champion_metrics = (
        {str(k): float(v) for k, v in holdout.loc[champion].to_dict().items()}
        if champion in holdout.index
        else {}
    )
    params = {
        f"{cohort}.{name}": float(value)
        for cohort, sbg in model.models.items()
        for name, value in sbg.params_.items()
    }
    with stage("log the run to MLflow") as step:
        tags = tracking.provenance(config, subscriptions)
        with tracking.start_run(config) as run, tempfile.TemporaryDirectory() as scratch:
            model.version = run.model_uri
            folder = Path(scratch) / "model"
            example = _input_example(subscriptions, config)
            packaging.write_model(model, folder, example, config, tags)
            tracking.log_contractual_run(
                run,
                config,
                data_report=data_report,
                backtest=_backtest_report_of(tables, windows, champion, notes),
                champion_metrics=champion_metrics,
                fitted_params=params,
                model_label=model.label(),
                model_folder=folder,
                tags=tags,
            )
        step.summary = f"run {run.run_id} in {tracking_uri(config.tracking.uri)}"
    local_path, decision = export_and_register(
        model, example, config, tags, run.run_id, champion_metrics, register=register, export=export
    )
    with stage("write the run's report") as step:
        from clvlab.report import ScoredCustomers, log_report

        scores = score_subscription_table(model, subscriptions, read_report, as_of=end)
        described = f"the {len(scores):,} subscriptions of {config.data.source}"
        customers = ScoredCustomers(scores, end, described)
        log_report(run.run_id, customers, configured_store=config.tracking.uri)
        step.summary = f"report.html in run {run.run_id}"
    return ContractualTrainResult(
        model=model,
        run_id=run.run_id,
        model_uri=run.model_uri,
        experiment_id=run.experiment_id,
        metrics=holdout,
        validation_metrics=tables["validation"],
        champion=champion,
        champion_metrics=champion_metrics,
        params=params,
        data_report=data_report,
        windows=windows,
        notes=notes,
        local_path=local_path,
        tags=tags,
        registry=decision,
        config=config,
    )


def _champion(config: RunConfig, validation: pd.DataFrame, notes: list[str]) -> str:
    """The candidate the config pins, else the better on the validation window by
    ``selection.churn`` (pooled when the window judged none)."""
    pinned = config.subscriptions.cohorts
    if pinned != "champion":
        return BY_COHORT if pinned == "by_cohort" else POOLED
    metric = config.selection.churn
    if validation.empty or metric not in validation:
        notes.append("no validation metrics: the pooled model is the champion")
        return POOLED
    values = validation[metric].dropna()
    if values.empty:
        return POOLED
    best = values.idxmax() if METRICS[metric].greater_is_better else values.idxmin()
    return str(best)


def _columns(config: RunConfig) -> dict[str, str | None]:
    settings = config.subscriptions
    return {
        "customer_id": config.data.customer_id,
        "start": settings.start,
        "end": settings.end,
        "price": settings.price,
        "date_format": config.data.date_format,
    }


def _input_example(subscriptions: pd.DataFrame, config: RunConfig) -> pd.DataFrame:
    """A few subscriptions under the config's column names (the served model's input)."""
    names = {key: value for key, value in _columns(config).items() if key != "date_format"}
    head = subscriptions.head(5)
    example = pd.DataFrame({names["customer_id"]: head["customer_id"].astype(str)})
    example[names["start"]] = head["start"].dt.strftime("%Y-%m-%d")
    example[names["end"]] = head["end"].dt.strftime("%Y-%m-%d").fillna("")
    if names["price"] and "price" in head:
        example[names["price"]] = head["price"].astype(float)
    return example


def _backtest_report_of(
    tables: dict[str, pd.DataFrame],
    windows: dict[str, tuple[pd.Timestamp, pd.Timestamp]],
    champion: str,
    notes: list[str],
) -> dict[str, Any]:
    return {
        "windows": {
            name: {"fit_until": str(start.date()), "until": str(until.date())}
            for name, (start, until) in windows.items()
        },
        "champions": {"churn": champion},
        "notes": notes,
        "holdout_metrics": _finite(tables["holdout"]),
        "validation_metrics": _finite(tables["validation"]),
    }


def _backtest_report(result: ContractualTrainResult) -> dict[str, Any]:
    return _backtest_report_of(
        {"holdout": result.metrics, "validation": result.validation_metrics},
        result.windows,
        result.champion,
        result.notes,
    )


def _finite(table: pd.DataFrame) -> dict[str, dict[str, float | None]]:
    return {
        str(name): {str(k): (float(v) if np.isfinite(v) else None) for k, v in row.items()}
        for name, row in table.iterrows()
    }
