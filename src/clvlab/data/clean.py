"""Cleaning as explicit policy, each step counted in a data-quality report.

Nothing is dropped silently: every row that a step removes is counted under the step's name,
so that ``rows_read == rows_kept + sum(steps.values())``.

The steps, in order:

1. ``missing_customer_id``: rows without a customer id cannot be attributed (always dropped).
2. ``duplicates``: exact duplicate rows, when ``duplicates="drop"``. The default keeps them:
   without a line id, identical rows can be real (two of one item on one day).
3. ``after_end``: transactions after ``until`` (a date covers its whole day).
4. ``zero_amounts``: lines worth exactly 0, when ``zero_amounts="drop"``.
5. ``invoice_lines_merged``: with an invoice column, the lines of one invoice become one
   purchase (earliest line's time, summed amount, other columns from the first line).
6. Returns: negative amounts, and invoices whose id starts with ``cancellation_prefix``.
   ``returns="drop"`` removes them (``returns_dropped``); ``returns="net"`` subtracts each
   from the same customer's latest purchase at or before it (``returns_netted``; returns with
   no earlier purchase: ``returns_unmatched``; purchases netted to zero or less:
   ``purchases_fully_returned``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import ConfigDict
from pydantic.dataclasses import dataclass as policy_dataclass

from clvlab.data.io import AMOUNT, CUSTOMER_ID, DATE
from clvlab.errors import DataError

#: A purchase netted to at most this share of its amount is fully returned (rounding).
RETURN_TOLERANCE = 1e-9


@policy_dataclass(config=ConfigDict(extra="forbid", frozen=True))
class CleaningPolicy:
    """How to treat each kind of questionable row (see the module docstring)."""

    duplicates: Literal["keep", "drop"] = "keep"
    zero_amounts: Literal["keep", "drop"] = "keep"
    returns: Literal["drop", "net"] = "drop"
    cancellation_prefix: str | None = None
    aggregate_invoices: bool = True


@dataclass
class DataReport:
    """What happened to the rows on their way to the model: ``rows_read == rows_kept +
    sum(steps.values())``, and ``customers``, ``first_date`` and ``last_date`` describe the
    rows kept. Scoring adds the step ``after_as_of``: the cleaned rows after the as-of date,
    which no score uses."""

    rows_read: int = 0
    steps: dict[str, int] = field(default_factory=dict)
    rows_kept: int = 0
    customers: int = 0
    first_date: str = ""
    last_date: str = ""
    count_only: bool = False
    policy: dict[str, object] = field(default_factory=dict)

    @classmethod
    def combine(cls, reports: Sequence[DataReport]) -> DataReport:
        """One report for data cleaned in parts that share no customer (such as the hash
        partitions of batch scoring): counts add up, the dates span all parts."""
        if not reports:
            return cls()
        steps: dict[str, int] = {}
        for report in reports:
            for step, count in report.steps.items():
                steps[step] = steps.get(step, 0) + count
        firsts = [report.first_date for report in reports if report.first_date]
        lasts = [report.last_date for report in reports if report.last_date]
        return cls(
            rows_read=sum(report.rows_read for report in reports),
            steps=steps,
            rows_kept=sum(report.rows_kept for report in reports),
            customers=sum(report.customers for report in reports),
            first_date=str(min(pd.Timestamp(date) for date in firsts)) if firsts else "",
            last_date=str(max(pd.Timestamp(date) for date in lasts)) if lasts else "",
            count_only=reports[0].count_only,
            policy=reports[0].policy,
        )

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
        flat.update({f"policy.{key}": value for key, value in self.policy.items()})
        return flat


def clean_transactions(
    transactions: pd.DataFrame,
    *,
    policy: CleaningPolicy | None = None,
    invoice: str | None = None,
    until: pd.Timestamp | str | None = None,
    sort: bool = True,
) -> tuple[pd.DataFrame, DataReport]:
    """Apply the cleaning policy, counting what each step removes.

    Parameters
    ----------
    transactions
        Canonical transactions (see :func:`clvlab.read_transactions`), with the invoice
        column among the kept columns when ``invoice`` is given.
    policy
        The cleaning policy; :class:`CleaningPolicy`'s defaults when None.
    invoice
        Name of the invoice id column: lines of an invoice are merged into one purchase and
        ``cancellation_prefix`` applies to it.
    until
        Transactions after this date (a date covers its whole day) are excluded.
    sort
        Sort the result by customer and date. Sorting millions of string ids takes seconds;
        scoring, which summarizes the rows in DuckDB, does without.

    Returns
    -------
    (pandas.DataFrame, DataReport)
        The cleaned transactions (sorted by customer and date if ``sort``) and the report.
    """
    policy = policy or CleaningPolicy()
    count_only = AMOUNT not in transactions
    _check(transactions, policy, invoice, count_only)
    report = DataReport(rows_read=len(transactions), count_only=count_only, policy=asdict(policy))
    steps = report.steps
    kept = transactions

    kept = _drop(kept, kept[CUSTOMER_ID].isna(), "missing_customer_id", steps)
    if policy.duplicates == "drop":
        kept = _drop(kept, kept.duplicated(), "duplicates", steps)
    if until is not None:
        kept = _drop(kept, kept[DATE] >= _day_after(pd.Timestamp(until)), "after_end", steps)
    if not count_only and policy.zero_amounts == "drop":
        kept = _drop(kept, kept[AMOUNT] == 0, "zero_amounts", steps)
    if invoice is not None and policy.aggregate_invoices:
        merged = _aggregate_invoices(kept, invoice)
        steps["invoice_lines_merged"] = len(kept) - len(merged)
        kept = merged
    returns = pd.Series(False, index=kept.index)
    if not count_only:
        returns |= kept[AMOUNT] < 0
    if policy.cancellation_prefix is not None:
        returns |= kept[invoice].astype("string").str.startswith(policy.cancellation_prefix)
    if policy.returns == "net":  # its steps are counted (as 0) without returns too
        kept = _net_returns(kept, returns, steps)
    else:
        kept = _drop(kept, returns, "returns_dropped", steps)

    if sort:
        kept = kept.sort_values([CUSTOMER_ID, DATE], kind="stable")
    kept = kept.reset_index(drop=True)
    report.rows_kept = len(kept)
    report.customers = int(kept[CUSTOMER_ID].nunique())
    if len(kept):
        report.first_date = str(kept[DATE].min())
        report.last_date = str(kept[DATE].max())
    return kept, report


def _check(frame: pd.DataFrame, policy: CleaningPolicy, invoice: str | None, count_only: bool):
    if invoice is not None and invoice not in frame:
        raise DataError(
            f"invoice column {invoice!r} is not among the transactions' columns "
            f"{list(frame.columns)}; keep it when reading (read_transactions(keep=...))"
        )
    if policy.cancellation_prefix is not None and invoice is None:
        raise DataError("cleaning.cancellation_prefix needs the invoice column: set data.invoice")
    if count_only and policy.returns == "net":
        raise DataError(
            "cleaning.returns='net' needs amounts, and these transactions are count-only: "
            "use returns='drop'"
        )


def _drop(frame: pd.DataFrame, mask: pd.Series, step: str, steps: dict[str, int]):
    steps[step] = int(mask.sum())
    return frame[~mask.to_numpy()]


def _day_after(stamp: pd.Timestamp) -> pd.Timestamp:
    """The first instant after ``stamp``'s day when it is a date; just after it otherwise."""
    if stamp == stamp.normalize():
        return stamp + pd.Timedelta(days=1)
    return stamp + pd.Timedelta(microseconds=1)


