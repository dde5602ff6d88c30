"""One ``POST /invocations`` request of ``clvlab serve``: JSON body in, JSON answer out.

The body is what ``mlflow models serve`` accepts: ``{"dataframe_split": {"columns": [...],
"data": [[...], ...]}}`` or ``{"dataframe_records": [{...}, ...]}``, plus optional ``"params":
{"as_of": "YYYY-MM-DD", "horizon_days": 365, "explain": true, "intervals": 0.9}``
(``explain``: each target's reasons in plain words, as ``clvlab score --explain``;
``intervals``: the score intervals at that level, as ``clvlab score --intervals``, by default
the model's). The answer is the score table of
:func:`clvlab.score` as records, with the ``as_of`` and ``horizon_days`` that were used::

    {"as_of": "2026-12-07", "as_of_source": "request date (default; pass params.as_of)",
     "horizon_days": 365.0, "predictions": [{"customer_id": "7", "p_alive": 0.93, ...}]}

Ids are answered as they were sent: JSON integers as numbers (every digit, even with some
rows' ids missing), strings as strings (other ids, such as 7.5, as text). Missing numbers are
``null`` (strict JSON, never ``NaN``). A request clvlab cannot answer is
an HTTP 400 ``{"error_code": ..., "message": ...}`` with clvlab's message.

A contractual model (``setting: contractual``) takes subscriptions instead, by its columns,
and ``as_of`` as its only param; its answer has ``horizon_periods`` in place of
``horizon_days``.

Nothing here knows about HTTP servers or processes: :func:`answer` is a plain function of the
model and the request's bytes, run in the server's worker processes
(:mod:`clvlab.serving.workers`).
"""

from __future__ import annotations

import json
import math
import sys
import traceback
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd

from clvlab.errors import ClvlabError
from clvlab.explain import REASON_COLUMNS
from clvlab.models.clv import CLVModel
from clvlab.models.contractual.model import ContractualModel
from clvlab.models.saved import ScoringModel
from clvlab.scoring import check_arguments, interval_level, prepare, read_columns, score_at
from clvlab.scoring_contractual import score_subscriptions

#: The params a request may carry.
KNOWN_PARAMS = ("as_of", "horizon_days", "explain", "intervals")
#: What ``as_of`` is when a request does not give it (``clvlab serve --as-of-default``).
AsOfDefault = Literal["today", "last-transaction"]
AS_OF_DEFAULTS: tuple[AsOfDefault, ...] = ("today", "last-transaction")
#: ``error_code`` of a body that is not a request at all, and of a request clvlab rejects.
BAD_REQUEST, INVALID_PARAMETER_VALUE = "BAD_REQUEST", "INVALID_PARAMETER_VALUE"
_FORMS = ("dataframe_split", "dataframe_records")
_TEXT_COLUMNS = frozenset(
    {"customer_id", "model", "model_version", "reason", "rfm_segment", "value_tier", "churn_tier"}
    | {"cohort", "start"}  # of a contractual model's scores
    | set(REASON_COLUMNS.values())
)


class RequestError(ClvlabError):
    """A request the server answers with HTTP 400: ``error_code`` says which kind."""

    def __init__(self, message: str, error_code: str = BAD_REQUEST) -> None:
        super().__init__(message)
        self.error_code = error_code


@dataclass(frozen=True)
class Answer:
    """An HTTP status and its JSON body."""

    status: int
    body: bytes


def answer(model: ScoringModel, body: bytes, as_of_default: AsOfDefault = "today") -> Answer:
    """Score the transactions of one request body.

    Parameters
    ----------
    model
        The served model.
    body
        The request's JSON (see the module docstring).
    as_of_default
        ``as_of`` when the request has none: ``"today"`` (the request date) or
        ``"last-transaction"`` (the last transaction date in the request, after cleaning).

    Returns
    -------
    Answer
        200 and the scores; 400 and ``{"error_code", "message"}`` for a body that is not a
        valid request or transactions clvlab rejects; 500 for an unexpected error (its
        traceback goes to standard error).
    """
    try:
        if isinstance(model, ContractualModel):
            return _answer_subscriptions(model, body, as_of_default)
        return _answer_transactions(model, body, as_of_default)
    except RequestError as err:
        return _error(400, err.error_code, str(err))
    except ClvlabError as err:
        return _error(400, INVALID_PARAMETER_VALUE, str(err))
    except Exception as err:  # a bug: answer it, keep serving, leave the traceback in the log
        traceback.print_exc(file=sys.stderr)
        message = f"unexpected error while scoring ({type(err).__name__}: {err})"
        return _error(500, "INTERNAL_ERROR", " ".join(message.split()))


