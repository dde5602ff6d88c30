"""Score subscriptions with a :class:`~clvlab.models.contractual.ContractualModel`: what
:func:`clvlab.score` (and ``clvlab score``) do when the model is contractual.

One row per subscription in the input that started on or before ``as_of``, and one for each
that starts later: active ones get their renewal probability, churn within the horizon,
expected renewals, discounted residual lifetime and value; the others keep a row with the
``reason`` (ended, or not started yet). ``.attrs["data_report"]`` counts every row read.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from clvlab.data.io import TransactionSource
from clvlab.data.subscriptions import read_subscriptions, subscriber_periods
from clvlab.errors import DataError
from clvlab.features.rfm import DateLike, as_timestamp
from clvlab.models.contractual.model import CONTRACTUAL_SCORE_COLUMNS, ENDED, ContractualModel

#: The reason of a subscription that starts after ``as_of``.
NOT_STARTED = "starts after as_of"


def read_model_subscriptions(
    model: ContractualModel, subscriptions: TransactionSource
) -> tuple[pd.DataFrame, dict[str, object]]:
    """The subscriptions read and validated by the columns the model was trained with, and
    the data report."""
    columns = model.columns
    table, report = read_subscriptions(
        subscriptions,
        customer_id=columns.get("customer_id") or "customer_id",
        start=columns.get("start") or "start",
        end=columns.get("end") or "end",
        price=columns.get("price"),
        date_format=columns.get("date_format"),
    )
    return table, report.to_dict()


def last_date(table: pd.DataFrame) -> pd.Timestamp:
    """The last day the subscriptions say anything about: the latest start or end."""
    if table.empty:
        raise DataError("no subscriptions to score: every row was excluded (see the report)")
    return pd.Timestamp(max(table["start"].max(), table["end"].max(skipna=True) or pd.NaT))


def score_subscriptions(
    model: ContractualModel,
    subscriptions: TransactionSource,
    *,
    as_of: DateLike | None = None,
) -> pd.DataFrame:
    """Score every subscription as of ``as_of`` (default: the last start or end in the data).

    Returns
    -------
    pandas.DataFrame
        :data:`~clvlab.models.contractual.model.CONTRACTUAL_SCORE_COLUMNS`, one row per
        subscription, sorted by customer and start (see :meth:`ContractualModel.predict` for
        the predictions; ``periods`` are the periods completed, or paid for when ended).
    """
    table, report = read_model_subscriptions(model, subscriptions)
    return score_subscription_table(model, table, report, as_of=as_of)


def score_subscription_table(
    model: ContractualModel,
    table: pd.DataFrame,
    report: dict[str, object],
    *,
    as_of: DateLike | None = None,
) -> pd.DataFrame:
    """:func:`score_subscriptions` of subscriptions read already
    (:func:`clvlab.read_subscriptions`' table and its ``report``, as a dict)."""
    stamp = last_date(table) if as_of is None else as_timestamp(as_of, "as_of")
    started = table["start"] <= stamp
    periods = subscriber_periods(table, stamp, model.period)
    periods.index = table.index[started.to_numpy()]
    predictions = model.predict(periods)
    scores = pd.DataFrame(index=table.index)
    scores["customer_id"] = table["customer_id"]
    scores["cohort"] = table["start"].dt.to_period(model.period).astype("string")
    scores["start"] = table["start"]
    scores["periods"] = periods["periods"].reindex(table.index).astype("Int64")
    scores["price"] = table.get("price", np.nan)
    for column in predictions:
        scores[column] = predictions[column].reindex(table.index)
    scores["model"] = model.label()
    scores["model_version"] = model.version
    ended = periods["churned"].reindex(table.index).fillna(False).to_numpy(dtype=bool)
    reasons = np.full(len(table), None, dtype=object)
    reasons[ended] = ENDED
    reasons[~started.to_numpy()] = NOT_STARTED
    scores["reason"] = pd.array(reasons, dtype="string")
    scores = scores[CONTRACTUAL_SCORE_COLUMNS].reset_index(drop=True)
    scores.attrs["data_report"] = {
        **report,
        # A date when the as-of is one (midnight), else the instant with its time.
        "as_of": str(stamp.date()) if stamp == stamp.normalize() else stamp.isoformat(),
        "scored": int(scores["reason"].isna().sum()),
    }
    return scores
