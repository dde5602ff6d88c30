"""Sufficient statistics of the BTYD and Gamma-Gamma fits: what is left of an RFM summary
when identical customers are counted instead of listed.

The likelihood of a purchase model depends on a customer only through ``(frequency,
recency, T)``, and Gamma-Gamma's through ``(frequency, monetary_value)``, so the distinct
rows with their counts fit the same parameters as the per-customer summary
(:func:`clvlab.models.clv.fit_clv_model` takes either). The table is small: it can be
aggregated where the customers are (e.g. in Spark) and fitted on one machine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from clvlab.errors import DataError

#: The columns of :attr:`SufficientStatistics.purchases` and :attr:`SufficientStatistics.spend`.
PURCHASE_COLUMNS = ["frequency", "recency", "T", "count"]
SPEND_COLUMNS = ["frequency", "monetary_value", "count"]


@dataclass(frozen=True, eq=False)
class SufficientStatistics:
    """The distinct purchase histories and repeat spends of a set of customers, with counts.

    Attributes
    ----------
    purchases
        ``frequency``, ``recency``, ``T`` and ``count``: one row per distinct ``(frequency,
        recency, T)`` with its number of customers.
    spend
        ``frequency``, ``monetary_value`` and ``count``: one row per distinct pair among the
        repeat buyers (``frequency > 0``) with a positive ``monetary_value``, what
        Gamma-Gamma is fitted on; None for count-only data (no amounts).
    nonpositive_repeat_spend
        Repeat buyers left out of :attr:`spend` because their ``monetary_value`` is not
        positive (or missing).
    customers
        Number of customers summarized.
    transferred_bytes
        What the tables took to move to this process from where they were counted (the
        Arrow bytes collected from Spark, with recency and T as whole days), or None when
        they were counted here.
    litt
        The sum over the customers of ``litt`` (the logs of the times between purchases, in
        the unit of recency and T), what MBG/CNBD-k chooses its ``k`` from; None when not
        counted.
    """

    purchases: pd.DataFrame
    spend: pd.DataFrame | None
    nonpositive_repeat_spend: int
    customers: int
    transferred_bytes: int | None = None
    litt: float | None = None

    def __post_init__(self) -> None:
        tables = {"purchases": (self.purchases, PURCHASE_COLUMNS)}
        if self.spend is not None:
            tables["spend"] = (self.spend, SPEND_COLUMNS)
        for name, (table, columns) in tables.items():
            missing = [c for c in columns if c not in table.columns]
            if missing:
                raise DataError(f"SufficientStatistics.{name} lacks the column(s) {missing}")

    @classmethod
    def from_summary(cls, summary: pd.DataFrame) -> SufficientStatistics:
        """Count the distinct rows of an RFM summary.

        Parameters
        ----------
        summary
            One row per customer, as :func:`clvlab.rfm` gives it: ``frequency``, ``recency``,
            ``T`` and optionally ``monetary_value`` and ``litt``.

        Returns
        -------
        SufficientStatistics
            The distinct rows in order of first appearance in ``summary``, the order in which
            the estimators' own compression visits them (so a fit on the counts does the
            same arithmetic as on ``summary``).
        """
        missing = [c for c in PURCHASE_COLUMNS[:3] if c not in summary.columns]
        if missing:
            raise DataError(f"the RFM summary lacks the column(s) {missing}")
        purchases = _counts(summary, PURCHASE_COLUMNS[:3])
        spend, nonpositive = None, 0
        if "monetary_value" in summary.columns:
            positive, nonpositive = positive_repeat_spend(summary)
            spend = _counts(positive, SPEND_COLUMNS[:2])
        litt = math.fsum(summary["litt"]) if "litt" in summary.columns else None
        return cls(purchases, spend, nonpositive, len(summary), litt=litt)

    @property
    def nbytes(self) -> int:
        """Size of the tables in memory, in bytes (pandas' deep memory usage, index included)."""
        tables = [self.purchases] if self.spend is None else [self.purchases, self.spend]
        return sum(int(table.memory_usage(index=True, deep=True).sum()) for table in tables)


def positive_repeat_spend(summary: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """The repeat buyers of ``summary`` with a positive ``monetary_value`` (Gamma-Gamma's
    data), and the number of other repeat buyers (not positive or missing)."""
    repeat = summary[summary["frequency"] > 0]
    positive = repeat[repeat["monetary_value"] > 0]
    return positive, len(repeat) - len(positive)


def _counts(table: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The distinct rows of ``table[columns]`` (first appearance first, NaN kept for the fit
    to reject) with their number as ``count``."""
    grouped = table.groupby(columns, sort=False, dropna=False)
    return grouped.size().rename("count").reset_index()
