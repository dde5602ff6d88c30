"""Score customers: one row per customer with p_alive, p_churn, expected purchases and CLV."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
import pandas as pd
import pyarrow as pa

from clvlab.config import MAX_HORIZON_DAYS, resolution
from clvlab.data import (
    AMOUNT,
    CUSTOMER_ID,
    DATE,
    CleaningPolicy,
    clean_transactions,
    read_links,
    resolve_identities,
)
from clvlab.data.clean import DataReport
from clvlab.data.identity import LinkSource
from clvlab.data.io import IdDtype, TransactionSource, read_canonical, restore_ids
from clvlab.errors import ClvlabWarning, DataError
from clvlab.explain import REASON_COLUMNS, reason_columns
from clvlab.features.rfm import DateLike, as_timestamp, period_bounds, rfm
from clvlab.features.windows import PurchaseDays, customer_covariates
from clvlab.intervals import COUNT_BOUNDS, INTERVAL_COLUMNS, check_level, score_intervals
from clvlab.models.clv import BTYD, PREDICTION_COLUMNS, CLVModel
from clvlab.models.contractual.model import ContractualModel
from clvlab.models.saved import ScoringModel
from clvlab.scoring_contractual import score_subscriptions
from clvlab.segments import SEGMENT_COLUMNS, segment_values

#: The score table's columns, in order; a model with segment rules adds
#: :data:`clvlab.segments.SEGMENT_COLUMNS` after them.
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
#: The data report's step (``excluded.after_as_of``) that counts the rows after ``as_of``.
AFTER_AS_OF = "after_as_of"
#: The columns whose names scoring can be given (:func:`score`'s keyword arguments).
COLUMN_ROLES = ("customer_id", "date", "amount", "date_format")
_READ_ROLES = ("customer_id", "date", "amount", "quantity", "price", "date_format", "timezone")


def score_columns(model: CLVModel, *, explain: bool = False, intervals: bool = False) -> list[str]:
    """The columns of ``model``'s score table, in order (with the intervals and the reasons
    when ``intervals`` and ``explain``)."""
    segments = SEGMENT_COLUMNS if model.segments is not None else []
    bounds = INTERVAL_COLUMNS if intervals else []
    reasons = [REASON_COLUMNS[target] for target in model.sources_for()] if explain else []
    return SCORE_COLUMNS + segments + bounds + reasons


def interval_level(model: CLVModel, intervals: float | bool | None) -> float | None:
    """The level of the score intervals: ``intervals`` if given (checked to be strictly
    between 0 and 1), none for ``False``, else the model's default (``scoring.intervals``
    when it was trained; None: no intervals)."""
    if intervals is False:
        return None
    return model.interval_level if intervals is None else check_level(intervals)


def score(
    model: CLVModel | ContractualModel | str | Path,
    transactions: TransactionSource,
    *,
    as_of: DateLike | None = None,
    horizon_days: float | None = None,
    identity_links: LinkSource | None = None,
    customer_id: str | None = None,
    date: str | None = None,
    amount: str | None = None,
    date_format: str | None = None,
    explain: bool = False,
    intervals: float | bool | None = None,
) -> pd.DataFrame:
    """Score every customer in ``transactions``.

    Parameters
    ----------
    model
        A :class:`CLVModel`, an MLflow model URI (``runs:/...``, ``models:/NAME@alias``) or a
        local model folder / ``clv_model.json``. A contractual model (``setting:
        contractual``, :class:`~clvlab.models.contractual.ContractualModel`) scores
        subscriptions instead: see :func:`clvlab.scoring_contractual.score_subscriptions`
        (only ``as_of`` applies then).
    transactions
        A DataFrame or a CSV/Parquet path, with the column names the model was trained on or
        the canonical ``customer_id, date[, amount]`` (or those named by ``customer_id``,
        ``date`` and ``amount``); a subscription table for a contractual model.
    as_of
        The date the scores are for, an ISO 8601 string (``"1998-06-30"``, optionally with a
        time and a zone: see :func:`clvlab.features.rfm.as_timestamp`) or a date/time object.
        Purchases on its day count (for a model of ``time_unit: H``, in its hour when it has
        a time; a date covers its whole day); later rows are ignored and counted in the data
        report (``excluded.after_as_of``). It must not be before the first transaction (after
        cleaning); after today it gives a :class:`clvlab.ClvlabWarning`. Defaults to the last
        transaction date.
    horizon_days
        Horizon of ``p_churn``, ``expected_purchases``, ``expected_revenue`` and ``clv``, a
        positive number of days up to :data:`MAX_HORIZON_DAYS` (100 years); defaults to the
        model's.
    identity_links
        Pairs of ids known to be one person (see :func:`clvlab.data.read_links`): the
        transactions are mapped to one canonical id per person first, so the table has one
        row per person.
    customer_id, date, amount, date_format
        Read the transactions by these column names (and this ``strftime`` format of the
        dates, or ``"ISO8601"``) instead of those the model was trained with (the
        ``clvlab score`` options ``--customer-id``, ``--date``, ``--amount`` and
        ``--date-format``). ``amount`` replaces a trained quantity and price; a count-only
        model reads no amount.
    explain
        Add each target's reasons in plain words (``reasons_purchases``, ``reasons_churn``
        and, with spend, ``reasons_revenue``; ``clvlab score --explain``): the GBM's three
        largest feature contributions where it predicts the target, the customer's RFM
        position where a BTYD model, the historical formula or an ensemble does (see
        :mod:`clvlab.explain`).
    intervals
        Add intervals at this level (e.g. 0.9; ``clvlab score --intervals 0.9``):
        ``<column>_lower`` and ``<column>_upper`` for ``p_alive``, ``expected_purchases``,
        ``expected_revenue`` and ``clv`` from the uncertainty of the fitted parameters
        (parametric bootstrap), and ``purchases_lower`` and ``purchases_upper``, whole numbers
        bounding the purchases themselves within the horizon (see :mod:`clvlab.intervals`).
        Defaults to the model's ``scoring.intervals`` (none unless the run config set it);
        ``False``: none, whatever the model's default.

    Returns
    -------
    pandas.DataFrame
        One row per customer id in the input (:data:`SCORE_COLUMNS`), sorted by id. The ids
        keep the input's dtype, so the table joins the user's tables on ``customer_id``:
        integer ids stay integers (int64 stays int64, a nullable Int64 stays Int64; every
        digit kept) and are sorted in numeric order; other ids (strings, floats, mixed types)
        are text, as :func:`clvlab.read_transactions` reads them (a whole float without its
        ".0"), sorted in string order; so are the ids of a table that
        :func:`clvlab.read_transactions` returned (give the file or the original table to
        keep integer ids). With ``identity_links`` the canonical ids are ids of the
        transactions, so they keep that dtype too. RFM columns are in the model's time
        unit. A customer who cannot be scored keeps a row with NaN predictions and the
        ``reason``; spend columns are NaN for a count-only model. A model with segment
        rules adds :data:`clvlab.segments.SEGMENT_COLUMNS` (missing for a customer who
        cannot be scored; see :func:`clvlab.segments.add_segments`).
        ``.attrs["data_report"]`` counts every row read: kept, or excluded by a cleaning step
        or as after ``as_of`` (:class:`clvlab.data.DataReport`'s ``to_dict``). Rows without a
        customer id are excluded and also reported in a warning.

    Raises
    ------
    DataError
        If an argument is not valid (a date not in ISO 8601, a horizon out of range, an empty
        column name), ``as_of`` is before the first transaction, or the transactions cannot be
        read or have no customer id; the message says which and how to fix it.

    See Also
    --------
    clvlab.batch.score_to_file : the same for data larger than memory, written to a file.
    """
    as_of, horizon_days = check_arguments(as_of, horizon_days)
    names = column_names(customer_id=customer_id, date=date, amount=amount, date_format=date_format)
    loaded = as_scoring_model(model)
    if isinstance(loaded, ContractualModel):
        check_contractual_arguments(
            horizon_days=horizon_days,
            identity_links=identity_links,
            intervals=intervals,
            explain=explain or None,
            **names,
        )
        return score_subscriptions(loaded, transactions, as_of=as_of)
    model = loaded
    level = interval_level(model, intervals)
    prepared = prepare(model, transactions, identity_links, names)
    return score_at(model, prepared, as_of, horizon_days, explain=explain, intervals=level)[0]


def score_at(
    model: CLVModel,
    prepared: PreparedTransactions,
    as_of: pd.Timestamp | None,
    horizon_days: float | None,
    *,
    explain: bool = False,
    intervals: float | None = None,
) -> tuple[pd.DataFrame, pd.Timestamp]:
    """What :func:`score` does once the transactions are read: check the customer ids (a
    warning for rows without one, at the caller of the caller), take the last transaction
    date as ``as_of`` when None (else check it is not before the data) and score (with the
    reasons when ``explain``, and the intervals at level ``intervals`` unless None). Returns
    the score table and the ``as_of`` it is at."""
    check_customer_ids(prepared.report, stacklevel=4)
    if as_of is None:
        as_of = prepared.last_date
    else:
        check_as_of(as_of, prepared.first_date, model.time_unit)
    table, _ = score_prepared(
        model, prepared, as_of, horizon_days, explain=explain, intervals=intervals
    )
    return table, as_of


def check_contractual_arguments(**given: object) -> None:
    """Raise a :class:`DataError` naming the scoring arguments ``given`` (not None) that a
    contractual model does not take: it scores subscriptions by the columns it was trained
    with, over its own horizon in periods, as of ``as_of``."""
    unused = sorted(name for name, value in given.items() if value is not None)
    if unused:
        raise DataError(
            f"{', '.join(unused)}: not for a contractual model, which scores subscriptions by "
            "the columns it was trained with over its horizon_periods; leave them out"
        )


def as_model(model: CLVModel | str | Path) -> CLVModel:
    """The model itself, or the one loaded from an MLflow URI or a local path."""
    if isinstance(model, CLVModel):
        return model
    from clvlab.tracking import load_model

    return load_model(model)


def as_scoring_model(model: CLVModel | ContractualModel | str | Path) -> ScoringModel:
    """:func:`as_model` of either setting (a contractual model too)."""
    if isinstance(model, CLVModel | ContractualModel):
        return model
    from clvlab.tracking import load_scoring_model

    return load_scoring_model(model)


def check_arguments(
    as_of: DateLike | None, horizon_days: float | None, *, stacklevel: int = 3
) -> tuple[pd.Timestamp | None, float | None]:
    """``as_of`` as a timestamp and ``horizon_days`` as a float (None stays None), checked
    once for every way of scoring (:func:`score`, :func:`clvlab.batch.score_to_file`, the
    CLI, the served model).

    ``as_of`` must be an ISO 8601 string or a date/time object (see
    :func:`clvlab.features.rfm.as_timestamp`); a day after today gives a
    :class:`clvlab.ClvlabWarning` (at ``stacklevel`` as in :func:`warnings.warn`, counted
    from here). ``horizon_days`` must be a positive number of days up to
    :data:`MAX_HORIZON_DAYS`. Otherwise a :class:`DataError` says what is wrong.
    """
    if horizon_days is not None:
        try:
            days = float(horizon_days)
        except (TypeError, ValueError):
            days = math.nan
        if isinstance(horizon_days, bool) or not (0 < days <= MAX_HORIZON_DAYS):
            raise DataError(
                f"horizon_days must be a positive number of days, at most {MAX_HORIZON_DAYS} "
                f"(100 years), e.g. 365; got {horizon_days!r}"
            )
        horizon_days = days
    if as_of is None:
        return None, horizon_days
    stamp = as_timestamp(as_of, "as_of")
    today = max(dt.date.today(), dt.datetime.now(dt.UTC).date())  # whichever is later
    if stamp.date() > today:
        warnings.warn(
            f"as_of {_day(stamp)} is after today ({today}): its scores assume no purchase "
            "until then; check the date, or leave as_of out to score as of the last transaction",
            ClvlabWarning,
            stacklevel=stacklevel,
        )
    return stamp, horizon_days


def check_as_of(as_of: pd.Timestamp, first_date: pd.Timestamp | None, time_unit: str = "D") -> None:
    """Raise if ``as_of`` (as a model of ``time_unit`` reads it, see :func:`as_of_end`) is
    before ``first_date``, the first transaction after cleaning (None when cleaning kept
    none): then no customer would have a purchase to be scored on."""
    if first_date is not None and first_date >= as_of_end(as_of, time_unit):
        raise DataError(
            f"as_of {_day(as_of)} is before the first transaction ({_day(first_date)}), so no "
            f"customer could be scored; give an as_of on or after {first_date.date()}, or none "
            "to score as of the last transaction"
        )


def day_after(as_of: pd.Timestamp) -> pd.Timestamp:
    """The first instant after ``as_of``'s day. Scores at daily resolution work in whole
    days: a purchase on the as-of day counts whatever its time, as in :func:`clvlab.rfm`
    with ``freq="D"``."""
    return as_of.normalize() + pd.Timedelta(days=1)


def as_of_end(as_of: pd.Timestamp, time_unit: str) -> pd.Timestamp:
    """The first instant after what ``as_of`` covers for a model of ``time_unit``: the end of
    its day (:func:`day_after`) at daily resolution; for ``time_unit: H`` the end of its hour,
    or of its day when ``as_of`` is a date (midnight), as :func:`clvlab.rfm` with
    ``freq="H"`` reads it (see :func:`clvlab.config.resolution`)."""
    return period_bounds(as_of, resolution(time_unit)[0])[1]


def _day(stamp: pd.Timestamp) -> str:
    """A timestamp as a date when it is midnight, else in full."""
    return str(stamp.date()) if stamp == stamp.normalize() else str(stamp)


def column_names(**names: str | None) -> dict[str, str]:
    """The column names given for scoring (roles of :data:`COLUMN_ROLES`; None: not given),
    checked to be non-empty strings."""
    given = {role: name for role, name in names.items() if name is not None}
    for role, name in given.items():
        if role not in COLUMN_ROLES:
            raise TypeError(f"unknown column role {role!r}; expected one of {COLUMN_ROLES}")
        if not isinstance(name, str) or not name.strip():
            what = (
                "a strftime format of the dates, such as '%d/%m/%Y' (or 'ISO8601')"
                if role == "date_format"
                else "the name of a column of the transactions"
            )
            raise DataError(f"{role} must be {what}, got {name!r}")
    return given


def check_customer_ids(report: DataReport, *, warn: bool = True, stacklevel: int = 3) -> None:
    """Raise if no row has a customer id; else warn (if ``warn``) of rows without one, at
    ``stacklevel`` as in :func:`warnings.warn` counted from here."""
    missing_ids = report.steps.get("missing_customer_id", 0)
    if missing_ids == report.rows_read:
        raise DataError("no transactions with a customer id to score")
    if missing_ids and warn:
        warnings.warn(
            f"{missing_ids} transaction rows have no customer id and were not scored",
            ClvlabWarning,
            stacklevel=stacklevel,
        )


class _GBMInputs(TypedDict, total=False):
    """:meth:`CLVModel.predict`'s inputs of the GBM (none when the model has no GBM)."""

    history: PurchaseDays
    as_of: pd.Timestamp
    covariates: pd.DataFrame | None


@dataclasses.dataclass
class PreparedTransactions:
    """Transactions read and cleaned as the model was trained, ready to be scored."""

    #: The cleaned canonical transactions (not sorted).
    canonical: pd.DataFrame
    #: Ids of customers all of whose rows cleaning excluded.
    excluded: pd.Index
    #: What cleaning did.
    report: DataReport
    #: The dtype the score table gives the (text) ids back in: the input id column's (see
    #: :func:`clvlab.data.io.id_dtype`); None: text.
    id_dtype: IdDtype = None

    @property
    def last_date(self) -> pd.Timestamp:
        """The last transaction date after cleaning (the default ``as_of``)."""
        if self.canonical.empty:
            raise DataError("every transaction was excluded by cleaning; nothing to score")
        return self.canonical[DATE].max()

    @property
    def first_date(self) -> pd.Timestamp | None:
        """The first transaction date after cleaning (None if cleaning kept no row)."""
        return None if self.canonical.empty else self.canonical[DATE].min()


def prepare(
    model: CLVModel,
    transactions: TransactionSource,
    identity_links: LinkSource | None = None,
    names: dict[str, str] | None = None,
) -> PreparedTransactions:
    """Read ``transactions`` as the model was trained on them (or by the column ``names``
    given for scoring, see :func:`read_columns`), resolve identities, clean."""
    frame, invoice, id_dtype = _read(transactions, model, names)
    if identity_links is not None:
        # A group's canonical id is the id with its earliest transaction (all transactions
        # have a date), so it is an id of the transactions and keeps their id dtype.
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
    return PreparedTransactions(canonical, excluded, report, id_dtype)


def score_prepared(
    model: CLVModel,
    prepared: PreparedTransactions,
    as_of: pd.Timestamp,
    horizon_days: float | None,
    threads: int | None = None,
    *,
    explain: bool = False,
    intervals: float | None = None,
) -> tuple[pd.DataFrame, DataReport]:
    """The score table (see :func:`score`) of prepared transactions at ``as_of``
    (``threads``: DuckDB's, as in :func:`clvlab.rfm`; ``explain``: with the reasons;
    ``intervals``: with the intervals at this level), and the
    data report with the rows after ``as_of`` excluded (also the table's
    ``.attrs["data_report"]``)."""
    canonical = prepared.canonical
    freq, multiplier = resolution(model.time_unit)
    summary = rfm(canonical, as_of, freq=freq, freq_multiplier=multiplier, threads=threads)
    on_time = (canonical[DATE] < as_of_end(as_of, model.time_unit)).to_numpy()
    report = _report_at(prepared.report, canonical, on_time, len(summary))
    later = pd.Index(canonical.loc[~on_time, CUSTOMER_ID].unique()).difference(summary.index)
    unscored = unscored_reasons(later, prepared.excluded)
    gbm_inputs = gbm_inputs_at(model, canonical[on_time], as_of)
    table = score_summary(
        model, summary, unscored, horizon_days, gbm_inputs, prepared.id_dtype, intervals
    )
    if explain:
        reasons = reason_columns(model, summary, horizon_days, **gbm_inputs)
        keys = table[CUSTOMER_ID].astype("string").to_numpy(dtype=object)
        for column in reasons:
            table[column] = pd.array(reasons[column].reindex(keys).to_numpy(), dtype="string")
    table.attrs["data_report"] = report.to_dict()
    return table, report


def gbm_inputs_at(model: CLVModel, seen: pd.DataFrame, as_of: pd.Timestamp) -> _GBMInputs:
    """What the model's GBM predicts from (none without a GBM or transactions): the purchase
    days and covariates of the canonical transactions ``seen`` on or before ``as_of``."""
    if model.gbm is None or seen.empty:
        return {}
    covariates = customer_covariates(seen, model.covariates) if model.covariates else None
    return {
        "history": PurchaseDays.from_transactions(seen),
        "as_of": as_of,
        "covariates": covariates,
    }


def score_summary(
    model: CLVModel,
    summary: pd.DataFrame,
    unscored: tuple[np.ndarray, np.ndarray],
    horizon_days: float | None,
    gbm_inputs: _GBMInputs | None = None,
    id_dtype: IdDtype = None,
    intervals: float | None = None,
) -> pd.DataFrame:
    """The score table of customers' RFM summaries (:func:`clvlab.rfm`'s, indexed by
    ``customer_id`` and sorted) and of those who cannot be scored (``unscored``: id ->
    reason): predictions, model, segments, intervals at level ``intervals`` (None: none);
    ids in ``id_dtype`` (None: text)."""
    columns = {str(column): summary[column].to_numpy(dtype=float) for column in summary}
    values = score_values(
        model,
        summary.index.to_numpy(dtype=object),
        columns,
        unscored,
        horizon_days,
        gbm_inputs,
        intervals,
    )
    return values.table(id_dtype)


@dataclasses.dataclass
class ScoreValues:
    """The columns of a score table as arrays, before any table is built (a table costs more
    than the scores of a few customers): floats with NaN where missing, text and segment
    scores as object arrays with None where missing.
    """

    #: Column name -> values, in the order of :func:`score_columns`.
    columns: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.columns[CUSTOMER_ID])

    @classmethod
    def empty(cls, model: CLVModel) -> ScoreValues:
        """No rows, with the columns of ``model``'s score table."""
        return cls(
            {
                name: np.empty(0, dtype=object if name in _TEXT_COLUMNS else float)
                for name in score_columns(model)
            }
        )

    def table(self, id_dtype: IdDtype = None) -> pd.DataFrame:
        """The score table: ids text (or in ``id_dtype``, in its order), text columns
        strings, segment scores nullable integers."""
        columns: dict[str, Any] = {}
        for name, values in self.columns.items():
            if name in _TEXT_COLUMNS:  # Arrow strings built directly: a few times quicker
                text = pa.array(values, type=pa.large_string(), from_pandas=True)
                columns[name] = pd.arrays.ArrowStringArray(text, dtype=_TEXT_COLUMNS[name])  # type: ignore[call-arg]
            elif name in _WHOLE_NUMBERS:
                missing = np.isnan(values)
                numbers = np.where(missing, 0, values).astype(np.int64)
                columns[name] = pd.arrays.IntegerArray(numbers, missing)
            else:
                columns[name] = values
        table = pd.DataFrame(columns, copy=False)
        if id_dtype is not None:  # ids in the input's dtype, in its (numeric) order
            table[CUSTOMER_ID] = restore_ids(table[CUSTOMER_ID], id_dtype)
            table = table.sort_values(CUSTOMER_ID, kind="stable", ignore_index=True)
        return table

    def records(self) -> list[dict[str, Any]]:
        """One dict a customer, of plain Python values (None where missing): what a service
        answers with, without a table."""
        lists = []
        for name, values in self.columns.items():
            if name in _WHOLE_NUMBERS:
                lists.append([None if v != v else int(v) for v in values.tolist()])
            elif values.dtype.kind == "f":
                lists.append([None if v != v else v for v in values.tolist()])  # NaN: None
            else:
                lists.append(values.tolist())
        names = list(self.columns)
        return [dict(zip(names, row, strict=True)) for row in zip(*lists, strict=True)]


