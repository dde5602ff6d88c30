"""Profiles packed for storage: one record per customer, and what is read from many at once.

:class:`Profile` is a customer's record as a backend keeps it: the ids, invoices and covariate
values its transactions point into, the packed transactions and purchase days
(:mod:`clvlab.profiles.history`) and the segments of its last scores. :func:`clean_profiles`
recomputes the purchase days of many profiles in one pass; :func:`summaries` gives their RFM
summaries at a date as :func:`clvlab.rfm` does, and :func:`days_frame` their purchase days as
canonical transactions (for a GBM champion).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np
import pandas as pd

from clvlab.data.clean import CleaningPolicy
from clvlab.data.io import AMOUNT, CUSTOMER_ID, DATE
from clvlab.profiles.history import DAY, NS_PER_DAY, ROW, purchase_days, unpack_days, unpack_rows


@dataclasses.dataclass
class Profile:
    """One customer's stored history (see :mod:`clvlab.profiles.history`), packed."""

    customer: str
    #: The ids the transactions came under (``ROW["alias"]`` points into it).
    ids: list[str]
    #: Transactions (:data:`ROW` records) and purchase days (:data:`DAY` records), packed.
    rows: bytes
    days: bytes
    #: The segments of the customer's last scores (JSON), for transitions.
    segments: str | None = None
    #: Invoice ids and covariate values (``ROW["invoice"]``, ``["values"]`` point into them).
    invoices: list[str] = dataclasses.field(default_factory=list)
    values: list[list[Any]] = dataclasses.field(default_factory=list)

    @classmethod
    def new(cls, customer: str) -> Profile:
        return cls(customer, [customer], b"", b"")

    @classmethod
    def from_record(cls, record: tuple[Any, ...]) -> Profile:
        customer, keys, rows, days, segments = record
        profile = cls(customer, [customer], rows, days, segments)
        if keys:
            listed = json.loads(keys)
            profile.ids, profile.invoices, profile.values = (
                listed["ids"],
                listed["invoices"],
                listed["values"],
            )
        return profile

    def record(self) -> tuple[Any, ...]:
        keys = profile_keys(self.customer, self.ids, self.invoices, self.values)
        return (self.customer, keys, self.rows, self.days, self.segments)

    def position(self, alias: str) -> int:
        """The position of ``alias`` in :attr:`ids` (added if new)."""
        return 0 if self.ids[0] == alias else position_of(self.ids, alias)

    def merge(self, other: Profile) -> Profile:
        """The profile with ``other``'s transactions added (``other`` merged into it)."""
        rows = unpack_rows(other.rows).copy()
        rows["alias"] = [self.position(other.ids[i]) for i in rows["alias"]]
        for field, mine, theirs in (
            ("invoice", self.invoices, other.invoices),
            ("values", self.values, other.values),
        ):
            rows[field] = [-1 if i < 0 else position_of(mine, theirs[i]) for i in rows[field]]
        self.rows += rows.tobytes()
        return self

    def renamed(self, customer: str) -> Profile:
        return dataclasses.replace(self, customer=customer)


def position_of(items: list[Any], item: Any) -> int:
    """The position of ``item`` in ``items``, appended if new."""
    try:
        return items.index(item)
    except ValueError:
        items.append(item)
        return len(items) - 1


def profile_keys(
    customer: str, ids: list[str], invoices: list[str], values: list[Any]
) -> str | None:
    """A profile's lists as stored (JSON), or None when it has only its own id."""
    if ids == [customer] and not invoices and not values:
        return None
    return json.dumps({"ids": ids, "invoices": invoices, "values": values})


#: What a backend gives of a customer's purchase days: customer, number of stored
#: transactions, packed purchase days.
DayRecord = tuple[str, int, bytes]


@dataclasses.dataclass
class Summaries:
    """RFM summaries of stored customers, as arrays (see :func:`summaries`)."""

    #: The scored customers (sorted) and their ``frequency``, ``recency``, ``T`` and (unless
    #: count-only) ``monetary_value``.
    ids: np.ndarray
    columns: dict[str, np.ndarray]
    #: Customers with purchase days only after as-of, and with none (every transaction
    #: excluded by cleaning).
    no_history: np.ndarray
    excluded: np.ndarray


