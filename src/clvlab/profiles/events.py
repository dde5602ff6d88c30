"""Events for a profile store, read and checked one by one.

An event is a transaction (``event_id``, ``customer_id``, ``date``, ``amount``; no amount for a
count-only model) or an identity link (``event_id``, ``id_a``, ``id_b``: two ids of one
person). Each is checked on its own, so that a bad event is refused with the field and the
event id that say what to fix, and the good events of a batch can still be applied.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from clvlab.data.identity import LEFT, RIGHT
from clvlab.data.io import AMOUNT, CUSTOMER_ID, DATE, as_customer_ids
from clvlab.data.validate import parse_amounts, parse_dates
from clvlab.errors import DataError

#: The column of an event's id: an event seen before (by id) is not applied again.
EVENT_ID = "event_id"

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


@dataclasses.dataclass
class EventBatch:
    """A batch of events split by kind, with the refused ones."""

    #: ``event_id``, ``customer_id`` (text), ``date`` (naive timestamp) and, unless count-only,
    #: ``amount``; in the order given.
    transactions: pd.DataFrame
    #: ``event_id``, ``id_a``, ``id_b`` (text).
    links: pd.DataFrame
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


def read_events(
    events: Events,
    *,
    count_only: bool,
    date_format: str | None = None,
    timezone: str | None = None,
) -> EventBatch:
    """Split ``events`` into transactions and links and check each event.

    Dates are read as :func:`clvlab.read_transactions` reads them (ISO 8601 strings or
    date/time objects; zones converted to ``timezone``, UTC if None, and dropped). Amounts
    must be numbers; a count-only store ignores them.
    """
    frame = _as_frame(events)
    if EVENT_ID not in frame:
        raise DataError(
            f"events need an {EVENT_ID!r} column (a unique id per event, so that an event "
            f"sent twice is applied once); they have {list(frame.columns)}"
        )
    frame = frame.reset_index(drop=True)
    rejected: list[Rejected] = []
    ids = frame[EVENT_ID].map(lambda v: None if _missing(v) else str(v))
    bad = ids.isna()
    for position in frame.index[bad]:
        rejected.append(Rejected(None, int(position), f"no {EVENT_ID}"))
    is_link = pd.Series(False, index=frame.index)
    if LEFT in frame or RIGHT in frame:
        frame = frame.assign(**{c: frame.get(c, None) for c in (LEFT, RIGHT)})
        customer = frame[CUSTOMER_ID] if CUSTOMER_ID in frame else pd.Series(None, frame.index)
        is_link = customer.map(_missing) & ~(frame[LEFT].map(_missing) & frame[RIGHT].map(_missing))
    links = _links(frame[is_link & ~bad], ids, rejected)
    rows = frame[~is_link & ~bad]
    transactions = _transactions(rows, ids, rejected, count_only, date_format, timezone)
    rejected.sort(key=lambda item: item.position)
    return EventBatch(transactions, links, rejected)


def _as_frame(events: Events) -> pd.DataFrame:
    if isinstance(events, pd.DataFrame):
        return events
    if isinstance(events, (Mapping, str | bytes)):
        raise DataError("events must be a DataFrame or a list of events (dicts), not one event")
    try:
        return pd.DataFrame.from_records(list(events))
    except (TypeError, ValueError) as err:
        raise DataError(f"events must be a DataFrame or a list of dicts: {err}") from None


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
        missing = rows[column].map(_missing)
        for position in rows.index[missing]:
            rejected.append(Rejected(ids[position], int(position), f"a link without {column}"))
        ok &= ~missing
    rows = rows[ok]
    return pd.DataFrame(
        {
            EVENT_ID: ids[rows.index].astype("string"),
            LEFT: as_customer_ids(rows[LEFT].astype(object)),
            RIGHT: as_customer_ids(rows[RIGHT].astype(object)),
        }
    )


def _transactions(
    rows: pd.DataFrame,
    ids: pd.Series,
    rejected: list[Rejected],
    count_only: bool,
    date_format: str | None,
    timezone: str | None,
) -> pd.DataFrame:
    fields = [CUSTOMER_ID, DATE] + ([] if count_only else [AMOUNT])
    for field in fields:
        if field not in rows:
            rows = rows.assign(**{field: None})
    ok = pd.Series(True, index=rows.index)
    for field in fields:
        missing = rows[field].map(_missing)
        for position in rows.index[missing]:
            rejected.append(Rejected(ids[position], int(position), f"no {field}"))
        ok &= ~missing
    rows = rows[ok]
    dates = _parsed(rows, DATE, ids, rejected, lambda v: _dates(v, date_format, timezone))
    amounts = None
    if not count_only:
        amounts = _parsed(rows, AMOUNT, ids, rejected, _amounts)
        dates = dates[dates.index.isin(amounts.index)]
        amounts = amounts[amounts.index.isin(dates.index)]
    rows = rows.loc[dates.index]
    table = pd.DataFrame(
        {
            EVENT_ID: ids[rows.index].astype("string"),
            CUSTOMER_ID: as_customer_ids(rows[CUSTOMER_ID].astype(object)),
            DATE: dates,
        }
    )
    if amounts is not None:
        table[AMOUNT] = amounts
    return table


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
    if not good:
        return parse(rows[field].iloc[:0])
    return parse(rows.loc[list(good), field])


def _dates(values: pd.Series, date_format: str | None, timezone: str | None) -> pd.Series:
    return parse_dates(
        values.reset_index(drop=True), DATE, date_format, "events", timezone
    ).set_axis(values.index)


def _amounts(values: pd.Series) -> pd.Series:
    return parse_amounts(values, AMOUNT, "events")
