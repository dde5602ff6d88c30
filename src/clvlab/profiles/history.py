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

from clvlab.data.clean import CleaningPolicy, fully_returned

#: A stored transaction: its instant (ns since the epoch, naive), amount (NaN when count-only),
#: the position of the id it came under in the profile's ids, of its invoice in the profile's
#: invoices (-1: none), of its covariate values in the profile's values (-1: none), and a hash
#: of its other fields (0 when not kept: only exact duplicates need it).
ROW = np.dtype(
    [
        ("ns", "<i8"),
        ("amount", "<f8"),
        ("alias", "<i4"),
        ("invoice", "<i4"),
        ("values", "<i4"),
        ("content", "<u8"),
    ]
)
#: A purchase day: its first instant (ns), the day's spend (NaN when count-only) and the
#: position of the covariate values of its last purchase in the profile's values (-1: none).
DAY = np.dtype([("day", "<i8"), ("value", "<f8"), ("values", "<i4")])
NS_PER_DAY = 86_400 * 10**9

Rows = npt.NDArray[np.void]


def unpack_rows(blob: bytes | None) -> Rows:
    """Stored transactions from their bytes (no bytes: none)."""
    return np.frombuffer(blob or b"", dtype=ROW)


def unpack_days(blob: bytes | None) -> Rows:
    """Purchase days from their bytes (no bytes: none)."""
    return np.frombuffer(blob or b"", dtype=DAY)


def new_rows(
    ns: npt.ArrayLike,
    amount: npt.ArrayLike,
    alias: npt.ArrayLike,
    invoice: npt.ArrayLike = -1,
    values: npt.ArrayLike = -1,
    content: npt.ArrayLike = 0,
) -> Rows:
    """Transactions as :data:`ROW` records."""
    ns = np.asarray(ns, dtype=np.int64)
    rows = np.empty(len(ns), dtype=ROW)
    rows["ns"], rows["amount"], rows["alias"] = ns, amount, alias
    rows["invoice"], rows["values"], rows["content"] = invoice, values, content
    return rows


def purchase_days(
    rows: Rows,
    owner: np.ndarray,
    alias_rank: np.ndarray,
    policy: CleaningPolicy,
    count_only: bool,
    cancelled: np.ndarray | None = None,
) -> tuple[np.ndarray, Rows]:
    """The purchase days of the transactions of several customers, cleaned by ``policy`` as
    :func:`clvlab.clean_transactions` cleans them.

    ``owner`` numbers each row's customer and ``alias_rank`` ranks the id it came under in
    text order (the order in which transactions of one instant are taken). ``cancelled``
    says which rows belong to a cancellation invoice (None: the model has no invoices; then
    lines are not merged by invoice either). Returns each day's owner and the days, sorted by
    owner and day.
    """
    order = _cleaning_order(rows, owner, alias_rank)
    if order is not None:
        rows, owner, alias_rank = rows[order], owner[order], alias_rank[order]
        if cancelled is not None:
            cancelled = cancelled[order]
    rank = alias_rank
    keep = np.ones(len(rows), dtype=bool)
    if policy.duplicates == "drop" and len(rows) > 1:
        keys = [owner, rows["ns"], rank.astype(np.int64), rows["content"].view(np.int64)]
        if not count_only:
            keys.append(rows["amount"].view(np.int64))
        amount = rows["amount"]
        if count_only:  # amounts order rows but do not tell copies apart: one amount only
            adjacent = not (amount.view(np.int64) != amount[:1].view(np.int64)).any()
        else:  # -0.0 sorts as 0.0 and NaN as itself, but they differ bitwise
            adjacent = not (np.isnan(amount) | ((amount == 0) & np.signbit(amount))).any()
        if adjacent:
            # Sorted by these keys, the copies of a row follow it: keep the first of each run.
            same = np.ones(len(rows) - 1, dtype=bool)
            for key in keys:
                same &= key[1:] == key[:-1]
            keep[1:] = ~same
        else:
            first = np.unique(np.stack(keys), axis=1, return_index=True)[1]
            keep[:] = False
            keep[first] = True
    if not count_only and policy.zero_amounts == "drop":
        keep &= rows["amount"] != 0
    if not keep.all():  # else no copy (a history's rows are hundreds of MB)
        rows, owner = rows[keep], owner[keep]
        if cancelled is not None:
            cancelled = cancelled[keep]
    if cancelled is not None and policy.aggregate_invoices:
        rows, owner, cancelled = _merge_invoices(rows, owner, cancelled)
    ns, amount, values = rows["ns"], rows["amount"], rows["values"]
    if count_only:
        return _days(owner, ns, np.full(len(ns), np.nan), values)
    refunds = amount < 0
    if cancelled is not None:
        refunds |= cancelled
    if not refunds.any():
        return _days(owner, ns, amount, values)
    if policy.returns == "net":
        amount, kept = _net(owner, ns, amount, refunds)
    else:
        kept = ~refunds
    return _days(owner[kept], ns[kept], amount[kept], values[kept])


