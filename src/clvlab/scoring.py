"""Score customers: one row per customer with p_alive, p_churn, expected purchases and CLV."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import pandas as pd

from clvlab.data import (
    AMOUNT,
    CUSTOMER_ID,
    DATE,
    CleaningPolicy,
    clean_transactions,
    read_links,
    read_transactions,
    resolve_identities,
)
from clvlab.data.identity import LinkSource
from clvlab.data.io import TransactionSource
from clvlab.errors import DataError
from clvlab.features.rfm import DateLike, rfm
from clvlab.features.windows import PurchaseDays, customer_covariates
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
ALL_EXCLUDED = "every transaction excluded by cleaning (see the data report)"
_READ_ROLES = ("customer_id", "date", "amount", "quantity", "price", "date_format", "timezone")


def score(
    model: CLVModel | str | Path,
    transactions: TransactionSource,
    *,
    as_of: DateLike | None = None,
    horizon_days: float | None = None,
    identity_links: LinkSource | None = None,
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
    identity_links
        Pairs of ids known to be one person (see :func:`clvlab.data.read_links`): the
        transactions are mapped to one canonical id per person first, so the table has one
        row per person.

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
    transactions, invoice = _read(transactions, model)
    if identity_links is not None:
        transactions, _, _ = resolve_identities(transactions, read_links(identity_links))
    policy = CleaningPolicy(**model.cleaning)
    if invoice is None:
        policy = dataclasses.replace(policy, cancellation_prefix=None)
    customers = pd.Index(transactions[CUSTOMER_ID].dropna().unique(), name=CUSTOMER_ID)
    canonical, report = clean_transactions(transactions, policy=policy, invoice=invoice)
    if report.steps["missing_customer_id"]:
        warnings.warn(
            f"{report.steps['missing_customer_id']} transaction rows have no customer id and "
            "were not scored",
            stacklevel=2,
        )
    if customers.empty:
        raise DataError("no transactions with a customer id to score")
    as_of = canonical[DATE].max() if as_of is None and len(canonical) else as_of
    if as_of is None:
        raise DataError("every transaction was excluded by cleaning; nothing to score")
    summary = rfm(canonical, as_of, freq="D", freq_multiplier=model.unit_days)
    gbm_inputs = {}
    if model.gbm is not None:
        as_of = pd.Timestamp(as_of)
        seen = canonical[canonical[DATE] < as_of.normalize() + pd.Timedelta(days=1)]
        covariates = customer_covariates(seen, model.covariates) if model.covariates else None
        gbm_inputs = {
            "history": PurchaseDays.from_transactions(seen),
            "as_of": as_of,
            "covariates": covariates,
        }
    predictions = model.predict(summary, horizon_days=horizon_days, **gbm_inputs)

    table = pd.DataFrame(index=customers.sort_values()).join(summary).join(predictions)
    if "monetary_value" not in table:
        table["monetary_value"] = float("nan")
    table["model"] = model.label(horizon_days, gbm_inputs=bool(gbm_inputs))
    table["model_version"] = model.version
    table["reason"] = pd.Series(pd.NA, index=table.index, dtype="string")
    table.loc[~table.index.isin(summary.index), "reason"] = NO_HISTORY
    table.loc[~table.index.isin(canonical[CUSTOMER_ID]), "reason"] = ALL_EXCLUDED
    table = table.reset_index()[SCORE_COLUMNS]
    table.attrs["data_report"] = report.to_dict()
    return table


def _read(transactions: TransactionSource, model: CLVModel) -> tuple[pd.DataFrame, str | None]:
    """Read as in training, or by the canonical names when a DataFrame has those instead.

    Returns the transactions and the invoice column (None when the model has none or the
    transactions do not carry it: then the invoice steps of the cleaning policy are skipped).
    """
    columns = {role: model.columns.get(role) for role in _READ_ROLES}
    columns["customer_id"] = columns["customer_id"] or CUSTOMER_ID
    columns["date"] = columns["date"] or DATE
    if model.spend is None:
        columns.update(amount=None, quantity=None, price=None)
    elif not columns["quantity"]:
        columns["amount"] = columns["amount"] or AMOUNT
    if isinstance(transactions, pd.DataFrame) and columns["customer_id"] not in transactions:
        columns.update(
            customer_id=CUSTOMER_ID,
            date=DATE,
            quantity=None,
            price=None,
            amount=AMOUNT if model.spend is not None else None,
        )
    # All columns stay until cleaning: exact duplicates are judged on the whole source row.
    frame = read_transactions(transactions, **columns)
    invoice = model.columns.get("invoice")
    return frame, invoice if invoice in frame.columns else None
