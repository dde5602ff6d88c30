"""The scoring model of a subscription business (``setting: contractual``): sBG churn models by
cohort, and each subscription's renewal probability, churn within the horizon, discounted
residual lifetime and value.

A :class:`ContractualModel` holds one :class:`ShiftedBetaGeometric` per cohort (the period the
subscriptions started in) when it was trained by cohort, and always one pooled over every
subscriber, which scores cohorts that started after training. It is saved as JSON
(:meth:`ContractualModel.to_dict`), logged and served through the same MLflow pyfunc as the
non-contractual :class:`clvlab.CLVModel`, and scored by :func:`clvlab.score` (and ``clvlab
score``), which read a subscription table when given a contractual model.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clvlab.errors import ClvlabError
from clvlab.models.contractual.shifted_beta_geo import ShiftedBetaGeometric
from clvlab.models.contractual.subscribers import ALL

#: The JSON format :meth:`ContractualModel.to_dict` writes.
FORMAT = "clvlab.ContractualModel/1"
#: Length of each subscription period in years, for the discount rate per period.
PERIOD_YEARS = {"D": 1 / 365.25, "W": 7 / 365.25, "M": 1 / 12, "Y": 1.0}
#: The columns of a contractual score table, in order.
CONTRACTUAL_SCORE_COLUMNS = [
    "customer_id",
    "cohort",
    "start",
    "periods",
    "price",
    "p_renew",
    "p_churn",
    "expected_renewals",
    "derl",
    "clv",
    "model",
    "model_version",
    "reason",
]
#: The reason of a subscription that cannot be scored because it has ended.
ENDED = "subscription ended on or before as_of"


@dataclass
class ContractualModel:
    """Fitted sBG models of a subscription business, and what scoring needs to use them.

    Parameters
    ----------
    models
        Cohort (the period the subscriptions started in, e.g. ``"2024-01"``) -> its fitted
        model, and :data:`~clvlab.models.contractual.subscribers.ALL` -> the model of every
        subscriber (what a cohort without a model of its own is scored by).
    period
        ``"M"``, ``"W"``, ``"D"`` or ``"Y"``: what a subscription pays for at a time.
    horizon_periods
        Periods ahead that ``p_churn`` and ``expected_renewals`` look.
    annual_discount_rate
        Discount rate per year of ``derl`` and ``clv``.
    columns
        How the subscriptions were read (``customer_id``, ``start``, ``end``, ``price``,
        ``date_format``), used again when scoring.
    name, version
        Identify the model in the score table.
    """

    models: dict[str, ShiftedBetaGeometric]
    period: str = "M"
    horizon_periods: int = 12
    annual_discount_rate: float = 0.10
    columns: dict[str, str | None] = field(default_factory=dict)
    name: str = "sbg"
    version: str = ""

    def __post_init__(self) -> None:
        if ALL not in self.models:
            raise ClvlabError(f"a contractual model needs the pooled model {ALL!r}")
        if self.period not in PERIOD_YEARS:
            raise ClvlabError(f"period must be one of {list(PERIOD_YEARS)}, not {self.period!r}")

    @property
    def discount_rate(self) -> float:
        """The discount rate per period equivalent to :attr:`annual_discount_rate`."""
        return math.expm1(math.log1p(self.annual_discount_rate) * PERIOD_YEARS[self.period])

    @property
    def by_cohort(self) -> bool:
        """Whether the cohorts have models of their own."""
        return len(self.models) > 1

    def label(self) -> str:
        """What the score table's ``model`` column says."""
        return f"{self.name} (sBG by cohort)" if self.by_cohort else f"{self.name} (sBG pooled)"

    def predict(self, periods: pd.DataFrame) -> pd.DataFrame:
        """Each subscription's predictions from :func:`clvlab.subscriber_periods`' table
        (``cohort``, ``periods`` and, for values, ``price``; churned rows get NaN).

        Returns
        -------
        pandas.DataFrame
            Indexed as ``periods``: ``p_renew`` (renewing at the end of the current period),
            ``p_churn`` (lost within :attr:`horizon_periods` periods), ``expected_renewals``
            (of the next :attr:`horizon_periods` decisions, undiscounted), ``derl`` (the
            discounted renewals to come, without end) and ``clv`` (``price * derl``; NaN
            without a price).
        """
        n = periods["periods"].to_numpy(dtype=float)
        out = {
            column: np.full(len(periods), np.nan)
            for column in ("p_renew", "p_churn", "expected_renewals", "derl")
        }
        ahead = np.arange(1, self.horizon_periods + 1, dtype=float)[:, np.newaxis]
        for model, rows in self._rows_by_model(periods):
            completed = n[rows]
            out["p_renew"][rows] = model.survival(1, completed)
            out["p_churn"][rows] = 1.0 - model.survival(self.horizon_periods, completed)
            out["expected_renewals"][rows] = model.survival(ahead, completed).sum(axis=0)
            out["derl"][rows] = model.expected_residual_lifetime(self.discount_rate, completed)
        price = (
            periods["price"].to_numpy(dtype=float)
            if "price" in periods
            else np.full(len(periods), np.nan)
        )
        out["clv"] = price * out["derl"]
        return pd.DataFrame(out, index=periods.index)

    def churn_within(self, periods: pd.DataFrame, ahead: np.ndarray) -> np.ndarray:
        """P(lost within ``ahead`` more periods) of each subscription of
        :func:`clvlab.subscriber_periods`' table (NaN for churned rows): 1 - S(n + k | n)."""
        out = np.full(len(periods), np.nan)
        n = periods["periods"].to_numpy(dtype=float)
        k = np.asarray(ahead, dtype=float)
        for model, rows in self._rows_by_model(periods):
            out[rows] = 1.0 - model.survival(k[rows], n[rows])
        return out

    def _rows_by_model(
        self, periods: pd.DataFrame
    ) -> Iterator[tuple[ShiftedBetaGeometric, np.ndarray]]:
        """Each model and the active rows of ``periods`` it scores: a cohort's own, or the
        pooled one where the cohort has none."""
        active = ~periods["churned"].to_numpy(dtype=bool)
        cohorts = periods["cohort"].astype("string").fillna("").to_numpy(dtype=object)
        own = [cohort for cohort in self.models if cohort != ALL]
        for key, model in self.models.items():
            rows = active & (~np.isin(cohorts, own) if key == ALL else cohorts == key)
            if rows.any():
                yield model, rows

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable description from which :meth:`from_dict` rebuilds the model."""
        return {
            "format": FORMAT,
            "models": {key: model.to_dict() for key, model in self.models.items()},
            "period": self.period,
            "horizon_periods": self.horizon_periods,
            "annual_discount_rate": self.annual_discount_rate,
            "columns": self.columns,
            "name": self.name,
            "version": self.version,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ContractualModel:
        """Rebuild a model from :meth:`to_dict`'s output."""
        fields = dict(data)
        if fields.pop("format", None) != FORMAT:
            raise ClvlabError(
                f"not a contractual model ({FORMAT}): load it with clvlab.CLVModel.from_dict"
            )
        fields["models"] = {
            key: ShiftedBetaGeometric.from_dict(state) for key, state in fields["models"].items()
        }
        return cls(**fields)

    def save(self, path: str | Path) -> None:
        """Write the model as JSON."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path: str | Path) -> ContractualModel:
        """Read a model written by :meth:`save`."""
        return cls.from_dict(json.loads(Path(path).read_text()))


def is_contractual(state: dict[str, Any]) -> bool:
    """Whether a saved model's JSON is a :class:`ContractualModel`'s."""
    return isinstance(state, dict) and state.get("format") == FORMAT