def summaries(
    records: list[DayRecord], as_of: pd.Timestamp, unit_days: float, count_only: bool
) -> Summaries:
    """The RFM summaries at ``as_of`` of the customers of ``records`` (sorted by customer),
    as :func:`clvlab.rfm` with ``freq="D"`` computes them."""
    names = np.asarray([record[0] for record in records], dtype=object)
    lengths = np.fromiter((len(r[2]) // DAY.itemsize for r in records), np.int64, len(records))
    days = unpack_days(b"".join(record[2] for record in records))
    owner = np.repeat(np.arange(len(records)), lengths)
    next_day = as_of.normalize().value + NS_PER_DAY
    seen = days["day"] < next_day
    owner, day, value = owner[seen], days["day"][seen], days["value"][seen]
    counts = np.bincount(owner, minlength=len(records))
    scored = counts > 0
    first_at = np.searchsorted(owner, np.flatnonzero(scored))
    first = day[first_at]
    last = day[first_at + counts[scored] - 1]
    unit = NS_PER_DAY * unit_days
    frequency = (counts[scored] - 1).astype(float)
    columns = {
        "frequency": frequency,
        "recency": (last - first) / unit,
        "T": (next_day - NS_PER_DAY - first) / unit,
    }
    if not count_only:
        # The mean of the repeat days: the sum over the days after the first.
        repeats = value.copy()
        repeats[first_at] = 0.0
        sums = np.add.reduceat(repeats, first_at) if len(first_at) else np.zeros(0)
        columns["monetary_value"] = np.divide(
            sums, frequency, out=np.zeros_like(sums), where=frequency > 0
        )
    return Summaries(names[scored], columns, names[~scored & (lengths > 0)], names[lengths == 0])


def days_frame(records: list[DayRecord], count_only: bool) -> pd.DataFrame:
    """The purchase days of ``records`` as canonical transactions (one row a day)."""
    lengths = [len(record[2]) // DAY.itemsize for record in records]
    days = unpack_days(b"".join(record[2] for record in records))
    names = np.asarray([record[0] for record in records], dtype=object)
    frame = pd.DataFrame(
        {
            CUSTOMER_ID: pd.array(np.repeat(names, lengths), dtype="string"),
            DATE: pd.to_datetime(days["day"]),
        }
    )
    if not count_only:
        frame[AMOUNT] = days["value"]
    return frame


def clean_profiles(
    profiles: list[Profile], policy: CleaningPolicy, count_only: bool, invoiced: bool
) -> None:
    """Recompute the purchase days of ``profiles`` from their transactions (all at once)."""
    if not profiles:
        return
    rows = unpack_rows(b"".join(profile.rows for profile in profiles))
    lengths = [len(profile.rows) // ROW.itemsize for profile in profiles]
    owner = np.repeat(np.arange(len(profiles)), lengths)
    if all(len(profile.ids) == 1 for profile in profiles):
        ranks = owner  # one id a profile: the ids order nothing within one
    else:  # the id of each row: the profile's own for most, looked up where it has several
        aliases = np.repeat(np.asarray([p.ids[0] for p in profiles], dtype=object), lengths)
        start = 0
        for profile, length in zip(profiles, lengths, strict=True):
            if len(profile.ids) > 1:
                ids = np.asarray(profile.ids, dtype=object)
                aliases[start : start + length] = ids[rows["alias"][start : start + length]]
            start += length
        ranks = np.unique(aliases, return_inverse=True)[1]
    cancelled = None
    if invoiced:  # whether each row's invoice is a cancellation
        prefix = policy.cancellation_prefix
        flags = [
            [prefix is not None and invoice.startswith(prefix) for invoice in p.invoices]
            for p in profiles
        ]
        cancelled = np.zeros(len(rows), dtype=bool)
        start = 0
        for listed, length in zip(flags, lengths, strict=True):
            part = rows["invoice"][start : start + length]
            if listed:
                cancelled[start : start + length] = np.asarray(listed)[part] & (part >= 0)
            start += length
    day_owner, days = purchase_days(rows, owner, ranks, policy, count_only, cancelled)
    counts = np.bincount(day_owner, minlength=len(profiles))
    for profile, blob in zip(
        profiles, split_records(days.tobytes(), DAY.itemsize, counts), strict=True
    ):
        profile.days = blob


def split_records(blob: bytes, size: int, counts: np.ndarray) -> list[bytes]:
    """``blob`` cut into consecutive pieces of ``counts`` records of ``size`` bytes."""
    ends = (np.cumsum(counts) * size).tolist()
    return [blob[start:end] for start, end in zip([0, *ends[:-1]], ends, strict=True)]


def per_owner(
    table: pd.DataFrame, column: str, own: bool = False
) -> tuple[np.ndarray, dict[str, list[Any]]]:
    """Each row's position of its ``column`` value in its owner's list of them (-1 for a
    missing value), and the owners' lists (with ``own``: of ids, only of the owners known
    under another id than their own)."""
    pairs = table[[CUSTOMER_ID, column]].dropna().drop_duplicates()
    pairs = pairs.assign(position=pairs.groupby(CUSTOMER_ID, sort=False).cumcount())
    merged = table[[CUSTOMER_ID, column]].merge(pairs, how="left", on=[CUSTOMER_ID, column])
    position = merged["position"].fillna(-1).to_numpy(dtype=np.int32)
    needed = pairs
    if own:
        other = pairs[CUSTOMER_ID] != pairs[column]
        needed = pairs[pairs[CUSTOMER_ID].isin(pairs.loc[other, CUSTOMER_ID])]
    lists = {str(name): group[column].tolist() for name, group in needed.groupby(CUSTOMER_ID)}
    return position, lists


def listed_position(items: list[Any], item: Any) -> int:
    """The position of ``item`` in a profile's ``items`` (added if new); -1 when missing (a
    covariate list is missing when all its values are)."""
    if item is None or (isinstance(item, list) and all(is_missing(v) for v in item)):
        return -1
    if isinstance(item, list):
        item = [None if is_missing(v) else plain(v) for v in item]
    elif is_missing(item):
        return -1
    return position_of(items, item)


def plain(value: Any) -> Any:
    """A score table's value as plain JSON-friendly Python (None when missing)."""
    if is_missing(value):
        return None
    return value.item() if isinstance(value, np.generic) else value


def is_missing(value: object) -> bool:
    return (
        value is None
        or value is pd.NA
        or value is pd.NaT
        or (isinstance(value, float) and np.isnan(value))
    )
