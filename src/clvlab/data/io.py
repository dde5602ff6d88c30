"""Read transactions from a file, a packaged data set or a DataFrame into canonical form."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from clvlab.data.datasets import is_packaged_source, load_packaged
from clvlab.data.validate import parse_amounts, parse_dates, require_columns
from clvlab.errors import DataError

#: The canonical column names (see DESIGN.md).
CUSTOMER_ID, DATE, AMOUNT = "customer_id", "date", "amount"

TransactionSource = str | Path | pd.DataFrame


def read_transactions(
    source: TransactionSource,
    *,
    customer_id: str = CUSTOMER_ID,
    date: str = DATE,
    amount: str | None = AMOUNT,
    date_format: str | None = None,
) -> pd.DataFrame:
    """Read transactions into the canonical table.

    Parameters
    ----------
    source
        A CSV or Parquet file path, ``"lifetimes:CDNOW_master"``/``"lifetimes:CDNOW_sample"``,
        or a DataFrame.
    customer_id, date, amount
        Names of the columns in ``source`` that hold the customer id, the transaction date and
        the amount. ``amount=None`` reads count-only data.
    date_format
        ``strftime`` format of the date column when it holds strings; inferred if None.

    Returns
    -------
    pandas.DataFrame
        Columns ``customer_id`` (string), ``date`` (timezone-naive timestamp) and, unless
        count-only, ``amount`` (float64), in the order read.

    Raises
    ------
    DataError
        If the source cannot be read, is empty, lacks a column, or has unparsable dates or
        non-numeric amounts. The message names the column, the number of rows and examples.
    """
    frame, where = _load(source)
    if frame.empty:
        raise DataError(f"{where}: no transactions (the table has no rows).")
    columns = {"customer id": customer_id, "date": date}
    if amount is not None:
        columns["amount"] = amount
    require_columns(frame, columns, where)

    canonical = pd.DataFrame(
        {
            CUSTOMER_ID: _customer_ids(frame[customer_id]),
            DATE: parse_dates(frame[date], date, date_format, where),
        }
    )
    if amount is not None:
        canonical[AMOUNT] = parse_amounts(frame[amount], amount, where)
    return canonical.reset_index(drop=True)


def _load(source: TransactionSource) -> tuple[pd.DataFrame, str]:
    if isinstance(source, pd.DataFrame):
        return source, "transactions"
    if is_packaged_source(source):
        return load_packaged(str(source)), str(source)
    path = Path(source)
    where = str(path)
    if not path.exists():
        raise DataError(f"transactions file not found: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet" or path.is_dir():
            return pd.read_parquet(path), where
        if suffix in {".csv", ".txt", ".gz"}:
            # Ids stay strings: "00042" and "42" are different customers.
            return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""]), where
    except (OSError, ValueError) as exc:
        raise DataError(f"{where}: cannot read transactions: {exc}") from None
    raise DataError(f"{where}: unknown file type {suffix!r}; use .csv or .parquet")


def _customer_ids(values: pd.Series) -> pd.Series:
    """Customer ids as strings; missing ids stay missing (cleaning counts and drops them)."""
    if pd.api.types.is_float_dtype(values):
        # A float column of ids (from NaN-holding integers): 17850.0 -> "17850".
        as_int = values.astype("Int64")
        return as_int.astype("string")
    return values.astype("string")
