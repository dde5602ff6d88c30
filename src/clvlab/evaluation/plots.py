"""Figures of a backtest (matplotlib, headless-safe)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from clvlab.config import RunConfig
    from clvlab.evaluation.backtest import BacktestResult


def backtest_figures(
    result: BacktestResult, transactions: pd.DataFrame, config: RunConfig
) -> dict[str, Figure]:
    """The holdout of a backtest in four panels: cumulative purchases over time (actual and
    each BTYD candidate; the other candidates' horizon totals as points), mean holdout
    purchases by calibration frequency, churn calibration, and the gains chart.

    Returns
    -------
    dict
        ``{"backtest.png": figure}``.
    """
    from matplotlib.figure import Figure

    from clvlab.evaluation import metrics
    from clvlab.evaluation.holdout import holdout_tracking

    window = result.windows["holdout"]
    candidates = result.predictions["holdout"]
    figure = Figure(figsize=(12, 9), layout="constrained")
    (tracking, conditional), (calibration, gains) = figure.subplots(2, 2)
    after = transactions[transactions["date"] >= window.start + pd.Timedelta(days=1)]
    unit = config.time_unit
    horizon = window.days / config.unit_days
    actual_drawn = False
    for name, frame in candidates.items():
        model = frame.attrs.get("model")
        if model is not None:
            curve = holdout_tracking(model, frame.attrs["calibration"], after, window.start)
            if not actual_drawn:
                tracking.plot(curve["time"], curve["actual"], color="black", label="actual")
                actual_drawn = True
            tracking.plot(curve["time"], curve["predicted"], linestyle="--", label=name)
        else:
            tracking.scatter([horizon], [frame["predicted_purchases"].sum()], label=name)
    tracking.set(
        xlabel=f"time since {window.start.date()} ({unit})",
        ylabel="cumulative purchases",
        title="Holdout tracking",
    )
    tracking.legend(fontsize="small")

    first = next(iter(candidates.values()))  # every frame has the same customers and actuals
    capped = first["frequency_cal"].clip(upper=7).astype(int)
    labels = [str(k) if k < 7 else "7+" for k in sorted(capped.unique())]
    positions = np.arange(len(labels))
    conditional.plot(
        positions,
        first.groupby(capped)["actual_purchases"].mean(),
        color="black",
        marker="o",
        label="actual",
    )
    for name, frame in candidates.items():
        means = frame.groupby(capped)["predicted_purchases"].mean()
        conditional.plot(positions, means, linestyle="--", marker=".", label=name)
    conditional.set_xticks(positions, labels)
    conditional.set(
        xlabel="repeat purchases before the holdout",
        ylabel="mean holdout purchases",
        title="Conditional expectations",
    )
    conditional.legend(fontsize="small")

    calibration.plot([0, 1], [0, 1], color="grey", linewidth=0.8)
    for name, frame in candidates.items():
        table = metrics.calibration_curve(frame["actual_churn"], frame["p_churn"])
        calibration.plot(table["mean_predicted"], table["observed"], marker=".", label=name)
    calibration.set(
        xlabel="predicted P(no purchase)", ylabel="observed share", title="Churn calibration"
    )
    calibration.legend(fontsize="small")

    value = "revenue" if "actual_revenue" in first else "purchases"
    gains.plot([0, 1], [0, 1], color="grey", linewidth=0.8)
    for name, frame in candidates.items():
        if f"predicted_{value}" in frame:
            x, y = metrics.gains_curve(frame[f"actual_{value}"], frame[f"predicted_{value}"])
            gains.plot(x, y, label=name)
    gains.set(
        xlabel="share of customers (highest predicted first)",
        ylabel=f"share of holdout {value}",
        title="Gains",
    )
    gains.legend(fontsize="small")
    figure.suptitle(f"{config.name}: holdout {window.start.date()} to {window.end.date()}")
    return {"backtest.png": figure}
