"""The training job: backtest every candidate, keep each target's champion, refit, track."""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from clvlab.config import RunConfig, load_config, resolution
from clvlab.data import (
    AMOUNT,
    CUSTOMER_ID,
    DATE,
    DataReport,
    IdentityReport,
    clean_transactions,
    read_links,
    read_transactions,
    resolve_identities,
)
from clvlab.evaluation import plots
from clvlab.evaluation.backtest import BacktestResult, BacktestSettings, backtest
from clvlab.evaluation.metrics import METRICS
from clvlab.features import rfm
from clvlab.features.regularity import wheat_morrison
from clvlab.features.windows import PurchaseDays, customer_covariates
from clvlab.intervals import DEFAULT_LEVEL
from clvlab.models.btyd import NEEDS_LITT
from clvlab.models.clv import (
    BTYD,
    ENSEMBLE,
    GBM,
    TARGETS,
    CLVModel,
    TargetSource,
    fit_clv_model,
    fit_purchase_model,
)
from clvlab.models.gbm import GBMPredictor
from clvlab.models.statistics import SufficientStatistics
from clvlab.progress import stage
from clvlab.scoring import PreparedTransactions, score_prepared
from clvlab.segments import SegmentRules, add_segments, fit_segment_rules, segment_grid
from clvlab.tracking.store import check_tracking_store, tracking_uri

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from clvlab.models.contractual.model import ContractualModel
    from clvlab.tracking.registry import Decision
    from clvlab.training_contractual import ContractualTrainResult


@dataclass
class TrainResult:
    """What :func:`train` produced.

    Attributes
    ----------
    model
        The scorable model: each target's champion, refit on all data up to the holdout end.
    run_id, model_uri, experiment_id
        Where MLflow has the run and the model (``runs:/<run_id>/model``).
    backtest
        The comparison of every candidate on the validation window and the holdout.
    metrics
        Holdout metrics, one row per candidate, one column per metric (``backtest.metrics``).
    champion_metrics
        The holdout metrics of the scoring model: each metric taken from the candidate that
        predicts its target (``purchases_*``, ``churn_*``, ``revenue_*``).
    params
        Fitted parameters: ``{"calibration": {...}, "full": {...}}``; calibration: each BTYD
        candidate fitted up to the holdout start; full: the scoring model.
    data_report
        Rows read, excluded (by reason) and kept.
    figure
        The backtest figure (None with ``tracking.figures: false``).
    local_path
        The local model export (``export``, or ``tracking.export_dir``), or None.
    tags
        Provenance: clvlab version, git commit, data and config fingerprints.
    registry
        The registry decision when the model was registered (``register``), else None.
    """

    model: CLVModel
    run_id: str
    model_uri: str
    experiment_id: str
    backtest: BacktestResult = field(repr=False)
    metrics: pd.DataFrame
    champion_metrics: dict[str, float]
    params: dict[str, dict[str, float]]
    data_report: dict[str, Any]
    figure: Figure | None
    local_path: Path | None
    tags: dict[str, str]
    registry: Decision | None
    config: RunConfig = field(repr=False)

    def report(self) -> dict[str, Any]:
        """The backtest and the run as a JSON-friendly dict (what ``--report`` writes)."""
        return {
            "name": self.config.name,
            "run_id": self.run_id,
            "model_uri": self.model_uri,
            "model": self.model.label(),
            "champion_metrics": self.champion_metrics,
            **self.backtest.report(),
            "params": self.params,
            "data_report": self.data_report,
            "tags": self.tags,
            "registry": None if self.registry is None else dataclasses.asdict(self.registry),
        }


