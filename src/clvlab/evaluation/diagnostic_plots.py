"""Figures of the diagnostic tables of :mod:`clvlab.evaluation.diagnostics` (matplotlib,
headless-safe: each function returns a ``Figure``; in a notebook it is displayed, elsewhere
``figure.savefig(path)`` writes it)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from matplotlib.dates import date2num

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def _figure(size: tuple[float, float] = (7.0, 4.5)) -> tuple[Figure, Axes]:
    from matplotlib.figure import Figure

    figure = Figure(figsize=size, layout="constrained")
    return figure, figure.subplots()


def plot_cumulative_transactions(
    table: pd.DataFrame,
    *,
    calibration_end: str | pd.Timestamp | None = None,
    title: str = "Tracking",
) -> Figure:
    """:func:`~clvlab.evaluation.diagnostics.expected_cumulative_transactions`' actual and
    predicted curves (lifetimes' ``plot_cumulative_transactions``), with a line where the
    calibration period ends when ``calibration_end`` (a date) is given."""
    figure, axes = _figure()
    time = pd.PeriodIndex(table.index).to_timestamp()
    axes.plot(time, table["actual"], color="black", label="actual")
    axes.plot(time, table["predicted"], linestyle="--", label="model")
    if calibration_end is not None:
        axes.axvline(date2num(pd.Timestamp(calibration_end)), color="grey", linestyle=":")
    axes.set(xlabel="date", ylabel="cumulative repeat purchases", title=title)
    axes.legend()
    return figure


def plot_alive_path(
    path: pd.Series, purchases: pd.Series | None = None, *, title: str = "P(alive)"
) -> Figure:
    """:func:`~clvlab.evaluation.diagnostics.alive_path` over time, with the customer's
    purchase dates as vertical lines when ``purchases`` (dates) are given (lifetimes'
    ``plot_history_alive``)."""
    figure, axes = _figure()
    time = pd.PeriodIndex(path.index).to_timestamp()
    axes.plot(time, path.to_numpy(), label="P(alive)")
    if purchases is not None:
        for day in pd.to_datetime(purchases).unique():
            axes.axvline(date2num(day), color="red", linestyle="--", linewidth=0.8)
    axes.set(xlabel="date", ylabel="P(alive)", ylim=(0, 1.02), title=title)
    return figure


def plot_matrix(matrix: pd.DataFrame, *, title: str, colorbar: str) -> Figure:
    """A frequency x recency matrix of :mod:`~clvlab.evaluation.diagnostics` as a heatmap,
    recency growing upwards (lifetimes' ``plot_frequency_recency_matrix`` and
    ``plot_probability_alive_matrix``); impossible cells blank."""
    figure, axes = _figure((6.5, 5.5))
    image = axes.imshow(
        np.ma.masked_invalid(matrix.to_numpy(dtype=float)),
        origin="lower",
        aspect="auto",
        interpolation="none",
    )
    figure.colorbar(image, ax=axes, label=colorbar)
    axes.set(
        xlabel="repeat purchases (frequency)",
        ylabel="time of the last purchase (recency)",
        title=title,
    )
    return figure


def plot_period_transactions(table: pd.DataFrame, *, title: str = "Repeat purchases") -> Figure:
    """:func:`~clvlab.evaluation.diagnostics.period_transactions`' customers by repeat
    purchases, actual and model side by side (lifetimes' ``plot_period_transactions``)."""
    figure, axes = _figure()
    positions = np.arange(len(table))
    axes.bar(positions - 0.2, table["actual"], width=0.4, label="actual")
    axes.bar(positions + 0.2, table["model"], width=0.4, label="model")
    axes.set_xticks(positions, _capped_labels(table.index))
    axes.set(xlabel="repeat purchases", ylabel="customers", title=title)
    axes.legend()
    return figure


def plot_calibration_vs_holdout(
    table: pd.DataFrame, *, title: str = "Holdout purchases by calibration frequency"
) -> Figure:
    """:func:`~clvlab.evaluation.diagnostics.calibration_vs_holdout_purchases`, actual and
    predicted (lifetimes' ``plot_calibration_purchases_vs_holdout_purchases``)."""
    figure, axes = _figure()
    axes.plot(table.index, table["actual"], color="black", marker="o", label="actual")
    axes.plot(table.index, table["predicted"], linestyle="--", marker=".", label="model")
    axes.set_xticks(table.index, _capped_labels(table.index))
    axes.set(xlabel="repeat purchases in calibration", ylabel="mean holdout purchases")
    axes.set_title(title)
    axes.legend()
    return figure


def _capped_labels(index: pd.Index) -> list[str]:
    """Tick labels of frequencies whose last one counts that many or more ("7+")."""
    return [str(k) for k in index[:-1]] + [f"{index[-1]}+"]