def appended_days(days: bytes, old: Rows, new: Rows, count_only: bool) -> bytes | None:
    """The purchase days of a profile whose transactions ``old`` (cleaned into ``days``) are
    followed by ``new``, when cleaning them all would only extend ``days``: the new purchases
    come after every earlier one, in order, with positive amounts, and there are no invoices
    (the caller's to know). Then no new row is a copy, a return or a zero amount, and none
    changes how the earlier ones were cleaned: each is added to the last day or starts the
    next. None otherwise (clean them all)."""
    if not len(old) or not len(new) or not days:
        return None
    ns = new["ns"]
    if ns[0] <= old["ns"].max() or (len(ns) > 1 and (ns[1:] <= ns[:-1]).any()):
        return None
    if not count_only and not (new["amount"] > 0).all():
        return None
    out = np.concatenate([unpack_days(days), np.zeros(len(new), dtype=DAY)])
    last = len(out) - len(new) - 1
    for row in new.tolist():  # (ns, amount, alias, invoice, values, content)
        at, amount, values = row[0], row[1], row[4]
        day = at - at % NS_PER_DAY
        if day != out["day"][last]:
            last += 1
            out[last] = (day, 0.0 if not count_only else np.nan, -1)
        if not count_only:
            out["value"][last] += amount
        if values >= 0:  # the day's last purchase with covariate values
            out["values"][last] = values
    return out[: last + 1].tobytes()


def _cleaning_order(rows: Rows, owner: np.ndarray, alias_rank: np.ndarray) -> np.ndarray | None:
    """The order in which cleaning takes the rows: by owner, instant, id (``alias_rank``),
    amount and content, stably; None when they are in it already."""
    ns = rows["ns"]
    if len(ns) < 2:
        return None
    same_owner = owner[1:] == owner[:-1]
    ordered = (owner[1:] > owner[:-1]) | (same_owner & (ns[1:] >= ns[:-1]))
    tied = same_owner & (ns[1:] == ns[:-1])
    keys = [rows["content"], rows["amount"], alias_rank]
    if ordered.all():
        # In order of owner and instant (history as files keep it): only the rows of an
        # instant that has several need ordering, among themselves.
        if not tied.any():
            return None
        members = np.flatnonzero(np.r_[tied, False] | np.r_[False, tied])
        run = np.cumsum(np.r_[True, ~tied])[members]
        order = np.arange(len(ns))
        order[members] = members[np.lexsort([key[members] for key in keys] + [run])]
        return order
    # A key the same on every row orders nothing (often content, ids without links).
    keys += [ns, owner]
    return np.lexsort([key for key in keys if (key != key[0]).any()] or [owner])


def _merge_invoices(
    rows: Rows, owner: np.ndarray, cancelled: np.ndarray
) -> tuple[Rows, np.ndarray, np.ndarray]:
    """The lines of each invoice of a customer merged into one purchase (the earliest line's
    instant, the summed amount, the first line's other fields; lines without an invoice are
    one group a customer), in the order of their first lines."""
    keys = np.stack([owner, rows["invoice"].astype(np.int64)])
    _, first, group = np.unique(keys, axis=1, return_index=True, return_inverse=True)
    group = group.ravel()
    merged = rows[first].copy()
    merged["amount"] = np.bincount(group, weights=rows["amount"], minlength=len(first))
    merged["ns"] = rows["ns"][first]
    np.minimum.at(merged["ns"], group, rows["ns"])
    values = np.full(len(first), -1, dtype=np.int32)
    with_values = np.flatnonzero(rows["values"] >= 0)[::-1]  # the first non-missing wins
    values[group[with_values]] = rows["values"][with_values]
    merged["values"] = values
    order = np.argsort(first, kind="stable")
    return merged[order], owner[first][order], cancelled[first][order]


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
    return amount - refunded, ~refunds & ~fully_returned(amount, refunded)


def _days(
    owner: np.ndarray, ns: np.ndarray, amount: np.ndarray, values: np.ndarray
) -> tuple[np.ndarray, Rows]:
    """Purchases (sorted by owner and instant) merged by day: the day's amounts summed, the
    covariate values of its last purchase that has some."""
    day = ns - ns % NS_PER_DAY
    new = np.ones(len(day), dtype=bool)
    new[1:] = (day[1:] != day[:-1]) | (owner[1:] != owner[:-1])
    starts = np.flatnonzero(new)
    days = np.empty(len(starts), dtype=DAY)
    days["day"] = day[starts]
    days["value"] = np.add.reduceat(amount, starts) if len(starts) else []
    group = np.cumsum(new) - 1
    last = np.full(len(starts), -1, dtype=np.int32)
    present = np.flatnonzero(values >= 0)  # in order: the last one of a day wins
    last[group[present]] = values[present]
    days["values"] = last
    return owner[starts], days