def train(
    config: str | Path | dict[str, Any] | RunConfig,
    *,
    register: str | None = None,
    export: str | Path | None = None,
) -> TrainResult | ContractualTrainResult:
    """Run the training job described by a run config (with ``setting: contractual``, that
    of :mod:`clvlab.training_contractual`, which returns a :class:`ContractualTrainResult`).

    Reads the transactions, resolves identities (``data.identity_links``) and applies the
    cleaning policy, counting every excluded row. Backtests every candidate (each BTYD model
    with Gamma-Gamma, the LightGBM predictors, the historical formula; see
    :func:`clvlab.evaluation.backtest.backtest`): champions per target are chosen on a
    validation window before the holdout, and the holdout is only reported. The scoring model
    is then fitted on all data up to the holdout end with each target's champion (or, with
    ``models.purchases`` naming a BTYD model, that model for every target), and logged to
    MLflow with the config, data report, metrics of every candidate (one nested run each),
    the backtest figure and report. With ``segments.enabled`` the model also keeps segment
    rules (:mod:`clvlab.segments`), whose cut points are fixed on its own scores of the
    training customers at the holdout end; they are logged (``segment_rules.json``) with the
    segment map (``segment_map.png``; ``tracking.figures: false`` leaves out both figures).
    Last (after registering), the run's HTML report is logged to it (``report.html``,
    :mod:`clvlab.report`). It is exported to a local folder only when asked (``export``, or
    ``<tracking.export_dir>/<name>/`` when the config sets it). With ``engine: spark`` the
    transactions are read, resolved, cleaned and counted on Spark and the BTYD models fitted
    on the counts of every customer (:mod:`clvlab.spark.training`).

    Parameters
    ----------
    config
        A YAML path, a dict or a :class:`RunConfig`.
    register
        Register the model under this name in the MLflow model registry, with the alias
        ``challenger``; ``champion`` moves to it only if it beats the current champion by the
        config's ``registry`` rule (see :func:`clvlab.tracking.registry.register`).
    export
        Also save the model to this local folder (replacing an earlier export atomically).
    """
    config = load_config(config)
    check_tracking_store(config.tracking.uri)
    if config.setting == "contractual":
        from clvlab.training_contractual import train_contractual

        return train_contractual(config, register=register, export=export)
    end = pd.Timestamp(config.split.holdout_end)
    if config.engine == "spark":
        from clvlab.spark.training import training_data

        loaded = training_data(config)
    else:
        loaded = local_training_data(config)
    try:
        return _train(config, loaded, end, register=register, export=export)
    finally:
        if loaded.close is not None:
            loaded.close()


@dataclass
class TrainingData:
    """The cleaned transactions a training job learns from, and what became of the rows.

    Attributes
    ----------
    transactions
        Canonical, cleaned transactions, sorted by customer and date. With ``engine: spark``
        those of a hash sample of ``spark.sample_customers`` customers (all of them when
        there are fewer): what the backtest judges, the GBM learns from and the segment cut
        points are fixed on.
    report
        The data report of every row read.
    identity
        The identity resolution's counts (``identity.<count>``), when links were given.
    statistics
        None, or (Spark) the counted sufficient statistics of every customer as of a date,
        which the BTYD and Gamma-Gamma models are then fitted on.
    extra
        More data-report entries (how many customers were sampled).
    close
        Frees what the data holds (Spark's persisted rows), or None.
    """

    transactions: pd.DataFrame
    report: DataReport
    identity: dict[str, int] = field(default_factory=dict)
    statistics: Callable[[pd.Timestamp], SufficientStatistics] | None = None
    extra: dict[str, int] = field(default_factory=dict)
    close: Callable[[], None] | None = None


def local_training_data(config: RunConfig) -> TrainingData:
    """Read the run config's transactions, resolve identities (``data.identity_links``) and
    apply the cleaning policy up to the holdout end, on this machine."""
    data = config.data
    with stage("read") as step:
        # All columns stay until cleaning: exact duplicates are judged on the whole row.
        transactions = read_transactions(data.source, **data.columns())
        step.summary = f"{len(transactions):,} rows from {data.source}"
    identity: dict[str, int] = {}
    if data.identity_links:
        with stage("resolve identities") as step:
            transactions, _, resolved = resolve_identities(
                transactions, read_links(data.identity_links)
            )
            identity = identity_counts(resolved)
            step.summary = ", ".join(f"{key} {value:,}" for key, value in identity.items())
    with stage("clean") as step:
        transactions, report = clean_transactions(
            transactions,
            policy=config.cleaning,
            invoice=data.invoice,
            until=pd.Timestamp(config.split.holdout_end),
        )
        step.summary = cleaned_summary(report)
    return TrainingData(transactions, report, identity)


