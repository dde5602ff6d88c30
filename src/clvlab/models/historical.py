"""The naive historical formula, the baseline every model must beat.

Revenue in the horizon = average value x purchases per period x periods (the naive CLV
formula, undiscounted): each customer's past repeat-purchase rate is carried forward
unchanged, with no dropout and no shrinkage. Churn is the chance of no purchase within the
horizon if purchases came as a Poisson process at that rate.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: Name of the formula among the backtest's candidates and in the score table.
HISTORICAL = "historical"


def historical_predictions(
    summary: pd.DataFrame, unit_days: float, horizon_days: float
) -> pd.DataFrame:
    """Carry each customer's past purchase rate forward over ``horizon_days``.

    Parameters
    ----------
    summary
        RFM summary (``frequency``, ``T`` in units of ``unit_days`` days, and optionally
        ``monetary_value``), at daily resolution.
    unit_days
        Length of the summary's time unit in days.
    horizon_days
        The horizon.

    Returns
    -------
    pandas.DataFrame
        Same index: ``expected_purchases`` (repeat purchases per day since the first purchase,
        the first day counted as one, times the horizon), ``p_churn`` (``exp(-expected)``) and
        ``expected_revenue`` (expected purchases times the mean repeat-purchase value; NaN
        without ``monetary_value``).
    """
    age_days = np.maximum(summary["T"].to_numpy(dtype=float) * unit_days, 1.0)
    expected = summary["frequency"].to_numpy(dtype=float) / age_days * horizon_days
    if "monetary_value" in summary:
        revenue = expected * summary["monetary_value"].to_numpy(dtype=float)
    else:
        revenue = np.full(len(summary), np.nan)
    return pd.DataFrame(
        {"expected_purchases": expected, "p_churn": np.exp(-expected), "expected_revenue": revenue},
        index=summary.index,
    )
