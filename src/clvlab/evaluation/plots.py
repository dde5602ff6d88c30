"""Figures of a backtest and of the segments (matplotlib, headless-safe)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from clvlab.evaluation import metrics

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def backtest_figures(
    predictions: Mapping[str, pd.DataFrame],
    tracking_curves: Mapping[str, pd.DataFrame],
    *,
    start: pd.Timestamp,
    end: pd.Timestamp,
    time_unit: str,
    unit_days: float,
    run_name: str,
) -> dict[str, Figure]:
    """The holdout of a backtest in four panels: cumulative purchases over time (actual and
    each BTYD candidate; the other candidates' horizon totals as points), mean holdout
    purchases by calibration frequency, churn calibration, and the gains chart.

    Parameters
    ----------
    predictions
        Candidate -> its holdout predictions next to the actuals (the frame of
        :func:`clvlab.evaluation.holdout.holdout_predictions`; every frame has the same
        customers).
    tracking_curves
        Candidate -> its cumulative purchases over the holdout, actual and predicted (the
        frame of :func:`clvlab.evaluation.holdout.holdout_tracking`), for those that have one
        (:meth:`clvlab.evaluation.backtest.BacktestResult.tracking_curves`).
    start, end
        The holdout: the day it starts after, and its last day.
    time_unit, unit_days
        The unit of the time axis (``"W"``) and its length in days.
    run_name
        The run's name, for the title.

    Returns
    -------
    dict
        ``{"backtest.png": figure}``.
    """
    from matplotlib.figure import Figure

    figure = Figure(figsize=(12, 9), layout="constrained")
    (tracking, conditional), (calibration, gains) = figure.subplots(2, 2)
    horizon = int((end - start).days) / unit_days
    actual_drawn = False
    for candidate, frame in predictions.items():
        curve = tracking_curves.get(candidate)
        if curve is not None:
            if not actual_drawn:
                tracking.plot(curve["time"], curve["actual"], color="black", label="actual")
                actual_drawn = True
            tracking.plot(curve["time"], curve["predicted"], linestyle="--", label=candidate)
        else:
            tracking.scatter([horizon], [frame["predicted_purchases"].sum()], label=candidate)
    tracking.set(
        xlabel=f"time since {start.date()} ({time_unit})",
        ylabel="cumulative purchases",
        title="Holdout tracking",
    )
    tracking.legend(fontsize="small")

    first = next(iter(predictions.values()))  # every frame has the same customers and actuals
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
    for candidate, frame in predictions.items():
        means = frame.groupby(capped)["predicted_purchases"].mean()
        conditional.plot(positions, means, linestyle="--", marker=".", label=candidate)
    conditional.set_xticks(positions, labels)
    conditional.set(
        xlabel="repeat purchases before the holdout",
        ylabel="mean holdout purchases",
        title="Conditional expectations",
    )
    conditional.legend(fontsize="small")

    calibration.plot([0, 1], [0, 1], color="grey", linewidth=0.8)
    for candidate, frame in predictions.items():
        table = metrics.calibration_curve(frame["actual_churn"], frame["p_churn"])
        calibration.plot(table["mean_predicted"], table["observed"], marker=".", label=candidate)
    calibration.set(
        xlabel="predicted P(no purchase)", ylabel="observed share", title="Churn calibration"
    )
    calibration.legend(fontsize="small")

    value = "revenue" if "actual_revenue" in first else "purchases"
    gains.plot([0, 1], [0, 1], color="grey", linewidth=0.8)
    for candidate, frame in predictions.items():
        if f"predicted_{value}" in frame:
            x, y = metrics.gains_curve(frame[f"actual_{value}"], frame[f"predicted_{value}"])
            gains.plot(x, y, label=candidate)
    gains.set(
        xlabel="share of customers (highest predicted first)",
        ylabel=f"share of holdout {value}",
        title="Gains",
    )
    gains.legend(fontsize="small")
    figure.suptitle(f"{run_name}: holdout {start.date()} to {end.date()}")
    return {"backtest.png": figure}


def segment_map(grid: pd.DataFrame, *, value: str, axis: str, run_name: str) -> dict[str, Figure]:
    """The RFM segment map: the 5 x 5 grid of R score against FM score, each cell coloured by
    its customers' mean ``value`` and labelled with its segment, mean and count.

    Parameters
    ----------
    grid
        The occupied cells (:func:`clvlab.segments.segment_grid`): ``segment``, ``customers``
        and ``mean_value``, indexed by ``r_score`` and ``fm_score``.
    value
        What ``mean_value`` is the mean of (``"clv"``, ``"expected_purchases"``).
    axis
        The name of the horizontal score (``"FM score"``, or ``"F score"`` when count-only).
    run_name
        The run's name, for the title.

    Returns
    -------
    dict
        ``{"segment_map.png": figure}``.
    """
    from matplotlib.figure import Figure

    means = np.full((5, 5), np.nan)
    figure = Figure(figsize=(10, 8), layout="constrained")
    ax = figure.subplots()
    box = {"facecolor": "white", "alpha": 0.7, "linewidth": 0}
    cells = grid.reset_index()
    columns = ["r_score", "fm_score", "segment", "customers", "mean_value"]
    for r, fm, segment, customers, mean in cells[columns].to_numpy().tolist():
        means[r - 1, fm - 1] = mean
        text = f"{segment.replace('_', ' ')}\n{mean:,.2f}\n{customers:,}"
        ax.text(fm, r, text, ha="center", va="center", bbox=box)
    image = ax.imshow(
        means, origin="lower", extent=(0.5, 5.5, 0.5, 5.5), cmap="viridis", aspect="auto"
    )
    figure.colorbar(image, ax=ax, label=f"mean {value}")
    ax.set_xticks(range(1, 6))
    ax.set_yticks(range(1, 6))
    ax.set(
        xlabel=f"{axis} (5: highest fifth)",
        ylabel="R score (5: most recent fifth)",
        title=f"{run_name}: RFM segments (segment, mean {value}, customers)",
    )
    return {"segment_map.png": figure}