def identity_counts(report: IdentityReport) -> dict[str, int]:
    """An identity resolution's counts as data-report entries (``identity.<count>``)."""
    return {f"identity.{key}": value for key, value in report.to_dict().items()}


def cleaned_summary(report: DataReport) -> str:
    """The line the cleaning step prints."""
    return f"{report.rows_kept:,} of {report.rows_read:,} rows kept, {report.customers:,} customers"


def _train(
    config: RunConfig,
    loaded: TrainingData,
    end: pd.Timestamp,
    *,
    register: str | None,
    export: str | Path | None,
) -> TrainResult:
    """:func:`train` on the loaded data."""
    from clvlab import tracking
    from clvlab.serving import packaging

    transactions, report, identity = loaded.transactions, loaded.report, loaded.identity
    static_columns = list(config.models.gbm.static_columns)
    customers = customer_covariates(transactions, static_columns) if static_columns else None

    settings = backtest_settings(config)
    statistics = loaded.statistics
    result = backtest(transactions, settings, customers=customers, fit_statistics=statistics)
    figures = _figures(result, transactions, config) if config.tracking.figures else {}
    kinds, btyd_champions, chosen = _choice(result, config)
    with stage("check the purchase intervals on the holdout") as step:
        # Scores' purchase intervals come from the purchases' BTYD model, whatever its source.
        level = config.scoring.intervals or DEFAULT_LEVEL
        candidate = result.btyd_candidate(btyd_champions["purchases"])
        coverage = result.add_interval_coverage(candidate, level)
        step.summary = f"{coverage:.1%} of customers inside the {level:.0%} interval"
    # Blends of the ensemble champions: target -> candidate -> weight; every BTYD model they
    # and the champions use is refit.
    blends = {
        target: result.blend.weights[target]
        for target, kind in kinds.items()
        if kind == ENSEMBLE and result.blend is not None
    }
    members = {name for weights in blends.values() for name in weights}
    btyd_names = set(btyd_champions.values()) | {
        result.btyd_candidates[name] for name in members if name in result.btyd_candidates
    }
    with stage("refit the champions on all data") as step:
        freq, multiplier = resolution(config.time_unit)
        summary = (
            rfm(
                transactions,
                end,
                freq=freq,
                freq_multiplier=multiplier,
                litt=bool(NEEDS_LITT.intersection(btyd_names)),
            )
            if statistics is None
            else statistics(end)
        )
        primary = btyd_champions["purchases"]
        engine, penalizer = settings.engine, settings.penalizer_coef
        model, excluded = fit_clv_model(
            summary, primary, engine=engine, penalizer_coef=penalizer, **model_settings(config)
        )
        btyd_models = {primary: model.purchases} | {
            name: fit_purchase_model(summary, name, engine=engine, penalizer_coef=penalizer)
            for name in sorted(btyd_names - {primary})
        }
        gbm = None
        gbm_targets = [
            target for target, kind in kinds.items() if kind == GBM or GBM in blends.get(target, {})
        ]
        if gbm_targets:
            gbm = gbm_predictor(config, result.windows["holdout"].days)
            # Only the boosters of the targets the GBM predicts (as champion or in the
            # ensemble): the others would never score.
            gbm.fit(
                PurchaseDays.from_transactions(transactions), end, customers, targets=gbm_targets
            )
        step.summary = ", ".join(f"{target}={name}" for target, name in chosen.items())

    def source(target: str) -> TargetSource:
        stand_in = btyd_models[btyd_champions[target]]
        blended = tuple(
            (
                TargetSource(BTYD, btyd_models[result.btyd_candidates[name]])
                if name in result.btyd_candidates
                else TargetSource(name, stand_in),
                weight,
            )
            for name, weight in blends.get(target, {}).items()
        )
        return TargetSource(kinds.get(target, BTYD), stand_in, blended)

    targets = [*kinds, *(target for target in btyd_champions if target not in kinds)]
    model = dataclasses.replace(
        model,
        sources={target: source(target) for target in targets},
        gbm=gbm,
        covariates=tuple(static_columns) if gbm is not None else (),
    )
    if config.segments.enabled:
        with stage("fit segments") as step:
            rules, segment_figures = _fit_segments(model, transactions, report, end, config)
            model = dataclasses.replace(model, segments=rules)
            figures |= segment_figures
            step.summary = (
                f"R, F{'' if rules.monetary_value is None else ', M'} quintiles; "
                f"value tiers by {rules.value_column}"
            )

    calibration_customers = (
        len(next(iter(result.candidates["holdout"].values())).predictions)
        if statistics is None
        else statistics(result.windows["holdout"].start).customers
    )
    data_report = {
        **identity,
        **report.to_dict(),
        **loaded.extra,
        "calibration_customers": calibration_customers,
        "customers_first_seen_in_holdout": report.customers - calibration_customers,
        **wheat_morrison(transactions).to_dict(),
        **{f"full.{k}": v for k, v in excluded.items()},
    }
    params = {
        "calibration": {
            key: value
            for candidate in result.candidates["holdout"].values()
            if isinstance(candidate.model, CLVModel)
            for key, value in _fitted_params(candidate.model).items()
        },
        "full": _fitted_params(model),
    }
    champion_metrics = {
        metric: float(result.metrics[metric].loc[chosen[METRICS[metric].target]])
        for metric in result.metrics.columns
        if METRICS[metric].target in chosen
    } | {"interval_coverage": coverage}
    example_columns = [CUSTOMER_ID, DATE] + ([AMOUNT] if AMOUNT in transactions else [])
    example = transactions[example_columns + list(model.covariates)].head(5)

    with stage("log the run to MLflow") as step:
        tags = tracking.provenance(config, transactions)
        with tracking.start_run(config) as run, tempfile.TemporaryDirectory() as scratch:
            model.version = run.model_uri  # the score table's model_version
            folder = Path(scratch) / "model"
            packaging.write_model(model, folder, example, config, tags)
            tracking.log_run(
                run,
                config,
                data_report=data_report,
                backtest=result,
                figures=figures,
                champion_metrics=champion_metrics,
                fitted_params=params,
                model_label=model.label(),
                model_folder=folder,
                tags=tags,
                segment_rules=None if model.segments is None else model.segments.to_dict(),
            )
        run_id, model_uri, experiment_id = run.run_id, run.model_uri, run.experiment_id
        step.summary = f"run {run_id} in {tracking_uri(config.tracking.uri)}"
    local_path, decision = export_and_register(
        model, example, config, tags, run_id, champion_metrics, register=register, export=export
    )
    with stage("write the run's report") as step:
        _log_report(run_id, model, loaded, end, config)
        step.summary = f"report.html in run {run_id}"
    return TrainResult(
        model=model,
        run_id=run_id,
        model_uri=model_uri,
        experiment_id=experiment_id,
        backtest=result,
        metrics=result.metrics,
        champion_metrics=champion_metrics,
        params=params,
        data_report=data_report,
        figure=figures.get("backtest.png"),
        local_path=local_path,
        tags=tags,
        registry=decision,
        config=config,
    )


