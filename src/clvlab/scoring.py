"""Score customers: one row per customer with p_alive, p_churn, expected purchases and CLV."""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd

from clvlab.data import CUSTOMER_ID, DATE, clean_transactions, read_transactions
from clvlab.data.io import TransactionSource
from clvlab.errors import DataError
from clvlab.features.rfm import DateLike, rfm
from clvlab.models.clv import PREDICTION_COLUMNS, CLVModel

#: The score table's columns, in order.
SCORE_COLUMNS = [
    CUSTOMER_ID,
    "frequency",
    "recency",
    "T",
    "monetary_value",
    *PREDICTION_COLUMNS,
    "model",
    "model_version",
    "reason",
]

NO_HISTORY = "no transaction on or before as_of"


def score(
    model: CLVModel | str | Path,
    transactions: TransactionSource,
    *,
    as_of: DateLike | None = None,
    horizon_days: float | None = None,
) -> pd.DataFrame:
    """Score every customer in ``transactions``.

    Parameters
    ----------
    model
        A :class:`CLVModel`, an MLflow model URI (``runs:/...``, ``models:/NAME@alias``) or a
        local model folder / ``clv_model.json``.
    transactions
        A DataFrame or a CSV/Parquet path, with the column names the model was trained on or
        the canonical ``customer_id, date[, amount]``.
    as_of
        The date the scores are for; transactions after it are ignored. Defaults to the last
        transaction date.
    horizon_days
        Horizon of ``p_churn``, ``expected_purchases``, ``expected_revenue`` and ``clv``;
        defaults to the model's.

    Returns
    -------
    pandas.DataFrame
        One row per customer id in the input (:data:`SCORE_COLUMNS`). RFM columns are in the
        model's time unit. A customer who cannot be scored keeps a row with NaN predictions and
        the ``reason``; spend columns are NaN for a count-only model. Rows without a customer id
        are excluded and reported in a warning and in ``.attrs["data_report"]``.
    """
    if not isinstance(model, CLVModel):
        from clvlab.tracking import load_model

        model = load_model(model)
    canonical, report = clean_transactions(_read(transactions, model))
    if report.steps["missing_customer_id"]:
        warnings.warn(
            f"{report.steps['missing_customer_id']} transaction rows have no customer id and "
            "were not scored",
            stacklevel=2,
        )
    if canonical.empty:
        raise DataError("no transactions with a customer id to score")
    as_of = canonical[DATE].max() if as_of is None else as_of
    summary = rfm(canonical, as_of, freq="D", freq_multiplier=model.unit_days)
    predictions = model.predict(summary, horizon_days=horizon_days)

    customers = pd.Index(canonical[CUSTOMER_ID].unique(), name=CUSTOMER_ID).sort_values()
    table = pd.DataFrame(index=customers).join(summary).join(predictions)
    if "monetary_value" not in table:
        table["monetary_value"] = float("nan")
    table["model"] = model.name
    table["model_version"] = model.version
    table["reason"] = pd.Series(pd.NA, index=table.index, dtype="string")
    table.loc[~table.index.isin(summary.index), "reason"] = NO_HISTORY
    table = table.reset_index()[SCORE_COLUMNS]
    table.attrs["data_report"] = report.to_dict()
    return table


def _read(transactions: TransactionSource, model: CLVModel) -> pd.DataFrame:
    """Read with the model's column names, or the canonical ones when the table has those."""
    names = {
        "customer_id": model.columns.get("customer_id") or CUSTOMER_ID,
        "date": model.columns.get("date") or DATE,
        "amount": (model.columns.get("amount") or "amount") if model.spend is not None else None,
    }
    if isinstance(transactions, pd.DataFrame) and names["customer_id"] not in transactions:
        names = {role: (None if name is None else role) for role, name in names.items()}
    return read_transactions(transactions, date_format=model.columns.get("date_format"), **names)