def _aggregate_invoices(frame: pd.DataFrame, invoice: str) -> pd.DataFrame:
    aggregations = {column: "first" for column in frame.columns}
    aggregations[DATE] = "min"
    del aggregations[CUSTOMER_ID], aggregations[invoice]
    if AMOUNT in frame:
        del aggregations[AMOUNT]
    grouped = frame.groupby([CUSTOMER_ID, invoice], sort=False, dropna=False, observed=True)
    merged = grouped.agg(aggregations).reset_index()
    if AMOUNT in frame:
        merged[AMOUNT] = group_sums(frame[AMOUNT].to_numpy(), grouped.ngroup().to_numpy())
    return merged[list(frame.columns)]


def group_sums(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """The sum of ``values`` per group (``groups`` numbers them 0, 1, ...), each added in the
    order of its rows. Unlike pandas' grouped sum, a group's sum does not depend on the other
    groups of the table, so a customer's purchases come out the same to the last bit whether
    cleaned with every customer or with a part of them (batch or Spark partitions)."""
    if len(values) == 0:
        return values.astype(float)
    order = np.argsort(groups, kind="stable")
    ordered = groups[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    return np.add.reduceat(values[order].astype(float), starts)


def _net_returns(frame: pd.DataFrame, returns: pd.Series, steps: dict[str, int]):
    """Subtract each return from the customer's latest purchase at or before it."""
    purchases = frame[~returns.to_numpy()].reset_index(drop=True)
    refunds = frame.loc[returns.to_numpy(), [CUSTOMER_ID, DATE, AMOUNT]]
    refunds = refunds.assign(value=refunds[AMOUNT].abs()).sort_values(DATE, kind="stable")
    anchors = purchases[[CUSTOMER_ID, DATE]].assign(purchase=purchases.index)
    matched = pd.merge_asof(
        refunds,
        anchors.sort_values(DATE, kind="stable"),
        on=DATE,
        by=CUSTOMER_ID,
        direction="backward",
    )
    unmatched = matched["purchase"].isna()
    steps["returns_netted"] = int((~unmatched).sum())
    steps["returns_unmatched"] = int(unmatched.sum())
    netted = matched[~unmatched]
    purchase = netted["purchase"].to_numpy(dtype=np.int64)
    refunded = np.zeros(len(purchases))
    if len(netted):
        found, numbered = np.unique(purchase, return_inverse=True)
        refunded[found] = group_sums(netted["value"].to_numpy(), numbered)
    refunds_of = pd.Series(refunded, index=purchases.index)
    net = purchases[AMOUNT].sub(refunds_of)
    returned = fully_returned(purchases[AMOUNT], refunds_of)
    purchases[AMOUNT] = net
    return _drop(purchases, returned, "purchases_fully_returned", steps)


def fully_returned(amount: Any, refunded: Any) -> Any:
    """Whether purchases of ``amount`` are fully returned by the ``refunded`` value netted
    against them (arrays or series alike). Only a purchase a return was netted against can
    be: a purchase of 0 with no return follows the zero_amounts policy. A remainder within
    rounding of zero (a relative 1e-9: summing the lines of an invoice and of its
    cancellation in another order leaves 1e-14) is no purchase either."""
    return (refunded > 0) & (amount - refunded <= RETURN_TOLERANCE * amount)
