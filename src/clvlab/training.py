"""The training job: fit on the calibration period, evaluate on the holdout, refit, track."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from clvlab.config import RunConfig, load_config
from clvlab.data import (
    AMOUNT,
    CUSTOMER_ID,
    DATE,
    clean_transactions,
    read_links,
    read_transactions,
    resolve_identities,
)
from clvlab.evaluation import holdout_metrics, holdout_predictions, holdout_tracking
from clvlab.evaluation.plots import holdout_figure
from clvlab.features import calibration_holdout, rfm
from clvlab.models.clv import CLVModel, fit_clv_model

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass
class TrainResult:
    """What :func:`train` produced.

    Attributes
    ----------
    model
        The scorable model, refit on all data up to the holdout end.
    run_id, model_uri, experiment_id
        Where MLflow has the run and the model (``runs:/<run_id>/model``).
    metrics
        Holdout metrics, one row per model, one column per metric.
    params
        Fitted parameters: ``{"calibration": {...}, "full": {...}}``.
    data_report
        Rows read, excluded (by reason) and kept.
    figure
        The holdout plot.
    local_path
        The local model export under ``models/``.
    """

    model: CLVModel
    run_id: str
    model_uri: str
    experiment_id: str
    metrics: pd.DataFrame
    params: dict[str, dict[str, float]]
    data_report: dict[str, Any]
    figure: Figure
    local_path: Path
    config: RunConfig = field(repr=False)

    def report(self) -> dict[str, Any]:
        """The holdout evaluation as a JSON-friendly dict (what ``--report`` writes)."""
        return {
            "name": self.config.name,
            "run_id": self.run_id,
            "model_uri": self.model_uri,
            "metrics": self.metrics.to_dict(orient="index"),
            "params": self.params,
            "data_report": self.data_report,
        }


def _fitted_params(model: CLVModel, config: RunConfig) -> dict[str, float]:
    key = config.models.purchases
    params = {f"{key}.{k}": float(v) for k, v in model.purchases.params_.items()}
    params[f"{key}.log_likelihood"] = float(model.purchases.log_likelihood_)
    if model.spend is not None:
        params.update({f"gamma_gamma.{k}": float(v) for k, v in model.spend.params_.items()})
    return params


def train(config: str | Path | dict[str, Any] | RunConfig) -> TrainResult:
    """Run the training job described by a run config.

    Reads the transactions, resolves identities (``data.identity_links``) and applies the
    cleaning policy, counting every excluded row; fits BG/NBD and Gamma-Gamma on the
    calibration period, evaluates them on the holdout,
    refits on all data up to the holdout end and logs config, data report, metrics, the holdout
    plot and the scorable model to MLflow; the model is also exported to
    ``<tracking.export_dir>/<name>/``.

    Parameters
    ----------
    config
        A YAML path, a dict or a :class:`RunConfig`.
    """
    from clvlab import tracking

    config = load_config(config)
    tracking.check_tracking_store()
    data = config.data
    # All columns stay until cleaning: exact duplicates are judged on the whole source row.
    transactions = read_transactions(data.source, **data.columns())
    identity: dict[str, int] = {}
    if data.identity_links:
        transactions, _, resolved = resolve_identities(
            transactions, read_links(data.identity_links)
        )
        identity = {f"identity.{key}": value for key, value in resolved.to_dict().items()}
    cutoff = pd.Timestamp(config.split.calibration_end)
    end = pd.Timestamp(config.split.holdout_end)
    transactions, report = clean_transactions(
        transactions, policy=config.cleaning, invoice=data.invoice, until=end
    )

    calibration = calibration_holdout(
        transactions, cutoff, end, freq="D", freq_multiplier=config.unit_days
    )
    calibration_model, excluded_cal = fit_clv_model(
        calibration.rename(columns=lambda c: c.removesuffix("_cal")), config
    )
    predictions = holdout_predictions(calibration_model, calibration)
    metrics = pd.DataFrame([holdout_metrics(predictions)], index=[calibration_model.name])
    metrics.index.name = "model"
    holdout_rows = transactions[
        (transactions[DATE] >= cutoff + pd.Timedelta(days=1))
        & transactions[CUSTOMER_ID].isin(calibration.index)
    ]
    tracking_curve = holdout_tracking(calibration_model, calibration, holdout_rows, cutoff)
    figure = holdout_figure(
        predictions,
        tracking_curve,
        config.time_unit,
        title=f"{config.name}: holdout {cutoff.date()} to {end.date()}",
    )

    summary = rfm(transactions, end, freq="D", freq_multiplier=config.unit_days)
    model, excluded_full = fit_clv_model(summary, config)
    params = {
        "calibration": _fitted_params(calibration_model, config),
        "full": _fitted_params(model, config),
    }
    data_report = {
        **identity,
        **report.to_dict(),
        "calibration_customers": len(calibration),
        "customers_first_seen_in_holdout": report.customers - len(calibration),
        **{f"calibration.{k}": v for k, v in excluded_cal.items()},
        **{f"full.{k}": v for k, v in excluded_full.items()},
    }
    example_columns = [CUSTOMER_ID, DATE] + ([AMOUNT] if AMOUNT in transactions else [])
    example = transactions[example_columns].head(5)

    run_id, model_uri, experiment_id = tracking.log_run(
        config,
        data_report=data_report,
        metrics=metrics,
        fitted_params=params,
        figures={"holdout.png": figure},
        model=model,
        input_example=example,
    )
    local_path = tracking.export_model(
        model, Path(config.tracking.export_dir) / config.name, example
    )
    return TrainResult(
        model=model,
        run_id=run_id,
        model_uri=model_uri,
        experiment_id=experiment_id,
        metrics=metrics,
        params=params,
        data_report=data_report,
        figure=figure,
        local_path=local_path,
        config=config,
    )
