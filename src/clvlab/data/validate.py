"""Checks at the boundary: turn a user's table into canonical columns or say what is wrong."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

import pandas as pd

from clvlab.errors import DataError

_EXAMPLES = 5


def examples(values: pd.Series, limit: int = _EXAMPLES, label: str = "row") -> str:
    """A few offending values with their row labels, e.g. ``row 3: 'abc', row 9: '??'``."""
    return _shown(_pairs(values, limit, label), len(values))


def _pairs(values: pd.Series, limit: int, label: str) -> tuple[tuple[str, str], ...]:
    return tuple((f"{label} {index}", repr(value)) for index, value in values.head(limit).items())


def _shown(pairs: Sequence[tuple[str, str]], count: int, limit: int = _EXAMPLES) -> str:
    shown = ", ".join(f"{where}: {value}" for where, value in pairs[:limit])
    more = f" (and {count - limit} more)" if count > limit else ""
    return shown + more


Problem = Literal["no date", "not a date", "not a number"]


@dataclass(frozen=True)
class BadValues:
    """The rows of one column that cannot be read: how many of how many, and the first few
    (label and value). Parts of one table read apart (the partitions of a Spark job) add up
    with :meth:`combine`, so the message counts the whole table's rows as a local read does.
    """

    column: str
    problem: Problem
    count: int
    total: int
    examples: tuple[tuple[str, str], ...]
    date_format: str | None = None

    @classmethod
    def of(
        cls,
        values: pd.Series,
        bad: pd.Series,
        column: str,
        problem: Problem,
        date_format: str | None = None,
        label: str = "row",
    ) -> BadValues | None:
        """The ``bad`` rows of ``values`` (None when there are none), labelled by
        ``label`` and their index."""
        if not bad.any():
            return None
        wrong = values[bad.to_numpy()]
        return cls(
            column, problem, len(wrong), len(values), _pairs(wrong, _EXAMPLES, label), date_format
        )

    @staticmethod
    def combine(parts: Sequence[BadValues], total: int) -> list[BadValues]:
        """One :class:`BadValues` per column and problem of ``parts``, counted against the
        ``total`` rows of the whole table; the examples are the parts' first ones."""
        combined: dict[tuple[str, Problem], BadValues] = {}
        for part in parts:
            key = (part.column, part.problem)
            seen = combined.get(key)
            combined[key] = (
                replace(part, total=total)
                if seen is None
                else replace(
                    seen,
                    count=seen.count + part.count,
                    examples=(seen.examples + part.examples)[:_EXAMPLES],
                )
            )
        return list(combined.values())

    def message(self, where: str) -> str:
        """The error message: what, where (column, rows, examples) and how to fix it."""
        rows = f"{where}: {self.count} of {self.total} rows"
        shown = _shown(self.examples, self.count)
        if self.problem == "no date":
            return (
                f"{rows} of date column {self.column!r} have no date (NaT): {shown}. "
                "Fix or remove those rows."
            )
        if self.problem == "not a date":
            how = f"with format {self.date_format!r}" if self.date_format else "as dates"
            return (
                f"{rows} of date column {self.column!r} cannot be read {how}: {shown}. Fix or "
                "remove those rows, or give the format (e.g. '%Y-%m-%d'): data.date_format in "
                "the run config to train; clvlab score --date-format FMT (date_format= from "
                "Python) to score."
            )
        return (
            f"{rows} of amount column {self.column!r} are not numbers: {shown}. Fix or remove "
            "those rows, or leave data.amount unset for count-only data."
        )


def raise_bad_values(bad: BadValues | None, where: str) -> None:
    """Raise the :class:`DataError` of ``bad`` unless it is None."""
    if bad is not None:
        raise DataError(bad.message(where))


_COLUMN_FIX = (
    "Rename the column, or name the columns to read: in the run config's data section "
    "(data.customer_id / data.date / data.amount) to train; with clvlab score --customer-id "
    "COL --date COL --amount COL (customer_id=, date=, amount= from Python) to score a model "
    "trained with other names."
)


def require_columns(
    frame: pd.DataFrame, columns: dict[str, str], where: str, fix: str = _COLUMN_FIX
) -> None:
    """Raise :class:`DataError` naming every role whose column is missing from ``frame``.

    ``fix`` is the advice that ends the message.
    """
    missing = {role: name for role, name in columns.items() if name not in frame.columns}
    if missing:
        wanted = ", ".join(f"{role} column {name!r}" for role, name in missing.items())
        raise DataError(
            f"{where}: missing {wanted}. The table has columns {list(frame.columns)}. {fix}"
        )


