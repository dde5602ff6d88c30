"""A customer's history as a profile store keeps it: compact arrays, cleaned by the policy.

A profile holds the customer's transactions as received (:data:`ROW`: the instant, the amount,
which of the customer's ids it came under) and what cleaning makes of them, the purchase days
(:data:`DAY`: the day and its spend). Both are packed into bytes, one record after another, so
a store keeps one row per customer and reads all purchase days at once with one
:func:`numpy.frombuffer`.

:func:`purchase_days` cleans one customer's transactions as :func:`clvlab.clean_transactions`
cleans a table, for the steps that apply to profiles (duplicates, zero amounts, returns dropped
or netted against the latest purchase at or before them). Transactions at one instant are taken
in the order of their id and amount, whatever order they arrived in: given in that order, batch
cleaning makes the same purchases of them.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from clvlab.data.clean import CleaningPolicy

#: A stored transaction: its instant (ns since the epoch, naive), amount (NaN when count-only)
#: and the position of the id it came under in the profile's ids.
ROW = np.dtype([("ns", "<i8"), ("amount", "<f8"), ("alias", "<i4")])
#: A purchase day: its first instant (ns) and the day's spend (NaN when count-only).
DAY = np.dtype([("day", "<i8"), ("value", "<f8")])
NS_PER_DAY = 86_400 * 10**9

Rows = npt.NDArray[np.void]


def unpack_rows(blob: bytes | None) -> Rows:
    """Stored transactions from their bytes (no bytes: none)."""
    return np.frombuffer(blob or b"", dtype=ROW)


def unpack_days(blob: bytes | None) -> Rows:
    """Purchase days from their bytes (no bytes: none)."""
    return np.frombuffer(blob or b"", dtype=DAY)


def new_rows(ns: npt.ArrayLike, amount: npt.ArrayLike, alias: npt.ArrayLike) -> Rows:
    """Transactions as :data:`ROW` records."""
    ns = np.asarray(ns, dtype=np.int64)
    rows = np.empty(len(ns), dtype=ROW)
    rows["ns"], rows["amount"], rows["alias"] = ns, amount, alias
    return rows


def in_order(rows: Rows, ids: list[str]) -> Rows:
    """Transactions sorted by instant, then by id (its text) and amount: the order in which
    cleaning takes transactions of one instant."""
    if len(rows) < 2:
        return rows
    rank = np.argsort(np.argsort(np.asarray(ids, dtype=object)))
    return rows[np.lexsort((rows["amount"], rank[rows["alias"]], rows["ns"]))]


def purchase_days(rows: Rows, ids: list[str], policy: CleaningPolicy, count_only: bool) -> Rows:
    """The purchase days of one customer's transactions (``ids``: the ids ``rows["alias"]``
    points into), cleaned by ``policy`` as :func:`clvlab.clean_transactions` cleans them."""
    rows = in_order(rows, ids)
    ns, amount, alias = rows["ns"], rows["amount"], rows["alias"]
    if policy.duplicates == "drop" and len(rows) > 1:
        keep = _first_of_each(ns, amount, alias, count_only)
        ns, amount, alias = ns[keep], amount[keep], alias[keep]
    if count_only:
        return _days(ns, np.full(len(ns), np.nan))
    if policy.zero_amounts == "drop":
        nonzero = amount != 0
        ns, amount = ns[nonzero], amount[nonzero]
    refunds = amount < 0
    if not refunds.any():
        return _days(ns, amount)
    purchase_ns, value = ns[~refunds], amount[~refunds].copy()
    if policy.returns == "net":
        # Each refund comes off the latest purchase at or before it (the last of an instant).
        target = np.searchsorted(purchase_ns, ns[refunds], side="right") - 1
        matched = target >= 0
        refunded = np.zeros(len(value))
        np.add.at(refunded, target[matched], -amount[refunds][matched])
        value -= refunded
        kept = ~((refunded > 0) & (value <= 0))
        purchase_ns, value = purchase_ns[kept], value[kept]
    return _days(purchase_ns, value)


def _first_of_each(
    ns: np.ndarray, amount: np.ndarray, alias: np.ndarray, count_only: bool
) -> np.ndarray:
    """Which records are the first of their kind (instant, id and, with amounts, amount)."""
    keys = np.stack([ns, alias.astype(np.int64)] + ([] if count_only else [amount.view(np.int64)]))
    _, first = np.unique(keys, axis=1, return_index=True)
    mask = np.zeros(len(ns), dtype=bool)
    mask[first] = True
    return mask


def _days(ns: np.ndarray, amount: np.ndarray) -> Rows:
    """Purchases merged by day, the day's amounts summed (compensated: as exact as batch's)."""
    day = ns - ns % NS_PER_DAY
    starts = np.flatnonzero(np.r_[True, day[1:] != day[:-1]]) if len(day) else np.array([], int)
    days = np.empty(len(starts), dtype=DAY)
    days["day"] = day[starts]
    if np.isnan(amount).all():
        days["value"] = np.nan
    else:
        ends = [*starts[1:].tolist(), len(day)]
        values = amount.tolist()
        days["value"] = [math.fsum(values[a:b]) for a, b in zip(starts.tolist(), ends, strict=True)]
    return days