def export_and_register(
    model: CLVModel | ContractualModel,
    example: pd.DataFrame,
    config: RunConfig,
    tags: dict[str, str],
    run_id: str,
    champion_metrics: dict[str, float],
    *,
    register: str | None,
    export: str | Path | None,
) -> tuple[Path | None, Decision | None]:
    """After a training run is logged: export its model to ``export`` (or
    ``<tracking.export_dir>/<name>/`` when the config sets one) and register it as
    ``register`` (see :func:`clvlab.tracking.registry.register`), each when asked. Returns
    the local folder and the registry decision (None when not done)."""
    from clvlab.serving import packaging

    if export is None and config.tracking.export_dir is not None:
        export = Path(config.tracking.export_dir) / config.name
    local_path = None
    if export is not None:
        with stage("export") as step:
            local_path = packaging.export_model(model, export, example, config, tags)
            step.summary = str(local_path)
    decision = None
    if register:
        from clvlab.tracking.registry import register as register_model

        with stage(f"register as {register}") as step:
            decision = register_model(
                f"runs:/{run_id}/model",
                register,
                run_id=run_id,
                config=config,
                metrics=champion_metrics,
                tags=tags,
            )
            step.summary = f"version {decision.version}, champion " + (
                "moved to it" if decision.promoted else "kept"
            )
    return local_path, decision


