"""Figures of a holdout evaluation (matplotlib, headless-safe)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def holdout_figure(
    predictions: pd.DataFrame, tracking: pd.DataFrame, time_unit: str, title: str = ""
) -> Figure:
    """Two panels: cumulative holdout purchases over time, and purchases by calibration frequency.

    Parameters
    ----------
    predictions
        Output of :func:`clvlab.evaluation.holdout.holdout_predictions`.
    tracking
        Output of :func:`clvlab.evaluation.holdout.holdout_tracking`.
    time_unit
        Label of the time axis.
    """
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 4.2), layout="constrained")
    left, right = figure.subplots(1, 2)
    left.plot(tracking["time"], tracking["actual"], label="actual", color="black")
    left.plot(tracking["time"], tracking["predicted"], label="predicted", linestyle="--")
    left.set(
        xlabel=f"time since calibration end ({time_unit})",
        ylabel="cumulative purchases",
        title="Holdout tracking",
    )
    left.legend()

    capped = predictions["frequency_cal"].clip(upper=7).astype(int)
    by_frequency = predictions.groupby(capped)[["actual_purchases", "predicted_purchases"]].mean()
    positions = np.arange(len(by_frequency))
    right.bar(positions - 0.2, by_frequency["actual_purchases"], width=0.4, label="actual")
    right.bar(positions + 0.2, by_frequency["predicted_purchases"], width=0.4, label="predicted")
    labels = [str(k) if k < 7 else "7+" for k in by_frequency.index]
    right.set_xticks(positions, labels)
    right.set(
        xlabel="repeat purchases in calibration",
        ylabel="mean holdout purchases",
        title="Conditional expectations",
    )
    right.legend()
    if title:
        figure.suptitle(title)
    return figure
