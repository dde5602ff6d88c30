"""Checks at the boundary: turn a user's table into canonical columns or say what is wrong."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from clvlab.errors import DataError

_EXAMPLES = 5


def examples(values: pd.Series, limit: int = _EXAMPLES) -> str:
    """A few offending values with their row labels, e.g. ``row 3: 'abc', row 9: '??'``."""
    shown = ", ".join(f"row {index}: {value!r}" for index, value in values.head(limit).items())
    more = f" (and {len(values) - limit} more)" if len(values) > limit else ""
    return shown + more


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
    zone = timezone or "UTC"
    if pd.api.types.is_datetime64_any_dtype(values):
        missing = values.isna()
        if missing.any():
            raise DataError(
                f"{where}: {int(missing.sum())} of {len(values)} rows of date column {column!r} "
                f"have no date (NaT): {examples(values[missing])}. Fix or remove those rows."
            )
        return (
            _naive(values, zone, where) if isinstance(values.dtype, pd.DatetimeTZDtype) else values
        )
    if pd.api.types.is_integer_dtype(values):
        values = values.astype(str)
        date_format = date_format or "%Y%m%d"
    parsed = _to_datetime(values, date_format, column, where)
    bad = parsed.isna()
    if bad.any():
        how = f"with format {date_format!r}" if date_format else "as dates"
        raise DataError(
            f"{where}: {int(bad.sum())} of {len(values)} rows of date column {column!r} cannot be "
            f"read {how}: {examples(values[bad])}. Fix or remove those rows, or give the "
            "format (e.g. '%Y-%m-%d'): data.date_format in the run config to train; clvlab "
            "score --date-format FMT (date_format= from Python) to score."
        )
    if isinstance(parsed.dtype, pd.DatetimeTZDtype):
        return _naive(parsed, zone, where)
    return parsed


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
    parsed = pd.to_numeric(values, errors="coerce").astype("float64")
    bad = parsed.isna()
    if bad.any():
        raise DataError(
            f"{where}: {int(bad.sum())} of {len(values)} rows of amount column {column!r} are "
            f"not numbers: {examples(values[bad])}. Fix or remove those rows, or leave "
            "data.amount unset for count-only data."
        )
    return parsed
