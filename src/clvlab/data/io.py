"""Read transactions from files, a packaged data set or a DataFrame into canonical form."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from clvlab.data.datasets import is_packaged_source, load_packaged
from clvlab.data.validate import (
    BadValues,
    raise_bad_values,
    read_amounts,
    read_dates,
    require_columns,
)
from clvlab.errors import DataError

#: The canonical column names (see DESIGN.md).
CUSTOMER_ID, DATE, AMOUNT = "customer_id", "date", "amount"

TransactionSource = str | Path | pd.DataFrame
#: The dtype customer ids are given back in (see :func:`id_dtype`); None: as text.
IdDtype = np.dtype | pd.api.extensions.ExtensionDtype | None


def read_transactions(
    source: TransactionSource,
    *,
    customer_id: str = CUSTOMER_ID,
    date: str = DATE,
    amount: str | None = AMOUNT,
    quantity: str | None = None,
    price: str | None = None,
    date_format: str | None = None,
    timezone: str | None = None,
    keep: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Read transactions into the canonical table.

    Parameters
    ----------
    source
        A CSV file, Parquet data (a file, a folder or a glob such as ``"dir/*.parquet"``),
        ``"lifetimes:CDNOW_master"``/``"lifetimes:CDNOW_sample"``, or a DataFrame.
    customer_id, date, amount
        Names of the columns that hold the customer id, the transaction date and the amount.
        ``amount=None`` reads count-only data (or computes it from ``quantity`` and ``price``).
    quantity, price
        With ``amount=None``, the amount is ``quantity * price`` (e.g. invoice lines).
    date_format
        ``strftime`` format of the date column when it holds strings; inferred if None.
    timezone
        Zone the dates are expressed in, e.g. ``"Europe/London"``: timezone-aware dates are
        converted to it and made naive; naive dates are taken to be in it already. UTC if None.
    keep
        Other columns to keep (e.g. an invoice id for cleaning); if None, all of them but
        those named like a canonical column.

    Returns
    -------
    pandas.DataFrame
        ``customer_id`` (string; missing ids stay missing for cleaning to count), ``date``
        (timezone-naive timestamp), ``amount`` (float64) unless count-only, then the kept
        columns, in the order read. (:func:`read_canonical` also says which dtype a score
        table gives the ids back in.)

    Raises
    ------
    DataError
        If the source cannot be read, is empty, lacks a column, or has unparsable dates or
        non-numeric amounts. The message names the column, the number of rows and examples.
    """
    return read_canonical(
        source,
        customer_id=customer_id,
        date=date,
        amount=amount,
        quantity=quantity,
        price=price,
        date_format=date_format,
        timezone=timezone,
        keep=keep,
    )[0]


def read_canonical(
    source: TransactionSource,
    *,
    customer_id: str = CUSTOMER_ID,
    date: str = DATE,
    amount: str | None = AMOUNT,
    quantity: str | None = None,
    price: str | None = None,
    date_format: str | None = None,
    timezone: str | None = None,
    keep: Sequence[str] | None = None,
) -> tuple[pd.DataFrame, IdDtype]:
    """:func:`read_transactions`' table, and the dtype to give its ids back in when they
    leave clvlab (a score table): :func:`id_dtype` of the id column as read. Inside clvlab
    ids are text; this is how scoring returns them in the type they came in."""
    frame, where = load_table(source)
    canonical, dtype, _ = to_canonical(
        frame,
        where,
        customer_id=customer_id,
        date=date,
        amount=amount,
        quantity=quantity,
        price=price,
        date_format=date_format,
        timezone=timezone,
        keep=keep,
    )
    return canonical, dtype


