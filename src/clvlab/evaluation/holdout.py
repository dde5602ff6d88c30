"""Evaluate a fitted model's predictions on a holdout period it did not see."""

from __future__ import annotations

import numpy as np
import pandas as pd

from clvlab.config import resolution
from clvlab.evaluation import metrics
from clvlab.features.rfm import period_bounds
from clvlab.intervals import purchase_count_bounds
from clvlab.models.clv import CLVModel


def holdout_predictions(model: CLVModel, calibration: pd.DataFrame) -> pd.DataFrame:
    """Predict each calibration customer's holdout period next to what they actually did.

    Parameters
    ----------
    model
        Model fitted on the calibration period, in the units of ``calibration``.
    calibration
        Output of :func:`clvlab.calibration_holdout` in ``model.time_unit`` units.

    Returns
    -------
    pandas.DataFrame
        ``frequency_cal``, ``actual_purchases``, ``predicted_purchases``, ``actual_churn``
        (no purchase in the holdout), ``p_churn`` and, with amounts, ``actual_revenue`` and
        ``predicted_revenue``.
    """
    summary = calibration.rename(
        columns={
            "frequency_cal": "frequency",
            "recency_cal": "recency",
            "T_cal": "T",
            "monetary_value_cal": "monetary_value",
        }
    )
    duration_days = float(calibration["duration_holdout"].iloc[0]) * model.unit_days
    return beside_actuals(model.predict(summary, horizon_days=duration_days), calibration)


def purchase_interval(model: CLVModel, calibration: pd.DataFrame, level: float) -> pd.DataFrame:
    """The predictive interval at ``level`` of each calibration customer's holdout purchases
    from ``model.purchases`` (:func:`clvlab.intervals.purchase_count_bounds`):
    ``purchases_lower`` and ``purchases_upper``, indexed like ``calibration``."""
    x, t_x, age = (
        calibration[c].to_numpy(float) for c in ("frequency_cal", "recency_cal", "T_cal")
    )
    duration = float(calibration["duration_holdout"].iloc[0])
    lower, upper = purchase_count_bounds(model.purchases, x, t_x, age, duration, level)
    return pd.DataFrame(
        {"purchases_lower": lower, "purchases_upper": upper}, index=calibration.index
    )


def beside_actuals(predicted: pd.DataFrame, calibration: pd.DataFrame) -> pd.DataFrame:
    """Any model's predictions for the holdout (``expected_purchases``, ``p_churn``,
    ``expected_revenue``, indexed like ``calibration``) next to the actuals, in the frame of
    :func:`holdout_predictions`; revenue only when the model predicts it (not all NaN)."""
    frame = pd.DataFrame(
        {
            "frequency_cal": calibration["frequency_cal"],
            "actual_purchases": calibration["frequency_holdout"],
            "predicted_purchases": predicted["expected_purchases"],
            "actual_churn": calibration["frequency_holdout"] == 0,
            "p_churn": predicted["p_churn"],
        }
    )
    if "revenue_holdout" in calibration and predicted["expected_revenue"].notna().any():
        frame["actual_revenue"] = calibration["revenue_holdout"]
        frame["predicted_revenue"] = predicted["expected_revenue"]
    return frame


def holdout_metrics(predictions: pd.DataFrame) -> dict[str, float]:
    """Metrics of :func:`holdout_predictions`' output: every metric of the registry
    :data:`clvlab.evaluation.metrics.METRICS` whose columns it has.

    Returns
    -------
    dict
        ``purchases_mae``, ``purchases_rmse``, ``purchases_bias_pct``, ``purchases_spearman``,
        ``churn_roc_auc``, ``churn_brier`` and, with revenue, ``revenue_mae``,
        ``revenue_normalized_gini``, ``revenue_spearman`` and ``revenue_top_decile_capture``.
    """
    return metrics.evaluate(predictions)


def holdout_tracking(
    model: CLVModel,
    calibration: pd.DataFrame,
    holdout_transactions: pd.DataFrame,
    cutoff: pd.Timestamp,
    points: int = 40,
) -> pd.DataFrame:
    """Cumulative holdout purchases over time, actual vs predicted, for the tracking plot.

    ``holdout_transactions`` are the calibration customers' transactions after ``cutoff``;
    purchases are counted per customer-day, as in the calibration summary at daily resolution
    (per customer-hour for a model of ``time_unit: H``, from the cutoff's last hour, as at
    hourly resolution).
    """
    duration = float(calibration["duration_holdout"].iloc[0])
    grid = np.linspace(0.0, duration, points + 1)[1:]
    x, t_x, age = (
        calibration[c].to_numpy(float) for c in ("frequency_cal", "recency_cal", "T_cal")
    )
    by_horizon = model.purchases.expected_purchases_by_horizon(grid, x, t_x, age)
    predicted = [float(row.sum()) for row in by_horizon]
    hourly = resolution(model.time_unit)[0] == "H"
    days = (
        holdout_transactions[["customer_id", "date"]]
        .assign(day=lambda f: f["date"].dt.floor("h" if hourly else "D"))
        .drop_duplicates(["customer_id", "day"])
    )
    if hourly:  # in hours, the model's unit
        start = period_bounds(pd.Timestamp(cutoff), "H")[0]
        elapsed = (days["day"] - start) / pd.Timedelta(hours=1)
    else:
        elapsed = (days["day"] - pd.Timestamp(cutoff).floor("D")).dt.days / model.unit_days
    actual = [int((elapsed <= t).sum()) for t in grid]
    return pd.DataFrame({"time": grid, "actual": actual, "predicted": predicted})