def backtest_settings(config: RunConfig) -> BacktestSettings:
    """The backtest a run config describes (its ``split``, ``time_unit``, ``models`` and
    ``selection``): the BTYD candidates ``models.candidates`` and the model
    ``models.purchases`` pins if it is not among them, the GBM candidate unless
    ``models.gbm.enabled`` is false and the ensemble unless ``models.ensemble`` is false."""
    models = config.models
    candidates: list[str] = list(models.candidates)
    if models.purchases not in ("champion", *candidates):
        candidates.append(models.purchases)
    holdout_days = (config.split.holdout_end - config.split.calibration_end).days
    return BacktestSettings(
        calibration_end=config.split.calibration_end,
        holdout_end=config.split.holdout_end,
        time_unit=config.time_unit,
        candidates=tuple(candidates),
        selection=config.selection.as_dict(),
        engine=models.engine,
        penalizer_coef=models.penalizer_coef,
        gbm=gbm_predictor(config, holdout_days) if models.gbm.enabled else None,
        static_columns=tuple(models.gbm.static_columns),
        ensemble=models.ensemble,
    )


def gbm_predictor(config: RunConfig, horizon_days: float) -> GBMPredictor:
    """An unfitted :class:`GBMPredictor` with the run config's settings (``models.gbm``,
    ``time_unit``), for ``horizon_days``."""
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


def model_settings(config: RunConfig) -> dict[str, Any]:
    """The scoring model's settings from a run config: :class:`CLVModel`'s ``time_unit``,
    ``horizon_days``, ``annual_discount_rate``, ``discounting``, ``interval_level``, and how
    the transactions were read (``columns``) and cleaned (``cleaning``), to be applied again
    when scoring."""
    return {
        "time_unit": config.time_unit,
        "horizon_days": config.scoring.horizon_days,
        "annual_discount_rate": config.scoring.annual_discount_rate,
        "discounting": config.scoring.discounting,
        "interval_level": config.scoring.intervals,
        "columns": {**config.data.columns(), "invoice": config.data.invoice},
        "cleaning": dataclasses.asdict(config.cleaning),
    }


def _choice(
    result: BacktestResult, config: RunConfig
) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """What the scoring model uses, per target: the kind of its source (``"btyd"``,
    ``"gbm"``, ``"historical"``, ``"ensemble"``), its BTYD purchase model (every target: an
    ensemble's stand-in), and the backtest candidate whose holdout metrics are the scoring
    model's."""
    pinned = config.models.purchases
    if pinned != "champion":
        return (
            dict.fromkeys(TARGETS, BTYD),
            dict.fromkeys(TARGETS, pinned),
            dict.fromkeys(TARGETS, result.btyd_candidate(pinned)),
        )
    btyd_champions = {
        target: result.btyd_candidates[candidate]
        for target, candidate in result.btyd_champions.items()
    }
    # Without any usable metric for a target (e.g. a holdout without churners), the first
    # candidate answers for it.
    default = result.btyd_candidates[next(iter(result.btyd_candidates))]
    for target in TARGETS:
        btyd_champions.setdefault(target, btyd_champions.get("purchases", default))
    kinds = {
        target: BTYD if candidate in result.btyd_candidates else candidate
        for target, candidate in result.champions.items()
    }
    return kinds, btyd_champions, dict(result.champions)