def to_canonical(
    frame: pd.DataFrame,
    where: str,
    *,
    customer_id: str = CUSTOMER_ID,
    date: str = DATE,
    amount: str | None = AMOUNT,
    quantity: str | None = None,
    price: str | None = None,
    date_format: str | None = None,
    timezone: str | None = None,
    keep: Sequence[str] | None = None,
    strict: bool = True,
    label: str = "row",
) -> tuple[pd.DataFrame, IdDtype, list[BadValues]]:
    """:func:`read_canonical` of a loaded table (``where`` names it in messages).

    With ``strict=False`` the rows whose date or amount cannot be read are not an error
    here: they are given back (counted, with examples labelled by ``label`` and the index)
    for the caller to add up over the parts of a table read apart, as a Spark job does.
    """
    if frame.empty:
        raise DataError(f"{where}: no transactions (the table has no rows).")
    roles = reading_roles(where, customer_id, date, amount, quantity, price)
    mapped = set(roles.values()) | {CUSTOMER_ID, DATE, AMOUNT}
    # keep=None keeps the other columns, except any named like a canonical one.
    extra = [c for c in frame.columns if c not in mapped] if keep is None else list(keep)
    require_columns(frame, {**roles, **{f"kept column {c!r}": c for c in extra}}, where)

    problems: list[BadValues | None] = []

    def checked(read: tuple[pd.Series, BadValues | None]) -> pd.Series:
        values, bad = read
        if strict:
            raise_bad_values(bad, where)
        problems.append(bad)
        return values

    canonical = pd.DataFrame(
        {
            CUSTOMER_ID: as_customer_ids(frame[customer_id]),
            DATE: checked(read_dates(frame[date], date, date_format, where, timezone, label)),
        }
    )
    if amount is not None:
        canonical[AMOUNT] = checked(read_amounts(frame[amount], amount, label))
    elif quantity is not None and price is not None:  # both or neither (checked above)
        canonical[AMOUNT] = checked(read_amounts(frame[quantity], quantity, label)) * checked(
            read_amounts(frame[price], price, label)
        )
    for column in extra:
        if column in (CUSTOMER_ID, DATE, AMOUNT):
            raise DataError(
                f"{where}: column {column!r} would clash with the canonical column of that "
                "name; rename it or leave it out with keep=[...]"
            )
        canonical[column] = frame[column].to_numpy()
    found = [bad for bad in problems if bad is not None]
    return canonical.reset_index(drop=True), id_dtype(frame[customer_id]), found


def reading_roles(
    where: str,
    customer_id: str,
    date: str,
    amount: str | None,
    quantity: str | None = None,
    price: str | None = None,
) -> dict[str, str]:
    """The columns reading requires, by role (for messages): the customer id, the date, and
    the amount or both quantity and price (a :class:`DataError` for one of them alone)."""
    roles = {"customer id": customer_id, "date": date}
    if amount is not None:
        roles["amount"] = amount
    elif quantity is not None or price is not None:
        if quantity is None or price is None:
            raise DataError(f"{where}: give both quantity and price columns, or an amount column")
        roles.update(quantity=quantity, price=price)
    return roles


def check_canonical(columns: Iterable[object]) -> None:
    """Raise a :class:`DataError` unless ``columns`` (of a table of transactions, local or
    on Spark) hold the canonical ``customer_id`` and ``date``."""
    names = {str(column) for column in columns}
    missing = {CUSTOMER_ID, DATE} - names
    if missing:
        raise DataError(
            f"transactions lack the column(s) {sorted(missing)}; they have {sorted(names)}. "
            f"Give canonical transactions: {CUSTOMER_ID!r}, {DATE!r} (a timestamp) and "
            f"optionally {AMOUNT!r}, as clvlab.read_transactions makes them."
        )


def parquet_glob(source: str | Path, what: str = "transactions") -> str:
    """What DuckDB reads for Parquet data: a file as is, a folder as ``folder/**/*.parquet``
    (recursively), a glob as is."""
    text = str(source)
    if _is_glob(text):
        return text
    path = Path(text)
    if path.is_dir():
        return str(path / "**" / "*.parquet")
    if not path.exists():
        raise DataError(f"{what} file not found: {path}")
    return text


