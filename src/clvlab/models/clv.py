"""The scorable CLV model: a purchase model and a spend model turned into one score table."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clvlab.config import UNIT_DAYS
from clvlab.models.btyd import BTYDEstimator, GammaGamma, estimator_from_dict

#: Columns of the score table's prediction part, in order (DESIGN.md).
PREDICTION_COLUMNS = [
    "p_alive",
    "p_churn",
    "expected_purchases",
    "expected_spend",
    "expected_revenue",
    "clv",
]

#: Upper bound on the number of steps of the discounting integral (daily up to this many).
_MAX_DISCOUNT_STEPS = 400
#: lifetimes' month in each time unit, for its monthly discounting (30 days, 4.345 weeks).
_LIFETIMES_MONTH = {"D": 30.0, "W": 4.345, "M": 1.0}


@dataclass
class CLVModel:
    """Fitted BTYD models plus what scoring needs to use them.

    Parameters
    ----------
    purchases
        Fitted purchase-and-dropout model (BG/NBD, MBG/NBD, ...), in units of ``time_unit``.
    spend
        Fitted Gamma-Gamma model, or None for count-only data (no revenue, no CLV).
    time_unit
        ``"D"``, ``"W"`` or ``"M"``: the unit of recency, T and the model's rates.
    horizon_days
        Default scoring horizon.
    annual_discount_rate
        Discount rate per year for ``clv``.
    discounting
        ``"continuous"``: cash flows discounted at the instant they are expected, at the rate
        ``log(1 + annual rate)`` (as CLVTools' DERT); ``"monthly"``: lifetimes'
        ``customer_lifetime_value``, whole months of lifetimes' length (30 days, 4.345 weeks)
        each discounted at the end of the month at ``(1 + annual rate) ** (1 / 12) - 1``.
    columns
        How the training transactions were read (``customer_id``, ``date``, ``amount``,
        ``quantity``, ``price``, ``invoice``, ``date_format``, ``timezone``), used again
        when scoring.
    cleaning
        The cleaning policy applied in training (fields of
        :class:`clvlab.data.CleaningPolicy`), applied again when scoring.
    name, version
        Identify the model in the score table.
    """

    purchases: BTYDEstimator
    spend: GammaGamma | None
    time_unit: str = "W"
    horizon_days: float = 365.0
    annual_discount_rate: float = 0.10
    discounting: str = "continuous"
    columns: dict[str, str | None] = field(default_factory=dict)
    cleaning: dict[str, Any] = field(default_factory=dict)
    name: str = "bgnbd+gamma_gamma"
    version: str = ""

    @property
    def unit_days(self) -> float:
        """Length of one ``time_unit`` in days."""
        return UNIT_DAYS[self.time_unit]

    def predict(self, summary: pd.DataFrame, horizon_days: float | None = None) -> pd.DataFrame:
        """Predict each customer's future from an RFM summary in units of ``time_unit``.

        Parameters
        ----------
        summary
            ``frequency``, ``recency``, ``T`` and (with a spend model) ``monetary_value``.
        horizon_days
            Prediction horizon; the model's default when None.

        Returns
        -------
        pandas.DataFrame
            Same index as ``summary``; columns :data:`PREDICTION_COLUMNS`. ``p_churn`` is the
            probability of no purchase within the horizon; ``expected_spend`` the expected
            value of one purchase; ``expected_revenue`` the undiscounted expected revenue within
            the horizon and ``clv`` the same discounted. Spend columns are NaN without a spend
            model.
        """
        horizon = (self.horizon_days if horizon_days is None else horizon_days) / self.unit_days
        x, t_x, age = (summary[c].to_numpy(dtype=float) for c in ("frequency", "recency", "T"))
        purchases = self.purchases.expected_purchases(horizon, x, t_x, age)
        out = pd.DataFrame(
            {
                "p_alive": self.purchases.p_alive(x, t_x, age),
                "p_churn": self.purchases.p_churn(horizon, x, t_x, age),
                "expected_purchases": purchases,
            },
            index=summary.index,
        )
        if self.spend is None:
            spend = np.full(len(summary), np.nan)
        else:
            spend = self.spend.expected_spend(x, summary["monetary_value"].to_numpy(dtype=float))
        out["expected_spend"] = spend
        out["expected_revenue"] = purchases * spend
        out["clv"] = self.discounted_purchases(horizon, x, t_x, age) * spend
        return out

    def discounted_purchases(
        self, horizon: float, frequency: np.ndarray, recency: np.ndarray, T: np.ndarray
    ) -> np.ndarray:
        """Expected purchases within ``horizon`` (in time units), discounted.

        Continuous: the integral of ``exp(-delta t) dE[X(t)]`` by the midpoint rule on a grid
        of at most daily steps, ``delta = log(1 + annual rate)`` per year. Monthly: lifetimes'
        sum over whole months of the month's expected purchases over ``(1 + monthly rate) ** i``.
        """
        if self.discounting == "monthly":
            month = _LIFETIMES_MONTH[self.time_unit]
            months = max(1, round(horizon / month))
            grid = month * np.arange(months + 1)
            monthly_rate = (1 + self.annual_discount_rate) ** (1 / 12) - 1
            factors = (1 + monthly_rate) ** -np.arange(1.0, months + 1)
        else:
            steps = max(1, min(_MAX_DISCOUNT_STEPS, math.ceil(horizon * self.unit_days)))
            grid = np.linspace(0.0, horizon, steps + 1)
            delta = math.log1p(self.annual_discount_rate) * self.unit_days / 365.25
            factors = np.exp(-delta * (grid[:-1] + grid[1:]) / 2)
        total = np.zeros(len(frequency))
        previous = np.zeros(len(frequency))
        for end, factor in zip(grid[1:], factors, strict=True):
            current = self.purchases.expected_purchases(end, frequency, recency, T)
            total += (current - previous) * factor
            previous = current
        return total

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable description from which :meth:`from_dict` rebuilds the model."""
        return {
            "format": "clvlab.CLVModel/1",
            "purchases": self.purchases.to_dict(),
            "spend": None if self.spend is None else self.spend.to_dict(),
            "time_unit": self.time_unit,
            "horizon_days": self.horizon_days,
            "annual_discount_rate": self.annual_discount_rate,
            "discounting": self.discounting,
            "columns": self.columns,
            "cleaning": self.cleaning,
            "name": self.name,
            "version": self.version,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CLVModel:
        """Rebuild a model from :meth:`to_dict`'s output."""
        fields = dict(data)
        fields.pop("format", None)
        fields["purchases"] = estimator_from_dict(fields["purchases"])
        if fields.get("spend") is not None:
            fields["spend"] = estimator_from_dict(fields["spend"])
        return cls(**fields)

    def save(self, path: str | Path) -> None:
        """Write the model as JSON."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path: str | Path) -> CLVModel:
        """Read a model written by :meth:`save`."""
        return cls.from_dict(json.loads(Path(path).read_text()))
