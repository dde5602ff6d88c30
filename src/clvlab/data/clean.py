"""Cleaning steps, each counted in a data-quality report: nothing is dropped silently."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from clvlab.data.io import AMOUNT, CUSTOMER_ID, DATE


@dataclass
class DataReport:
    """What happened to the rows on their way to the model."""

    rows_read: int = 0
    steps: dict[str, int] = field(default_factory=dict)
    rows_kept: int = 0
    customers: int = 0
    first_date: str = ""
    last_date: str = ""
    count_only: bool = False

    def to_dict(self) -> dict[str, object]:
        """The report as a flat, JSON-friendly dict (``excluded.<step>`` per cleaning step)."""
        flat: dict[str, object] = {"rows_read": self.rows_read}
        flat.update({f"excluded.{step}": count for step, count in self.steps.items()})
        flat.update(
            rows_kept=self.rows_kept,
            customers=self.customers,
            first_date=self.first_date,
            last_date=self.last_date,
            count_only=self.count_only,
        )
        return flat


def clean_transactions(
    transactions: pd.DataFrame, *, until: pd.Timestamp | None = None
) -> tuple[pd.DataFrame, DataReport]:
    """Drop the rows that cannot be modelled, counting each reason.

    Parameters
    ----------
    transactions
        Canonical transactions (see :func:`clvlab.read_transactions`).
    until
        Transactions after this date are excluded (counted as ``after_end``).

    Returns
    -------
    (pandas.DataFrame, DataReport)
        The kept rows and the report of what was excluded and why.
    """
    report = DataReport(rows_read=len(transactions), count_only=AMOUNT not in transactions)
    kept = transactions
    steps: list[tuple[str, pd.Series]] = [("missing_customer_id", kept[CUSTOMER_ID].isna())]
    if until is not None:
        steps.append(("after_end", kept[DATE] > pd.Timestamp(until)))
    for name, drop in steps:
        drop = drop.reindex(kept.index, fill_value=False)
        report.steps[name] = int(drop.sum())
        kept = kept[~drop]
    report.rows_kept = len(kept)
    report.customers = int(kept[CUSTOMER_ID].nunique())
    if len(kept):
        report.first_date = str(kept[DATE].min().date())
        report.last_date = str(kept[DATE].max().date())
    return kept.reset_index(drop=True), report
