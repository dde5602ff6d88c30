"""Events for a profile store, read and checked one by one.

An event is a transaction (``event_id``, ``customer_id``, ``date``, ``amount``; no amount for a
count-only model) or an identity link (``event_id``, ``id_a``, ``id_b``: two ids of one
person). Each is checked on its own, so that a bad event is refused with the field and the
event id that say what to fix, and the good events of a batch can still be applied.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from clvlab.data.identity import LEFT, RIGHT
from clvlab.data.io import AMOUNT, CUSTOMER_ID, DATE, as_customer_ids
from clvlab.data.validate import parse_amounts, parse_dates
from clvlab.errors import DataError

#: The column of an event's id: an event seen before (by id) is not applied again.
EVENT_ID = "event_id"
#: Columns of a batch's transactions: the invoice id, and the hash of the other fields.
INVOICE, CONTENT = "invoice", "content"

Events = pd.DataFrame | Sequence[Mapping[str, Any]]


@dataclasses.dataclass(frozen=True)
class Rejected:
    """An event that was refused, and why (the field and what is wrong with it)."""

    event_id: str | None
    position: int
    reason: str

    def __str__(self) -> str:
        name = f"event {self.event_id!r}" if self.event_id is not None else "an event"
        return f"{name} (number {self.position} of the batch): {self.reason}"


@dataclasses.dataclass(frozen=True)
class Columns:
    """Columns of one length (NumPy arrays) by name: a table without pandas, for batches of
    a few events, which a DataFrame would cost more than applying them."""

    data: dict[str, np.ndarray]
    rows: int

    @classmethod
    def of_frame(cls, frame: pd.DataFrame) -> Columns:
        """The columns of ``frame`` (text as objects, missing text as ``pd.NA``)."""
        return cls({str(name): frame[name].to_numpy() for name in frame}, len(frame))

    def __len__(self) -> int:
        return self.rows

    def __contains__(self, name: object) -> bool:
        return name in self.data

    def __getitem__(self, name: str) -> np.ndarray:
        return self.data[name]

    @classmethod
    def concat(cls, tables: list[Columns]) -> Columns:
        """The rows of ``tables`` (of the same columns) one after the other."""
        if len(tables) == 1:
            return tables[0]
        names = tables[0].data
        return cls(
            {name: np.concatenate([table[name] for table in tables]) for name in names},
            sum(len(table) for table in tables),
        )

    def take(self, keep: np.ndarray) -> Columns:
        """The rows where the boolean mask ``keep`` is true."""
        return Columns({name: values[keep] for name, values in self.data.items()}, int(keep.sum()))


@dataclasses.dataclass
class EventBatch:
    """A batch of events split by kind, with the refused ones."""

    #: ``event_id``, ``customer_id`` (text), ``date`` (``datetime64``, naive) and, unless
    #: count-only, ``amount``; in the order given.
    transactions: Columns
    #: ``event_id``, ``id_a``, ``id_b`` (text).
    links: Columns
    rejected: list[Rejected]

    def raise_rejected(self) -> None:
        """Raise a :class:`DataError` naming every refused event (if any)."""
        if self.rejected:
            listed = "; ".join(str(item) for item in self.rejected[:10])
            more = f" (and {len(self.rejected) - 10} more)" if len(self.rejected) > 10 else ""
            raise DataError(
                f"{len(self.rejected)} of the events cannot be applied: {listed}{more}. Fix "
                "them, or apply with on_error='skip' to apply the others"
            )


@dataclasses.dataclass(frozen=True)
class EventFields:
    """What a store reads of a transaction event, beyond its id, customer, date and amount
    (the model's columns: see :class:`clvlab.CLVModel`)."""

    count_only: bool
    date_format: str | None = None
    timezone: str | None = None
    #: The invoice id field (lines of an invoice are one purchase), if the model has one.
    invoice: str | None = None
    #: The GBM's static covariate fields.
    covariates: tuple[str, ...] = ()
    #: Fields whose product is the amount when an event has none.
    quantity: str | None = None
    price: str | None = None
    #: Keep a hash of the other fields (exact duplicates are judged on the whole event).
    content: bool = False

    @property
    def simple(self) -> bool:
        """Whether events need no more than id, customer, ISO date and amount."""
        return not (self.invoice or self.covariates or self.content or self.date_format)


def read_events(events: Events, fields: EventFields) -> EventBatch:
    """Split ``events`` into transactions and links and check each event.

    Dates are read as :func:`clvlab.read_transactions` reads them (ISO 8601 strings or
    date/time objects; zones converted to ``fields.timezone``, UTC if None, and dropped).
    Amounts must be numbers (or the amount is quantity times price); a count-only store
    ignores them.
    """
    if isinstance(events, list) and len(events) <= _FAST_EVENTS and fields.simple:
        fast = _read_simple(events, fields.count_only, fields.timezone)
        if fast is not None:
            return fast
    frame = _as_frame(events)
    if EVENT_ID not in frame:
        raise DataError(
            f"events need an {EVENT_ID!r} column (a unique id per event, so that an event "
            f"sent twice is applied once); they have {list(frame.columns)}"
        )
    frame = frame.reset_index(drop=True)
    rejected: list[Rejected] = []
    if _all_fine(frame[EVENT_ID], _id_problem):
        ids = frame[EVENT_ID].map(str)
    else:
        ids = frame[EVENT_ID].map(lambda v: None if _id_problem(v) else str(v))
    bad = ids.isna()
    for position in frame.index[bad]:
        problem = _id_problem(frame.at[position, EVENT_ID], EVENT_ID) or ""
        rejected.append(Rejected(None, int(position), problem))
    is_link = pd.Series(False, index=frame.index)
    if LEFT in frame or RIGHT in frame:
        frame = frame.assign(**{c: frame.get(c, None) for c in (LEFT, RIGHT)})
        customer = frame[CUSTOMER_ID] if CUSTOMER_ID in frame else pd.Series(None, frame.index)
        is_link = customer.map(_missing) & ~(frame[LEFT].map(_missing) & frame[RIGHT].map(_missing))
    links = _links(frame[is_link & ~bad], ids, rejected)
    rows = frame[~is_link & ~bad]
    transactions = _transactions(rows, ids, rejected, fields)
    rejected.sort(key=lambda item: item.position)
    return EventBatch(Columns.of_frame(transactions), Columns.of_frame(links), rejected)


def _as_frame(events: Events) -> pd.DataFrame:
    if isinstance(events, pd.DataFrame):
        return events
    if isinstance(events, (Mapping, str | bytes)):
        raise DataError("events must be a DataFrame or a list of events (dicts), not one event")
    try:
        return pd.DataFrame.from_records(list(events))
    except (TypeError, ValueError) as err:
        raise DataError(f"events must be a DataFrame or a list of dicts: {err}") from None


def _id_problem(value: object, field: str = "id") -> str | None:
    """What is wrong with the id ``field`` of an event, or None: ids are text or whole
    numbers, as in transaction files."""
    if _missing(value):
        return f"no {field}"
    if isinstance(value, bool) or not isinstance(
        value, str | int | float | np.integer | np.floating
    ):
        return f"{field} {value!r} is not an id (text or a whole number)"
    if isinstance(value, float | np.floating) and not float(value).is_integer():
        return f"{field} {value!r} is not an id (text or a whole number)"
    return None


def _problems(
    values: pd.Series, check: Callable[[object, str], str | None], field: str
) -> pd.Series:
    """``check(value, field)`` of each value: what is wrong with it, or None."""
    if _all_fine(values, check):
        return pd.Series(None, index=values.index, dtype=object)
    return values.map(lambda value: check(value, field))


def _all_fine(values: pd.Series, check: Callable[[object, str], str | None]) -> bool:
    """Whether ``check`` (:func:`_id_problem` or :func:`_missing_problem`) finds nothing wrong
    with any of ``values``, seen at once in the usual cases (False: look at each)."""
    if values.isna().any():
        return False
    if check is _missing_problem:
        return True
    kind = values.dtype.kind
    if kind in "iu" or isinstance(values.dtype, pd.StringDtype):
        return True
    if kind == "f":
        numbers = values.to_numpy()
        return bool(np.isfinite(numbers).all() and (numbers == np.floor(numbers)).all())
    return kind == "O" and all(type(value) is str for value in values.tolist())


def _missing_problem(value: object, field: str) -> str | None:
    return f"no {field}" if _missing(value) else None


def _missing(value: object) -> bool:
    """Whether a field of an event is missing (None, NaN, NaT or NA; a string never is)."""
    if value is None or value is pd.NaT or value is pd.NA:
        return True
    return isinstance(value, float | np.floating) and math.isnan(value)


def _links(rows: pd.DataFrame, ids: pd.Series, rejected: list[Rejected]) -> pd.DataFrame:
    if rows.empty:
        return pd.DataFrame({EVENT_ID: [], LEFT: [], RIGHT: []}, dtype="string")
    ok = pd.Series(True, index=rows.index)
    for column in (LEFT, RIGHT):
        problems = _problems(rows[column], _id_problem, column)
        for position in rows.index[problems.notna()]:
            reason = f"a link with {problems[position]}"
            rejected.append(Rejected(ids[position], int(position), reason))
        ok &= problems.isna()
    rows = rows[ok]
    return pd.DataFrame(
        {
            EVENT_ID: ids[rows.index].astype("string"),
            LEFT: as_customer_ids(rows[LEFT].infer_objects()),
            RIGHT: as_customer_ids(rows[RIGHT].infer_objects()),
        }
    )


def _transactions(
    rows: pd.DataFrame, ids: pd.Series, rejected: list[Rejected], read: EventFields
) -> pd.DataFrame:
    count_only = read.count_only
    if not count_only and AMOUNT not in rows and read.quantity in rows and read.price in rows:
        product = pd.to_numeric(rows[read.quantity], errors="coerce") * pd.to_numeric(
            rows[read.price], errors="coerce"
        )
        rows = rows.assign(**{AMOUNT: product})
    fields = [CUSTOMER_ID, DATE] + ([] if count_only else [AMOUNT])
    for field in fields:
        if field not in rows:
            rows = rows.assign(**{field: None})
    ok = pd.Series(True, index=rows.index)
    for field in fields:
        check = _id_problem if field == CUSTOMER_ID else _missing_problem
        problems = _problems(rows[field], check, field)
        for position in rows.index[problems.notna()]:
            rejected.append(Rejected(ids[position], int(position), problems[position]))
        ok &= problems.isna()
    rows = rows[ok]
    dates = _parsed(rows, DATE, ids, rejected, lambda v: _dates(v, read.date_format, read.timezone))
    amounts = None
    if not count_only:
        amounts = _parsed(rows, AMOUNT, ids, rejected, _amounts)
        dates = dates[dates.index.isin(amounts.index)]
        amounts = amounts[amounts.index.isin(dates.index)]
    rows = rows.loc[dates.index]
    table = pd.DataFrame(
        {
            EVENT_ID: ids[rows.index].astype("string"),
            CUSTOMER_ID: as_customer_ids(rows[CUSTOMER_ID].infer_objects()),
            DATE: dates,
        }
    )
    if amounts is not None:
        table[AMOUNT] = amounts
    if read.invoice:
        invoices = rows[read.invoice] if read.invoice in rows else pd.Series(None, rows.index)
        table[INVOICE] = as_customer_ids(invoices.infer_objects())
    for column in read.covariates:
        table[column] = rows.get(column, None)
    if read.content:
        skip = {EVENT_ID, CUSTOMER_ID, DATE, AMOUNT, read.quantity, read.price}
        other = sorted(str(c) for c in rows.columns if c not in skip)
        table[CONTENT] = np.asarray(
            [content_hash(record) for record in rows[other].to_dict("records")], dtype=np.uint64
        )
    return table


def content_hash(fields: Mapping[Any, Any]) -> int:
    """A stable 64-bit hash of a transaction's fields (names and values; a missing value is
    None, a number a float), to tell exact duplicates apart from different lines."""
    normal = [[str(name), _normal(fields[name])] for name in sorted(fields, key=str)]
    digest = hashlib.blake2b(json.dumps(normal).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def _normal(value: Any) -> Any:
    if _missing(value):
        return None
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | float | np.integer | np.floating):
        return float(value)
    return str(value)


def _parsed(
    rows: pd.DataFrame, field: str, ids: pd.Series, rejected: list[Rejected], parse: Any
) -> pd.Series:
    """``field`` parsed for all rows at once, or one by one to find the bad ones; the bad ones
    are added to ``rejected`` and left out."""
    try:
        return parse(rows[field])
    except DataError:
        pass
    good: dict[int, Any] = {}
    for position in rows.index:
        try:
            good[position] = parse(rows.loc[[position], field]).iloc[0]
        except DataError:
            value = rows.at[position, field]
            what = "a date" if field == DATE else "a number"
            rejected.append(
                Rejected(ids[position], int(position), f"{field} {value!r} is not {what}")
            )
    # Each value as read alone (a column of mixed kinds may not read as one).
    dtype = "datetime64[ns]" if field == DATE else "float64"
    return pd.Series(list(good.values()), index=list(good), dtype=dtype)


def _dates(values: pd.Series, date_format: str | None, timezone: str | None) -> pd.Series:
    return parse_dates(
        values.reset_index(drop=True), DATE, date_format, "events", timezone
    ).set_axis(values.index)


def _amounts(values: pd.Series) -> pd.Series:
    if values.map(lambda v: isinstance(v, bool)).any():
        raise DataError("events: an amount is true or false, not a number")
    parsed = parse_amounts(values, AMOUNT, "events")
    if not np.isfinite(parsed.to_numpy()).all():
        raise DataError("events: an amount is infinite")
    return parsed


#: The fraction of a second of an ISO 8601 time.
_FRACTION = re.compile(r"\.(\d+)")
#: The links of a batch that has none.
_NO_LINKS = Columns({name: np.empty(0, dtype=object) for name in (EVENT_ID, LEFT, RIGHT)}, 0)
#: Batches of at most this many events that are plain dicts are read without pandas.
_FAST_EVENTS = 64


def _read_simple(events: list[Any], count_only: bool, timezone: str | None) -> EventBatch | None:
    """A small batch of transactions given as dicts of plain values (text ids, ISO 8601
    dates, numbers), read in Python; None when any event is not that simple (the general
    path then reads the batch and names what is wrong)."""
    zone = None if timezone in (None, "UTC") else ZoneInfo(timezone)
    event_ids, customers, dates, amounts = [], [], [], []
    for event in events:
        if not isinstance(event, dict) or LEFT in event or RIGHT in event:
            return None
        event_id, customer, date = event.get(EVENT_ID), event.get(CUSTOMER_ID), event.get(DATE)
        if not isinstance(event_id, str) or not isinstance(customer, str) or not customer:
            return None
        stamp = _iso_instant(date, zone)
        if stamp is None:
            return None
        if not count_only:
            amount = event.get(AMOUNT)
            if isinstance(amount, bool) or not isinstance(amount, int | float):
                return None
            if not math.isfinite(amount):
                return None
            amounts.append(float(amount))
        event_ids.append(event_id)
        customers.append(customer)
        dates.append(stamp)
    columns = {
        EVENT_ID: np.asarray(event_ids, dtype=object),
        CUSTOMER_ID: np.asarray(customers, dtype=object),
        DATE: np.asarray(dates, dtype="datetime64[us]"),
    }
    if not count_only:
        columns[AMOUNT] = np.asarray(amounts, dtype=float)
    return EventBatch(Columns(columns, len(event_ids)), _NO_LINKS, [])


def _iso_instant(value: object, zone: ZoneInfo | None) -> dt.datetime | None:
    """An ISO 8601 date string (at most microseconds) or datetime as a naive instant in
    ``zone`` (UTC when None), as :func:`clvlab.data.validate.parse_dates` reads it; None
    for anything else."""
    if isinstance(value, str):
        fraction = _FRACTION.search(value)
        if len(value) > 35 or (fraction is not None and len(fraction.group(1)) > 6):
            return None
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            return None
    elif isinstance(value, pd.Timestamp):
        if value.nanosecond:
            return None
        value = value.to_pydatetime()
    if not isinstance(value, dt.datetime):
        return None
    if value.tzinfo is not None:
        value = value.astimezone(zone or dt.UTC).replace(tzinfo=None)
    return value