def load_table(source: TransactionSource, what: str = "transactions") -> tuple[pd.DataFrame, str]:
    """Load a table as it is stored (CSV cells as strings), and a name of it for messages.

    ``what`` names the table in errors ("transactions", "links").
    """
    if isinstance(source, pd.DataFrame):
        return source, what
    if is_packaged_source(source):
        return load_packaged(str(source)), str(source)
    where = str(source)
    files = parquet_glob(source, what)
    suffix = Path(where).suffix.lower()
    try:
        if files != where or _is_glob(where):  # DuckDB reads the Parquet files together
            with duckdb.connect() as con:
                table = con.sql("SELECT * FROM read_parquet(?)", params=[files]).to_arrow_table()
                return arrow_to_pandas(table), where
        if suffix == ".parquet":
            return arrow_to_pandas(pq.read_table(where)), where
        if suffix in {".csv", ".txt", ".gz"}:
            # Ids stay strings: "00042" and "42" are different customers.
            return pd.read_csv(where, dtype=str, keep_default_na=False, na_values=[""]), where
    except (OSError, ValueError, duckdb.Error) as exc:
        raise DataError(f"{where}: cannot read {what}: {exc}") from None
    raise DataError(f"{where}: unknown file type {suffix!r}; use .csv or .parquet")


def arrow_to_pandas(table: pa.Table) -> pd.DataFrame:
    """An Arrow table as pandas. Integer columns with missing values become Python integers
    (object), not floats, so that ids above 2**53 keep every digit."""
    return table.to_pandas(integer_object_nulls=True)


def sql_string(text: str) -> str:
    """``text`` as a single-quoted SQL string literal (for statements that take no
    parameters, such as ``COPY`` and views)."""
    return "'" + text.replace("'", "''") + "'"


def _is_glob(text: str) -> bool:
    return any(char in text for char in "*?[")


def as_customer_ids(values: pd.Series) -> pd.Series:
    """Ids as strings; missing ids stay missing (cleaning counts and drops them)."""
    if pd.api.types.is_float_dtype(values):
        whole = values.dropna()
        if (whole.abs() < math.inf).all() and (whole == whole.round()).all():
            # Integers stored as floats because of missing values: 17850.0 -> "17850".
            if (whole.abs() < 2.0**63).all():
                return values.astype("Int64").astype("string")
            # Beyond int64 (1e20), every digit, as batch scoring reads them (HUGEINT).
            return values.map(lambda v: str(int(v)), na_action="ignore").astype("string")
    return values.astype("string")


def id_dtype(values: pd.Series) -> IdDtype:
    """The dtype ids read from ``values`` are given back in (see :func:`restore_ids`), or
    None when they stay text.

    Integer ids keep their dtype (int64 stays int64, nullable Int64 stays Int64), so that a
    score table joins the user's own tables on ``customer_id``. An object column of Python
    or NumPy integers (Parquet integers with missing values are read so, to keep every digit)
    gives Int64 when it has missing ids, int64 otherwise, if they fit. Anything else (strings,
    floats, booleans, mixed types) is text, as :func:`as_customer_ids` renders it.
    """
    dtype = values.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return None
    if pd.api.types.is_integer_dtype(dtype):
        return dtype
    if not pd.api.types.is_object_dtype(dtype):
        return None
    present = values.dropna()
    if (
        len(present)
        and pd.api.types.infer_dtype(present, skipna=False) == "integer"
        and min(present) >= -(2**63)
        and max(present) < 2**63
    ):
        return pd.Int64Dtype() if len(present) < len(values) else np.dtype(np.int64)
    return None


def restore_ids(ids: pd.Series, dtype: IdDtype) -> pd.Series:
    """Text ids (as :func:`as_customer_ids` wrote them) back in ``dtype``, exactly: every
    digit of an int64 above 2**53 is kept (the text is parsed, never passed through a
    float). ``dtype`` None returns the ids as they are."""
    if dtype is None:
        return ids
    text = ids.astype(pd.StringDtype("pyarrow"))
    if isinstance(dtype, np.dtype):  # parsed by Arrow into the nullable twin, then unboxed
        twin = ("UInt" + dtype.name[4:]) if dtype.kind == "u" else ("Int" + dtype.name[3:])
        return text.astype(pd.api.types.pandas_dtype(twin)).astype(dtype)
    return text.astype(dtype)
