"""A customer's history as a profile store keeps it: compact arrays, cleaned by the policy.

A profile holds the customer's transactions as received (:data:`ROW`: the instant, the amount,
which of the customer's ids it came under) and what cleaning makes of them, the purchase days
(:data:`DAY`: the day and its spend). Both are packed into bytes, one record after another, so
a store keeps one row per customer and reads all purchase days at once with one
:func:`numpy.frombuffer`.

:func:`purchase_days` cleans customers' transactions as :func:`clvlab.clean_transactions`
cleans a table, for the steps that apply to profiles (duplicates, zero amounts, returns dropped
or netted against the latest purchase at or before them). Transactions at one instant are taken
in the order of their id and amount, whatever order they arrived in: given in that order, batch
cleaning makes the same purchases of them.
"""

from __future__ import annotations

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


def purchase_days(
    rows: Rows,
    owner: np.ndarray,
    alias_rank: np.ndarray,
    policy: CleaningPolicy,
    count_only: bool,
) -> tuple[np.ndarray, Rows]:
    """The purchase days of the transactions of several customers, cleaned by ``policy`` as
    :func:`clvlab.clean_transactions` cleans them.

    ``owner`` numbers each row's customer and ``alias_rank`` ranks the id it came under in
    text order (the order in which transactions of one instant are taken). Returns each
    day's owner and the days, sorted by owner and day.
    """
    ns, amount = rows["ns"], rows["amount"]
    order = np.lexsort((amount, alias_rank, ns, owner))
    ns, amount, rank, owner = ns[order], amount[order], alias_rank[order], owner[order]
    if policy.duplicates == "drop" and len(ns) > 1:
        keys = [owner, ns, rank.astype(np.int64)] + ([] if count_only else [amount.view(np.int64)])
        first = np.unique(np.stack(keys), axis=1, return_index=True)[1]
        keep = np.zeros(len(ns), dtype=bool)
        keep[first] = True
        ns, amount, owner = ns[keep], amount[keep], owner[keep]
    if count_only:
        return _days(owner, ns, np.full(len(ns), np.nan))
    if policy.zero_amounts == "drop":
        nonzero = amount != 0
        ns, amount, owner = ns[nonzero], amount[nonzero], owner[nonzero]
    refunds = amount < 0
    if not refunds.any():
        return _days(owner, ns, amount)
    if policy.returns == "net":
        amount, kept = _net(owner, ns, amount, refunds)
    else:
        kept = ~refunds
    return _days(owner[kept], ns[kept], amount[kept])


def _net(
    owner: np.ndarray, ns: np.ndarray, amount: np.ndarray, refunds: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Each refund taken off its customer's latest purchase at or before it (the last of an
    instant, rows being in cleaning order); the netted amounts and the purchases kept (not
    refunds, nor purchases a refund took to zero or less)."""
    # Purchases before refunds at one instant, each in its order: the latest purchase at or
    # before a refund is then the last purchase before it in this order.
    merged = np.lexsort((np.arange(len(ns)), refunds, ns, owner))
    is_purchase = ~refunds[merged]
    latest = np.maximum.accumulate(np.where(is_purchase, merged, -1))
    refund_at = np.flatnonzero(~is_purchase)
    target = latest[refund_at]
    refund = merged[refund_at]
    matched = (target >= 0) & (owner[np.maximum(target, 0)] == owner[refund])
    refunded = np.zeros(len(ns))
    np.add.at(refunded, target[matched], -amount[refund[matched]])
    netted = amount - refunded
    return netted, ~refunds & ~((refunded > 0) & (netted <= 0))


def _days(owner: np.ndarray, ns: np.ndarray, amount: np.ndarray) -> tuple[np.ndarray, Rows]:
    """Purchases (sorted by owner and instant) merged by day, the day's amounts summed."""
    day = ns - ns % NS_PER_DAY
    new = np.ones(len(day), dtype=bool)
    new[1:] = (day[1:] != day[:-1]) | (owner[1:] != owner[:-1])
    starts = np.flatnonzero(new)
    days = np.empty(len(starts), dtype=DAY)
    days["day"] = day[starts]
    days["value"] = np.add.reduceat(amount, starts) if len(starts) else []
    return owner[starts], days