def parse_dates(
    values: pd.Series,
    column: str,
    date_format: str | None,
    where: str,
    timezone: str | None = None,
) -> pd.Series:
    """Parse a date column to timezone-naive timestamps, or raise naming the bad rows.

    Timezone-aware values (or strings with offsets) are converted to ``timezone`` (UTC if
    None) and made naive; naive values are taken to be in that zone already. Integers such as
    19970101 are read as ``%Y%m%d`` when no format is given.
    """
    parsed, bad = read_dates(values, column, date_format, where, timezone)
    raise_bad_values(bad, where)
    return parsed


def read_dates(
    values: pd.Series,
    column: str,
    date_format: str | None,
    where: str,
    timezone: str | None = None,
    label: str = "row",
) -> tuple[pd.Series, BadValues | None]:
    """:func:`parse_dates` that gives back the rows it cannot read (NaT in the result)
    instead of raising for them; examples are labelled by ``label`` and the index."""
    zone = timezone or "UTC"
    if pd.api.types.is_datetime64_any_dtype(values):
        bad = BadValues.of(values, values.isna(), column, "no date", label=label)
        return (
            _naive(values, zone, where) if isinstance(values.dtype, pd.DatetimeTZDtype) else values
        ), bad
    if pd.api.types.is_integer_dtype(values):
        values = values.astype(str)
        date_format = date_format or "%Y%m%d"
    parsed = _to_datetime(values, date_format, column, where)
    bad = BadValues.of(values, parsed.isna(), column, "not a date", date_format, label)
    if isinstance(parsed.dtype, pd.DatetimeTZDtype):
        return _naive(parsed, zone, where), bad
    return parsed, bad


def _to_datetime(values: pd.Series, date_format: str | None, column: str, where: str) -> pd.Series:
    def parse(subset: pd.Series, fmt: str | None) -> pd.Series:
        try:
            parsed = pd.to_datetime(subset, format=fmt, errors="coerce")
        except ValueError:  # offsets that differ between rows can only be compared in UTC
            return pd.to_datetime(subset, format=fmt, errors="coerce", utc=True)
        lost = (parsed.isna() & subset.notna()).to_numpy()
        if isinstance(parsed.dtype, pd.DatetimeTZDtype) and lost.any():
            # Datetime objects whose offset differs from the first one's come back NaT (strings
            # raise instead): those too are read in UTC, the rows read already stay as read.
            aware = lost.copy()
            aware[lost] = [_has_offset(value) for value in subset.to_numpy()[lost]]
            if aware.any():
                utc = pd.to_datetime(subset, format=fmt, errors="coerce", utc=True)
                return utc.where(aware | ~lost & parsed.notna().to_numpy())
        return parsed

    try:
        parsed = parse(values, date_format)
        retry = parsed.isna() & values.notna()
        if date_format is None and retry.any():
            # Inference follows the first value; ISO strings of mixed precision
            # ("2021-03-01", "2021-03-05 10:30") are still unambiguous.
            again = parse(values[retry], "ISO8601")
            if getattr(again.dtype, "tz", None) == getattr(parsed.dtype, "tz", None):
                parsed = parsed.where(~retry, again.reindex(parsed.index))
    except (ValueError, TypeError) as exc:  # a format pandas cannot even try
        raise DataError(f"{where}: cannot parse date column {column!r}: {exc}") from None
    return parsed


def _has_offset(value: object) -> bool:
    return isinstance(value, dt.datetime) and value.utcoffset() is not None


def _naive(values: pd.Series, zone: str, where: str) -> pd.Series:
    try:
        return values.dt.tz_convert(zone).dt.tz_localize(None)
    except (KeyError, ValueError) as exc:  # an unknown zone name
        raise DataError(f"{where}: unknown time zone {zone!r} ({exc})") from None


def parse_amounts(values: pd.Series, column: str, where: str) -> pd.Series:
    """Parse an amount column to float64, or raise naming the rows that are not numbers."""
    parsed, bad = read_amounts(values, column)
    raise_bad_values(bad, where)
    return parsed


def read_amounts(
    values: pd.Series, column: str, label: str = "row"
) -> tuple[pd.Series, BadValues | None]:
    """:func:`parse_amounts` that gives back the rows that are not numbers (NaN in the
    result) instead of raising for them."""
    parsed = pd.to_numeric(values, errors="coerce").astype("float64")
    return parsed, BadValues.of(values, parsed.isna(), column, "not a number", label=label)
