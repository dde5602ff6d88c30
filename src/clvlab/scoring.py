"""Score customers: one row per customer with p_alive, p_churn, expected purchases and CLV."""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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
from clvlab.data.clean import DataReport
from clvlab.data.identity import LinkSource
from clvlab.data.io import TransactionSource
from clvlab.errors import DataError
from clvlab.features.rfm import DateLike, as_timestamp, rfm
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
        Horizon of ``p_churn``, ``expected_purchases``, ``expected_revenue`` and ``clv``, a
        positive number of days; defaults to the model's.
    identity_links
        Pairs of ids known to be one person (see :func:`clvlab.data.read_links`): the
        transactions are mapped to one canonical id per person first, so the table has one
        row per person.

    Returns
    -------
    pandas.DataFrame
        One row per customer id in the input (:data:`SCORE_COLUMNS`), sorted by id. RFM
        columns are in the model's time unit. A customer who cannot be scored keeps a row with
        NaN predictions and the ``reason``; spend columns are NaN for a count-only model. Rows
        without a customer id are excluded and reported in a warning and in
        ``.attrs["data_report"]``.

    See Also
    --------
    clvlab.batch.score_to_file : the same for data larger than memory, written to a file.
    """
    model = as_model(model)
    as_of, horizon_days = check_arguments(as_of, horizon_days)
    prepared = prepare(model, transactions, identity_links)
    check_customer_ids(prepared.report)
    return score_prepared(
        model, prepared, prepared.last_date if as_of is None else as_of, horizon_days
    )


def as_model(model: CLVModel | str | Path) -> CLVModel:
    """The model itself, or the one loaded from an MLflow URI or a local path."""
    if isinstance(model, CLVModel):
        return model
    from clvlab.tracking import load_model

    return load_model(model)


def check_arguments(
    as_of: DateLike | None, horizon_days: float | None
) -> tuple[pd.Timestamp | None, float | None]:
    """``as_of`` as a timestamp and ``horizon_days`` as a positive float (None stays None)."""
    if horizon_days is not None:
        try:
            days = float(horizon_days)
        except (TypeError, ValueError):
            days = math.nan
        if not (math.isfinite(days) and days > 0):
            raise DataError(
                f"horizon_days must be a positive number of days (e.g. 365), got {horizon_days!r}"
            )
        horizon_days = days
    return (None if as_of is None else as_timestamp(as_of, "as_of")), horizon_days


def check_customer_ids(report: DataReport, *, warn: bool = True, stacklevel: int = 3) -> None:
    """Raise if no row has a customer id; else warn (if ``warn``) of rows without one, at
    ``stacklevel`` as in :func:`warnings.warn` counted from here."""
    missing_ids = report.steps.get("missing_customer_id", 0)
    if missing_ids == report.rows_read:
        raise DataError("no transactions with a customer id to score")
    if missing_ids and warn:
        warnings.warn(
            f"{missing_ids} transaction rows have no customer id and were not scored",
            stacklevel=stacklevel,
        )


@dataclasses.dataclass
class PreparedTransactions:
    """Transactions read and cleaned as the model was trained, ready to be scored."""

    #: The cleaned canonical transactions (not sorted).
    canonical: pd.DataFrame
    #: Ids of customers all of whose rows cleaning excluded.
    excluded: pd.Index
    #: What cleaning did.
    report: DataReport

    @property
    def last_date(self) -> pd.Timestamp:
        """The last transaction date after cleaning (the default ``as_of``)."""
        if self.canonical.empty:
            raise DataError("every transaction was excluded by cleaning; nothing to score")
        return self.canonical[DATE].max()


def prepare(
    model: CLVModel,
    transactions: TransactionSource,
    identity_links: LinkSource | None = None,
) -> PreparedTransactions:
    """Read ``transactions`` as the model was trained on them, resolve identities, clean."""
    frame, invoice = _read(transactions, model)
    if identity_links is not None:
        frame, _, _ = resolve_identities(frame, read_links(identity_links))
    policy = CleaningPolicy(**model.cleaning)
    if invoice is None:
        policy = dataclasses.replace(policy, cancellation_prefix=None)
    canonical, report = clean_transactions(frame, policy=policy, invoice=invoice, sort=False)
    excluded = pd.Index([], dtype="string", name=CUSTOMER_ID)
    # Only a step that removes rows can remove a customer (merging invoice lines cannot).
    removing = {step for step, count in report.steps.items() if count} - {
        "missing_customer_id",
        "invoice_lines_merged",
    }
    if removing:
        seen = pd.Index(frame[CUSTOMER_ID].dropna().unique(), name=CUSTOMER_ID)
        excluded = seen.difference(pd.Index(canonical[CUSTOMER_ID].unique()))
    return PreparedTransactions(canonical, excluded, report)


def score_prepared(
    model: CLVModel,
    prepared: PreparedTransactions,
    as_of: pd.Timestamp,
    horizon_days: float | None,
    threads: int | None = None,
) -> pd.DataFrame:
    """The score table (see :func:`score`) of prepared transactions at ``as_of``
    (``threads``: DuckDB's, as in :func:`clvlab.rfm`)."""
    canonical = prepared.canonical
    summary = rfm(canonical, as_of, freq="D", freq_multiplier=model.unit_days, threads=threads)
    gbm_inputs = {}
    seen = canonical[canonical[DATE] < as_of.normalize() + pd.Timedelta(days=1)]
    if model.gbm is not None and len(seen):
        covariates = customer_covariates(seen, model.covariates) if model.covariates else None
        gbm_inputs = {
            "history": PurchaseDays.from_transactions(seen),
            "as_of": as_of,
            "covariates": covariates,
        }
    predictions = model.predict(summary, horizon_days=horizon_days, **gbm_inputs)
    table = pd.concat([summary, predictions], axis=1)
    if "monetary_value" not in table:
        table["monetary_value"] = float("nan")
    table["reason"] = pd.Series(pd.NA, index=table.index, dtype="string")
    unscored = _unscored(canonical, summary.index, as_of, prepared.excluded)
    if len(unscored):  # rfm's summary is sorted by id; the few unscored rows are merged in
        table = pd.concat([table, unscored.to_frame()]).sort_index()
    table["model"] = model.label(horizon_days, gbm_inputs=bool(gbm_inputs))
    table["model_version"] = model.version
    table = table.rename_axis(CUSTOMER_ID).reset_index()[SCORE_COLUMNS]
    table.attrs["data_report"] = prepared.report.to_dict()
    return table


def _unscored(
    canonical: pd.DataFrame, summarized: pd.Index, as_of: pd.Timestamp, excluded: pd.Index
) -> pd.Series:
    """The reason for each customer without a summary: every transaction excluded by
    cleaning, or none on or before ``as_of``."""
    if as_of == as_of.normalize():  # a date covers its whole day, as in rfm
        late = canonical[DATE] >= as_of + pd.Timedelta(days=1)
    else:
        late = canonical[DATE] > as_of
    only_later = pd.Index(canonical.loc[late, CUSTOMER_ID].unique()).difference(summarized)
    reasons = pd.concat(
        [
            pd.Series(NO_HISTORY, index=only_later, dtype="string"),
            pd.Series(ALL_EXCLUDED, index=excluded, dtype="string"),
        ]
    )
    return reasons.rename("reason").rename_axis(CUSTOMER_ID)


def read_columns(model: CLVModel, source_columns: Sequence[str] | None = None) -> dict[str, Any]:
    """The columns to read transactions by (:func:`clvlab.read_transactions`' arguments):
    those the model was trained on, or the canonical ones when ``source_columns`` (a
    DataFrame's columns) lack the trained customer id column but have the canonical one."""
    columns = {role: model.columns.get(role) for role in _READ_ROLES}
    columns["customer_id"] = columns["customer_id"] or CUSTOMER_ID
    columns["date"] = columns["date"] or DATE
    if model.spend is None:
        columns.update(amount=None, quantity=None, price=None)
    elif not columns["quantity"]:
        columns["amount"] = columns["amount"] or AMOUNT
    if source_columns is not None and columns["customer_id"] not in source_columns:
        columns.update(
            customer_id=CUSTOMER_ID,
            date=DATE,
            quantity=None,
            price=None,
            amount=AMOUNT if model.spend is not None else None,
        )
    return columns


def _read(transactions: TransactionSource, model: CLVModel) -> tuple[pd.DataFrame, str | None]:
    """Read as in training, or by the canonical names when a DataFrame has those instead.

    Returns the transactions and the invoice column (None when the model has none or the
    transactions do not carry it: then the invoice steps of the cleaning policy are skipped).
    """
    in_frame = transactions.columns if isinstance(transactions, pd.DataFrame) else None
    # All columns stay until cleaning: exact duplicates are judged on the whole source row.
    frame = read_transactions(transactions, **read_columns(model, in_frame))
    invoice = model.columns.get("invoice")
    return frame, invoice if invoice in frame.columns else None