def _answer_transactions(model: CLVModel, body: bytes, as_of_default: AsOfDefault) -> Answer:
    """:func:`answer` for a (non-contractual) CLV model; raises what :func:`answer` turns
    into a 400 or a 500."""
    payload = _json_object(body)
    frame = _frame(payload)
    as_of, source, horizon_days = _params(payload.get("params"), as_of_default)
    explain = _explain(payload.get("params"))
    level = interval_level(model, _intervals(payload.get("params")))
    _check_columns(model, frame)
    frame = _ids_as_sent(model, frame, payload)
    with warnings.catch_warnings():
        # Rows without a customer id are skipped per request; not the server log's news.
        warnings.simplefilter("ignore")
        # as_of None: the last transaction date, which the answer then states.
        table, as_of = score_at(
            model,
            prepare(model, frame),
            as_of,
            horizon_days,
            explain=explain,
            intervals=level,
        )
    used = horizon_days if horizon_days is not None else float(model.horizon_days)
    head = json.dumps({"as_of": _iso(as_of), "as_of_source": source, "horizon_days": used})
    return Answer(200, f'{head[:-1]}, "predictions": {records_json(table)}}}'.encode())


def _answer_subscriptions(
    model: ContractualModel, body: bytes, as_of_default: AsOfDefault
) -> Answer:
    """:func:`answer` for a contractual model: the request's table is subscriptions (the
    model's columns), the only param ``as_of``; the answer is
    :func:`clvlab.scoring_contractual.score_subscriptions`' table with the ``as_of`` and
    ``horizon_periods`` used."""
    payload = _json_object(body)
    frame = _frame(payload)
    params = payload.get("params") or {}
    unknown = sorted(set(params) - {"as_of"}) if isinstance(params, dict) else []
    if unknown:
        raise RequestError(
            f"unknown params {unknown}: a contractual model takes as_of only (YYYY-MM-DD; "
            f"default: {_default_text(as_of_default)})",
            INVALID_PARAMETER_VALUE,
        )
    as_of, source, _ = _params(params, as_of_default)
    table = score_subscriptions(model, frame, as_of=as_of)
    used = pd.Timestamp(table.attrs["data_report"]["as_of"])
    if source.startswith("last transaction"):
        source = "last start or end in the request (default of this server; pass params.as_of)"
    head = json.dumps(
        {"as_of": _iso(used), "as_of_source": source, "horizon_periods": model.horizon_periods}
    )
    table = table.assign(start=[_iso(pd.Timestamp(stamp)) for stamp in table["start"]])
    return Answer(200, f'{head[:-1]}, "predictions": {records_json(table)}}}'.encode())


def records_json(table: pd.DataFrame) -> str:
    """The score table as a JSON array of records, columns in the table's order
    (:data:`clvlab.scoring.SCORE_COLUMNS`, then any segment and reason columns); missing
    values (NaN, NA, infinities) as ``null``, floats with every digit, integers (ids, segment
    scores) as numbers."""
    columns: list[list[Any]] = []
    for name in table.columns:
        values = table[name].tolist()
        if name == "customer_id" and pd.api.types.is_integer_dtype(table[name]):
            columns.append([None if pd.isna(v) else int(v) for v in values])
        elif name in _TEXT_COLUMNS:
            columns.append([None if pd.isna(v) else str(v) for v in values])
        else:
            columns.append([v if _finite(v) else None for v in values])
    names = list(table.columns)
    records = [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]
    return json.dumps(records, allow_nan=False)


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RequestError(f"the request body is not JSON: {err}") from None
    if not isinstance(payload, dict):
        raise RequestError(f"the request body must be a JSON object with {_forms_hint()}")
    return payload


def _forms_hint() -> str:
    return (
        'one of "dataframe_split" ({"columns": [...], "data": [[...], ...]}) or '
        '"dataframe_records" ([{...}, ...]), and optionally "params" '
        '({"as_of": "YYYY-MM-DD", "horizon_days": 365})'
    )


def _frame(payload: dict[str, Any]) -> pd.DataFrame:
    """The transactions of a request as a DataFrame (values as sent; clvlab reads them)."""
    unknown = sorted(set(payload) - {*_FORMS, "params"})
    forms = [form for form in _FORMS if form in payload]
    if unknown or len(forms) != 1:
        what = f"unknown fields {unknown}" if unknown else f"{len(forms)} table fields"
        raise RequestError(f"the request has {what}: it must have {_forms_hint()}")
    form = forms[0]
    table = payload[form]
    try:
        if form == "dataframe_split":
            if not isinstance(table, dict) or not isinstance(table.get("columns"), list):
                raise RequestError(
                    'dataframe_split must be {"columns": [...], "data": [[...], ...]}'
                )
            data = table.get("data", [])
            if not isinstance(data, list) or not all(isinstance(row, list) for row in data):
                raise RequestError("dataframe_split.data must be a list of rows (lists)")
            return pd.DataFrame(data, columns=table["columns"])
        if not isinstance(table, list) or not all(isinstance(row, dict) for row in table):
            raise RequestError("dataframe_records must be a list of objects, one per row")
        return pd.DataFrame.from_records(table)
    except (ValueError, TypeError, AssertionError) as err:  # pandas' words for a ragged table
        raise RequestError(f"{form} cannot be read as a table: {err}") from None


