"""The diagnostics lifetimes and PyMC-Marketing users know, as tables (figures:
:mod:`clvlab.evaluation.diagnostic_plots`).

- :func:`expected_cumulative_transactions`: cumulative repeat purchases over time, actual
  against the model's for the cohorts as they arrive (lifetimes'
  ``utils.expected_cumulative_transactions``; PyMC-Marketing's tracking plot);
- :func:`alive_path`: one customer's P(alive) over his time since the first purchase
  (lifetimes' ``utils.calculate_alive_path``);
- :func:`expected_purchases_matrix` and :func:`p_alive_matrix`: the model's predictions on a
  frequency x recency grid (lifetimes' ``plot_frequency_recency_matrix`` and
  ``plot_probability_alive_matrix``);
- :func:`period_transactions`: customers by number of repeat purchases, actual against the
  model's expectation (lifetimes' ``plot_period_transactions``, which simulates; here exact);
- :func:`calibration_vs_holdout_purchases`: mean holdout purchases by calibration frequency,
  actual against predicted (lifetimes' ``plot_calibration_purchases_vs_holdout_purchases``).

Times are in the model's unit: ``freq`` periods (``"D"``, ``"W"`` or ``"M"``) divided by
``freq_multiplier``, as in :func:`clvlab.rfm`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from clvlab.data.io import CUSTOMER_ID, DATE
from clvlab.errors import DataError
from clvlab.models.btyd import PurchaseModel


def _periods(transactions: pd.DataFrame, freq: str) -> pd.DataFrame:
    """One row per customer and ``freq`` period with a purchase: ``customer_id``,
    ``period`` (a pandas Period) and ``first`` (the customer's first period)."""
    if transactions.empty:
        raise DataError("no transactions: nothing to track")
    if freq not in ("D", "W", "M"):
        raise DataError(f"freq must be 'D', 'W' or 'M', not {freq!r}")
    periods = pd.DataFrame(
        {
            CUSTOMER_ID: transactions[CUSTOMER_ID].to_numpy(),
            "period": pd.DatetimeIndex(transactions[DATE]).to_period(freq),
        }
    ).drop_duplicates()
    periods["first"] = periods.groupby(CUSTOMER_ID)["period"].transform("min") == periods["period"]
    return periods


def expected_cumulative_transactions(
    model: PurchaseModel,
    transactions: pd.DataFrame,
    t: int,
    *,
    freq: str = "D",
    freq_multiplier: int = 1,
) -> pd.DataFrame:
    """Cumulative repeat purchases from the first day of the data, actual and expected.

    Each customer enters at his first purchase; from then on the model expects
    ``expected_purchases_new_customer(age)`` repeat purchases by age ``age``. Summed over the
    cohorts as they arrive, this is the curve of Fader, Hardie and Lee's tracking plot, equal
    to lifetimes' ``expected_cumulative_transactions`` (purchases counted once per customer
    and period, as in the RFM summary).

    Parameters
    ----------
    model
        A fitted purchase model, in units of ``freq`` / ``freq_multiplier``.
    transactions
        Canonical transactions (``customer_id``, ``date``).
    t
        Periods from the first period of the data to track.
    freq, freq_multiplier
        The period, and the number of periods of one point (and of the model's time unit).

    Returns
    -------
    pandas.DataFrame
        ``actual`` and ``predicted`` cumulative repeat purchases at the end of each
        ``freq_multiplier`` periods (``t // freq_multiplier`` rows), indexed by the period
        that ends each point.
    """
    if t < freq_multiplier:
        raise DataError(f"t ({t}) must be at least freq_multiplier ({freq_multiplier})")
    periods = _periods(transactions, freq)
    start = periods["period"].min()
    periods = periods[periods["period"] <= start + t]
    cohorts = periods.loc[periods["first"], "period"].value_counts()
    repeat = periods.loc[~periods["first"], "period"].value_counts()
    points = np.arange(freq_multiplier, t + 1, freq_multiplier)
    # Ages (in periods) of each cohort at each point: a cohort counts once it has started.
    ages = points[:, None] - np.array([(p - start).n for p in cohorts.index])[None, :]
    started = ages > 0
    expected = model.expected_purchases_new_customer(np.where(started, ages, 0) / freq_multiplier)
    predicted = (np.where(started, expected, 0.0) * cohorts.to_numpy()).sum(axis=1)
    offsets = np.array([(p - start).n for p in repeat.index])
    actual = [int(repeat.to_numpy()[offsets < point].sum()) for point in points]
    index = pd.PeriodIndex([start + int(point) - 1 for point in points], name="period")
    return pd.DataFrame({"actual": actual, "predicted": predicted}, index=index)


def alive_path(
    model: PurchaseModel,
    transactions: pd.DataFrame,
    t: int,
    *,
    freq: str = "D",
    freq_multiplier: int = 1,
) -> pd.Series:
    """One customer's P(alive) at each period from his first purchase: his history as it
    stood then (purchases counted once per period), as lifetimes' ``calculate_alive_path``.

    Parameters
    ----------
    model
        A fitted purchase model, in units of ``freq`` / ``freq_multiplier``.
    transactions
        The customer's transactions (``date``; a ``customer_id`` column, if any, must name
        one customer).
    t
        Periods after the first purchase (the path has ``t + 1`` points, 0 to ``t``).
    freq, freq_multiplier
        As in :func:`expected_cumulative_transactions`.

    Returns
    -------
    pandas.Series
        ``p_alive`` indexed by ``period``.
    """
    if CUSTOMER_ID in transactions and transactions[CUSTOMER_ID].nunique() > 1:
        raise DataError(
            "alive_path draws one customer: the transactions have "
            f"{transactions[CUSTOMER_ID].nunique():,} customer ids; select one customer's rows"
        )
    frame = pd.DataFrame({CUSTOMER_ID: "one", DATE: transactions[DATE].to_numpy()})
    periods = _periods(frame, freq)["period"]
    start = periods.min()
    bought = np.zeros(t + 1, dtype=bool)
    offsets = np.array([(p - start).n for p in periods])
    bought[offsets[offsets <= t]] = True
    age = np.arange(t + 1, dtype=float)
    frequency = np.cumsum(bought) - 1.0
    recency = np.maximum.accumulate(np.where(bought, age, 0.0))
    alive = model.p_alive(frequency, recency / freq_multiplier, age / freq_multiplier)
    index = pd.PeriodIndex([start + int(i) for i in range(t + 1)], name="period")
    return pd.Series(alive, index=index, name="p_alive")


def _grid(max_frequency: int, max_recency: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frequencies (columns) and recencies (rows) of the matrices, and the cells a customer
    can have (no repeat purchase: recency 0; repeat purchases: recency at least 1)."""
    if max_frequency < 0 or max_recency < 1:
        raise DataError("max_frequency must be >= 0 and max_recency >= 1")
    frequency = np.arange(max_frequency + 1, dtype=float)[None, :]
    recency = np.arange(max_recency + 1, dtype=float)[:, None]
    possible = (frequency == 0) == (recency == 0)
    return frequency, recency, possible


def _matrix(values: np.ndarray, possible: np.ndarray) -> pd.DataFrame:
    frame = pd.DataFrame(np.where(possible, values, np.nan))
    frame.index.name, frame.columns.name = "recency", "frequency"
    return frame


def expected_purchases_matrix(
    model: PurchaseModel, t: float, max_frequency: int, max_recency: int
) -> pd.DataFrame:
    """Expected purchases in the next ``t`` time units of a customer of age ``max_recency``,
    by frequency (columns) and recency (rows), as lifetimes' ``plot_frequency_recency_matrix``
    computes them; NaN where no history is (recency 0 with repeat purchases, or above 0
    without)."""
    frequency, recency, possible = _grid(max_frequency, max_recency)
    values = model.expected_purchases(
        t, np.where(possible, frequency, 0.0), np.where(possible, recency, 0.0), max_recency
    )
    return _matrix(values, possible)


def p_alive_matrix(model: PurchaseModel, max_frequency: int, max_recency: int) -> pd.DataFrame:
    """P(alive) of a customer of age ``max_recency`` by frequency (columns) and recency
    (rows), as lifetimes' ``plot_probability_alive_matrix``; NaN where no history is."""
    frequency, recency, possible = _grid(max_frequency, max_recency)
    values = model.p_alive(
        np.where(possible, frequency, 0.0), np.where(possible, recency, 0.0), max_recency
    )
    return _matrix(values, possible)


def period_transactions(
    model: PurchaseModel, summary: pd.DataFrame, max_frequency: int = 7
) -> pd.DataFrame:
    """Customers by number of repeat purchases, actual and expected by the model for
    customers of the same ages (``T``): lifetimes' ``plot_period_transactions``, which
    simulates them, computed exactly from ``p_purchases`` of a new customer.

    Returns
    -------
    pandas.DataFrame
        ``actual`` and ``model`` customers for each frequency 0 to ``max_frequency - 1`` and
        a last row, ``max_frequency``, for that many or more; each column sums to the
        customers.
    """
    age = summary["T"].to_numpy(dtype=float)
    counts = np.arange(max_frequency)[:, None]
    zero = np.zeros_like(age)
    expected = model.p_purchases(counts, age[None, :], zero, zero, zero).sum(axis=1)
    actual = np.bincount(
        np.minimum(summary["frequency"].to_numpy(dtype=int), max_frequency),
        minlength=max_frequency + 1,
    )
    table = pd.DataFrame(
        {"actual": actual, "model": np.append(expected, len(age) - expected.sum())},
        index=pd.RangeIndex(max_frequency + 1, name="frequency"),
    )
    return table


def calibration_vs_holdout_purchases(
    model: PurchaseModel, calibration: pd.DataFrame, max_frequency: int = 7
) -> pd.DataFrame:
    """Mean holdout purchases by calibration frequency (capped at ``max_frequency``), actual
    and predicted: lifetimes' ``plot_calibration_purchases_vs_holdout_purchases``.

    Parameters
    ----------
    model
        A purchase model fitted on the calibration period, in its units.
    calibration
        :func:`clvlab.calibration_holdout`'s output in the model's units.
    """
    frequency = calibration["frequency_cal"].to_numpy(dtype=float)
    predicted = model.expected_purchases(
        calibration["duration_holdout"].to_numpy(dtype=float),
        frequency,
        calibration["recency_cal"].to_numpy(dtype=float),
        calibration["T_cal"].to_numpy(dtype=float),
    )
    frame = pd.DataFrame(
        {
            "frequency_cal": np.minimum(frequency, max_frequency).astype(int),
            "actual": calibration["frequency_holdout"].to_numpy(dtype=float),
            "predicted": predicted,
        }
    )
    table = frame.groupby("frequency_cal").agg(
        customers=("actual", "size"), actual=("actual", "mean"), predicted=("predicted", "mean")
    )
    return table