def _figures(
    result: BacktestResult, transactions: pd.DataFrame, config: RunConfig
) -> dict[str, Figure]:
    """The backtest's figures (:func:`clvlab.evaluation.plots.backtest_figures`)."""
    holdout = result.windows["holdout"]
    return plots.backtest_figures(
        {name: candidate.predictions for name, candidate in result.candidates["holdout"].items()},
        result.tracking_curves(transactions),
        start=holdout.start,
        end=holdout.end,
        time_unit=config.time_unit,
        unit_days=config.unit_days,
        run_name=config.name,
    )


def _fit_segments(
    model: CLVModel,
    transactions: pd.DataFrame,
    report: DataReport,
    end: pd.Timestamp,
    config: RunConfig,
) -> tuple[SegmentRules, dict[str, Figure]]:
    """The segment rules fixed on the model's own scores of the training ``transactions`` at
    ``end`` (:func:`clvlab.segments.fit_segment_rules`, with the config's ``segments``), and
    the segment map of those customers (:func:`clvlab.evaluation.plots.segment_map`; none
    with ``tracking.figures: false``)."""
    no_exclusions = pd.Index([], dtype="string", name=CUSTOMER_ID)
    prepared = PreparedTransactions(transactions, no_exclusions, report)
    scores, _ = score_prepared(model, prepared, end, None)
    settings = {"unit_days": model.unit_days, "horizon_days": model.horizon_days}
    rules = fit_segment_rules(
        scores,
        value_quantiles=config.segments.value_tiers,
        churn_thresholds=config.segments.churn_tiers,
        **settings,
    )
    if not config.tracking.figures:
        return rules, {}
    grid = segment_grid(add_segments(scores, rules, **settings), rules.value_column)
    figures = plots.segment_map(
        grid,
        value=rules.value_column,
        axis="F score" if rules.monetary_value is None else "FM score",
        run_name=config.name,
    )
    return rules, figures


def _log_report(
    run_id: str, model: CLVModel, loaded: TrainingData, end: pd.Timestamp, config: RunConfig
) -> None:
    """Log the run's HTML report (:func:`clvlab.report.log_report`), with the top customers of
    the model's scores of the training transactions at ``end``."""
    from clvlab.report import ScoredCustomers, log_report

    no_exclusions = pd.Index([], dtype="string", name=CUSTOMER_ID)
    prepared = PreparedTransactions(loaded.transactions, no_exclusions, loaded.report)
    scores, _ = score_prepared(model, prepared, end, None)
    whose = "the" if loaded.statistics is None else "a sample of"
    described = f"{whose} {len(scores):,} training customers of {config.data.source}"
    customers = ScoredCustomers(scores, end, described)
    log_report(run_id, customers, configured_store=config.tracking.uri)


def _fitted_params(model: CLVModel) -> dict[str, float]:
    """A model's fitted parameters, flat: ``<purchase model>.<param>`` and its
    ``log_likelihood``, ``gamma_gamma.<param>``, and ``gbm.trees.<target>``."""
    params: dict[str, float] = {}
    for name, estimator in model.purchase_models().items():
        params.update({f"{name}.{k}": float(v) for k, v in estimator.params_.items()})
        params[f"{name}.log_likelihood"] = float(estimator.log_likelihood_)
    if model.spend is not None:
        params.update({f"gamma_gamma.{k}": float(v) for k, v in model.spend.params_.items()})
    if model.gbm is not None:
        params.update({f"gbm.trees.{k}": float(v) for k, v in model.gbm.best_iterations_.items()})
    return params