#: Text columns of a score table and their dtypes: ``str`` (NaN when missing) for the model's
#: name and version, ``string`` (NA when missing) for the others.
_NA_TEXT, _NAN_TEXT = pd.StringDtype("pyarrow"), pd.StringDtype("pyarrow", na_value=np.nan)
_TEXT_COLUMNS = {
    CUSTOMER_ID: _NA_TEXT,
    "model": _NAN_TEXT,
    "model_version": _NAN_TEXT,
    "reason": _NA_TEXT,
    "rfm_segment": _NA_TEXT,
    "value_tier": _NA_TEXT,
    "churn_tier": _NA_TEXT,
}
#: Segment scores and the bounds of the purchase count (nullable integers in a table).
_WHOLE_NUMBERS = ("r_score", "f_score", "m_score", *COUNT_BOUNDS)


def score_values(
    model: CLVModel,
    ids: np.ndarray,
    summary: dict[str, np.ndarray],
    unscored: tuple[np.ndarray, np.ndarray],
    horizon_days: float | None,
    gbm_inputs: _GBMInputs | None = None,
    intervals: float | None = None,
) -> ScoreValues:
    """The score columns of customers ``ids`` (sorted, text) with RFM summaries ``summary``
    (:func:`clvlab.rfm`'s columns as arrays, in the order of ``ids``) and of those who cannot
    be scored (``unscored``: their ids and reasons): predictions, model, segments, and the
    intervals at level ``intervals`` (None: none)."""
    gbm_inputs = gbm_inputs or {}
    rows = len(ids)
    columns: dict[str, np.ndarray] = {CUSTOMER_ID: ids}
    for column in SCORE_COLUMNS[1:5]:
        columns[column] = summary[column] if column in summary else np.full(rows, np.nan)
    sources = model.sources_for(horizon_days, gbm_inputs=bool(gbm_inputs)).values()
    needs_index = any(source.kind != BTYD for source in sources)  # GBM, historical: by id
    inputs = (
        pd.DataFrame(summary, index=pd.Index(ids, name=CUSTOMER_ID)) if needs_index else summary
    )
    predictions = model.predict_columns(inputs, horizon_days=horizon_days, **gbm_inputs)
    columns.update(predictions)
    bounds = {}
    if intervals is not None:
        bounds = score_intervals(
            model, summary, predictions, horizon_days, intervals, gbm_inputs=bool(gbm_inputs)
        )
    columns.update(bounds)
    reasons = np.full(rows, None, dtype=object)
    unscored_ids, why = unscored
    if len(unscored_ids):  # merged into the sorted ids
        columns = {
            name: np.concatenate(
                [values, np.full(len(unscored_ids), None if name == CUSTOMER_ID else np.nan)]
            )
            for name, values in columns.items()
        }
        columns[CUSTOMER_ID][rows:] = unscored_ids
        reasons = np.concatenate([reasons, why])
        order = np.argsort(columns[CUSTOMER_ID], kind="stable")
        columns = {name: values[order] for name, values in columns.items()}
        reasons = reasons[order]
        rows = len(reasons)
    columns["model"] = np.full(rows, model.label(horizon_days, gbm_inputs=bool(gbm_inputs)), object)
    columns["model_version"] = np.full(rows, model.version, dtype=object)
    columns["reason"] = reasons
    if model.segments is not None:
        columns.update(
            segment_values(
                columns,
                model.segments,
                unit_days=model.unit_days,
                horizon_days=model.horizon_days if horizon_days is None else horizon_days,
            )
        )
    for name in bounds:  # after the segments, in the order of score_columns
        columns[name] = columns.pop(name)
    return ScoreValues(columns)