def _params(
    params: Any, as_of_default: AsOfDefault
) -> tuple[pd.Timestamp | None, str, float | None]:
    """``as_of`` (None: the last transaction date), where it came from, and ``horizon_days``
    (None: the model's), checked by :func:`clvlab.scoring.check_arguments`."""
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise RequestError(
            f'"params" must be an object such as {{"as_of": "YYYY-MM-DD", "horizon_days": 365}}, '
            f"got {json.dumps(params)[:80]}",
            INVALID_PARAMETER_VALUE,
        )
    unknown = sorted(set(params) - set(KNOWN_PARAMS))
    if unknown:
        raise RequestError(
            f"unknown params {unknown}: the known params are as_of (YYYY-MM-DD; default: "
            f"{_default_text(as_of_default)}), horizon_days (a positive number of days; "
            "default: the model's), explain (true: each target's reasons; default false) and "
            "intervals (a level such as 0.9; default: the model's)",
            INVALID_PARAMETER_VALUE,
        )
    horizon_days = params.get("horizon_days")
    as_of = params.get("as_of")
    if isinstance(as_of, str) and not as_of.strip():
        as_of = None
    checked_as_of, checked_horizon = check_arguments(as_of, horizon_days)
    if checked_as_of is not None:
        return checked_as_of, "params.as_of", checked_horizon
    if as_of_default == "today":
        today = pd.Timestamp.now().normalize()
        return today, "request date (default; pass params.as_of)", checked_horizon
    source = (
        "last transaction date in the request (default of this server: --as-of-default "
        "last-transaction; pass params.as_of)"
    )
    return None, source, checked_horizon


def _explain(params: Any) -> bool:
    """The ``explain`` param (checked by :func:`_params` to be in an object): a JSON
    boolean, false when absent."""
    value = params.get("explain", False) if isinstance(params, dict) else False
    if not isinstance(value, bool):
        raise RequestError(
            f'"explain" must be true or false, got {json.dumps(value)[:80]}',
            INVALID_PARAMETER_VALUE,
        )
    return value


def _intervals(params: Any) -> float | None:
    """The ``intervals`` param (checked by :func:`_params` to be in an object): a level
    strictly between 0 and 1, or None (absent or null: the model's default)."""
    value = params.get("intervals") if isinstance(params, dict) else None
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RequestError(
            f'"intervals" must be a level such as 0.9, got {json.dumps(value)[:80]}',
            INVALID_PARAMETER_VALUE,
        )
    return float(value)  # its range is checked with the model's default (interval_level)


def _default_text(as_of_default: AsOfDefault) -> str:
    return "the request date" if as_of_default == "today" else "the last transaction date"


def _check_columns(model: CLVModel, frame: pd.DataFrame) -> None:
    """Raise naming the columns the model needs that the request lacks."""
    columns = read_columns(model, list(frame.columns))
    roles = ("customer_id", "date", "amount", "quantity", "price")
    needed = [columns[role] for role in roles if columns.get(role)] + list(model.covariates)
    missing = [column for column in needed if column not in frame.columns]
    if missing:
        raise RequestError(
            f"missing inputs {missing}: the request has columns {list(frame.columns)}, the "
            f"model needs {needed}",
            INVALID_PARAMETER_VALUE,
        )


def _ids_as_sent(model: CLVModel, frame: pd.DataFrame, payload: dict[str, Any]) -> pd.DataFrame:
    """The request's table with JSON integer ids as integers. pandas reads a column of
    integers with some missing (``null``) as floats, which loses digits above 2**53 and
    would be answered as text; such ids are read as nullable Int64 instead."""
    name = read_columns(model, list(frame.columns))["customer_id"]
    if not pd.api.types.is_float_dtype(frame[name]):
        return frame
    if "dataframe_split" in payload:  # a short row is read as missing values at its end
        table = payload["dataframe_split"]
        position = table["columns"].index(name)
        sent = [row[position] if position < len(row) else None for row in table.get("data", [])]
    else:
        sent = [row.get(name) for row in payload["dataframe_records"]]
    if not all(v is None or (type(v) is int and -(2**63) <= v < 2**63) for v in sent):
        return frame
    return frame.assign(**{name: pd.array(sent, dtype="Int64")})


def _iso(stamp: pd.Timestamp) -> str:
    return stamp.date().isoformat() if stamp == stamp.normalize() else stamp.isoformat()


def _error(status: int, code: str, message: str) -> Answer:
    return Answer(status, json.dumps({"error_code": code, "message": message}).encode())