def _report_at(
    report: DataReport, canonical: pd.DataFrame, on_time: np.ndarray, customers: int
) -> DataReport:
    """The cleaning ``report`` of the ``canonical`` rows with those after as-of (not
    ``on_time``) excluded too, as step :data:`AFTER_AS_OF`: rows read = rows kept + rows
    excluded still holds, and the rows kept are those scored, of ``customers`` customers."""
    after = len(on_time) - int(on_time.sum())
    steps = {**report.steps, AFTER_AS_OF: after}
    if not after:
        return dataclasses.replace(report, steps=steps)
    dates = canonical.loc[on_time, DATE]
    return dataclasses.replace(
        report,
        steps=steps,
        rows_kept=len(dates),
        customers=customers,
        first_date=str(dates.min()) if len(dates) else "",
        last_date=str(dates.max()) if len(dates) else "",
    )


def unscored_reasons(
    no_history: Sequence[str] | pd.Index | np.ndarray,
    excluded: Sequence[str] | pd.Index | np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The customers who cannot be scored and the reason of each (object arrays): no
    transaction on or before as-of (``no_history``), or every transaction excluded by
    cleaning (``excluded``)."""
    ids = np.array([*no_history, *excluded], dtype=object)
    reasons = np.array([NO_HISTORY] * len(no_history) + [ALL_EXCLUDED] * len(excluded), object)
    return ids, reasons


def read_columns(
    model: CLVModel,
    source_columns: Sequence[str] | pd.Index | None = None,
    names: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The columns to read transactions by (:func:`clvlab.read_transactions`' arguments).

    Those the model was trained on, or the canonical ones when ``source_columns`` (a
    DataFrame's columns) lack the trained customer id column and no customer id column is
    named; then the ``names`` given for scoring (roles of :data:`COLUMN_ROLES`) in their
    place. A named ``amount`` replaces a trained quantity and price; a count-only model
    reads no amount, so naming one is an error.
    """
    names = names or {}
    columns = {role: model.columns.get(role) for role in _READ_ROLES}
    columns["customer_id"] = columns["customer_id"] or CUSTOMER_ID
    columns["date"] = columns["date"] or DATE
    if model.spend is None:
        columns.update(amount=None, quantity=None, price=None)
    elif not columns["quantity"]:
        columns["amount"] = columns["amount"] or AMOUNT
    if (
        source_columns is not None
        and "customer_id" not in names
        and columns["customer_id"] not in source_columns
    ):
        columns.update(
            customer_id=CUSTOMER_ID,
            date=DATE,
            quantity=None,
            price=None,
            amount=AMOUNT if model.spend is not None else None,
        )
    if "amount" in names:
        if model.spend is None:
            raise DataError(
                f"the model is count-only (it has no spend model) and reads no amount: "
                f"leave out the amount column {names['amount']!r} (--amount)"
            )
        columns.update(quantity=None, price=None)
    return {**columns, **names}


def _read(
    transactions: TransactionSource, model: CLVModel, names: dict[str, str] | None = None
) -> tuple[pd.DataFrame, str | None, IdDtype]:
    """Read as in training (or by the ``names`` given, see :func:`read_columns`), or by the
    canonical names when a DataFrame has those instead.

    Returns the transactions, the invoice column (None when the model has none or the
    transactions do not carry it: then the invoice steps of the cleaning policy are skipped)
    and the dtype to give the ids back in (see :func:`clvlab.data.io.read_canonical`).
    """
    in_frame = transactions.columns if isinstance(transactions, pd.DataFrame) else None
    # All columns stay until cleaning: exact duplicates are judged on the whole source row.
    frame, id_dtype = read_canonical(transactions, **read_columns(model, in_frame, names))
    invoice = model.columns.get("invoice")
    return frame, invoice if invoice in frame.columns else None, id_dtype
