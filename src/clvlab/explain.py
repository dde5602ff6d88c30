"""Why this score: each customer's reasons, in plain words (``clvlab score --explain``).

- A target the GBM predicts gets its three largest feature contributions (LightGBM's
  ``pred_contrib``: SHAP values of the trees, on the scale of the margin, log or logit), each
  said with the customer's value and which way it moves the prediction, e.g.
  ``"no purchase in the last 120 days (raises churn)"``. The trees correct a baseline per
  customer (his past rate, or the BTYD prediction: see :class:`~clvlab.models.gbm.
  GBMPredictor`); the reasons are what moves the prediction away from it.
- A target a BTYD model, the historical formula or an ensemble predicts gets the customer's
  RFM position, which is what those models read: e.g. ``"long gap since the last purchase
  (180 days) for a buyer every 30 days"``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from clvlab.models.clv import GBM, TARGETS, CLVModel

if TYPE_CHECKING:
    from clvlab.features.windows import PurchaseDays
    from clvlab.models.gbm import GBMPredictor

#: The score table's reason column of each target.
REASON_COLUMNS = {target: f"reasons_{target}" for target in TARGETS}
#: Reasons per target from the GBM.
TOP = 3
#: What a larger prediction of each target means, for "raises ..." / "lowers ...".
_TARGET_WORDS = {
    "purchases": "expected purchases",
    "churn": "churn",
    "revenue": "expected revenue",
}


def _days(value: float) -> str:
    return f"{value:,.0f} days"


#: Feature name -> how to say its value. Window features (``purchases_90d``) by pattern below.
_PHRASES: dict[str, Callable[[float], str]] = {
    "purchases": lambda v: f"{v:,.0f} purchases in all",
    "frequency": lambda v: f"{v:,.0f} repeat purchases",
    "age_days": lambda v: f"customer for {_days(v)}",
    "recency_days": lambda v: f"last purchase {_days(v)} after the first",
    "days_since_last": lambda v: f"no purchase in the last {_days(v)}",
    "rate_per_day": lambda v: f"{30 * v:.1f} purchases a month",
    "gap_mean_days": lambda v: f"buys every {_days(v)} on average",
    "gap_std_days": lambda v: f"timing varies by {_days(v)}",
    "gap_cv": lambda v: f"timing {'regular' if v < 0.5 else 'irregular'} (CV {v:.2f})",
    "gap_max_days": lambda v: f"longest gap {_days(v)}",
    "gap_last_days": lambda v: f"last gap between purchases {_days(v)}",
    "overdue_ratio": lambda v: f"{v:.1f}x the usual gap since the last purchase",
    "revenue_total": lambda v: f"spent {v:,.0f} in all",
    "spend_mean": lambda v: f"average purchase {v:,.2f}",
    "spend_last": lambda v: f"last purchase worth {v:,.2f}",
    "spend_max": lambda v: f"largest purchase {v:,.2f}",
    "spend_trend": lambda v: f"spend trend {'up' if v >= 1 else 'down'} ({v:.2f}x the mean)",
    "as_of_month": lambda v: f"the season (month {v:.0f})",
    "history_days": lambda v: f"{_days(v)} of data",
    "purchases_same_season_last_year": lambda v: f"{v:,.0f} purchases this season last year",
    "btyd_expected_purchases": lambda v: f"BTYD expects {v:.2f} purchases",
    "btyd_p_alive": lambda v: f"BTYD P(alive) {v:.2f}",
    "btyd_p_churn": lambda v: f"BTYD P(churn) {v:.2f}",
}
_WINDOW = re.compile(r"(purchases|revenue)_(\d+)d")


def feature_phrase(feature: str, value: object) -> str:
    """How to say that a customer's ``feature`` is ``value`` (a covariate as
    ``"Country = France"``; a gap of a one-time buyer as ``"one purchase only"``)."""
    if isinstance(value, float) and np.isnan(value):
        return "one purchase only" if feature.startswith(("gap_", "overdue")) else f"no {feature}"
    if feature in _PHRASES:
        return _PHRASES[feature](float(value))  # type: ignore[arg-type]
    window = _WINDOW.fullmatch(feature)
    if window:
        kind, days = window.groups()
        amount = float(value)  # type: ignore[arg-type]
        if kind == "purchases":
            return f"{amount:,.0f} purchases in the last {days} days"
        return f"spent {amount:,.0f} in the last {days} days"
    return f"{feature} = {value}"


def gbm_reasons(
    gbm: GBMPredictor,
    purchases: PurchaseDays,
    as_of: pd.Timestamp,
    customers: pd.DataFrame | None = None,
    *,
    targets: tuple[str, ...] = TARGETS,
    top: int = TOP,
) -> pd.DataFrame:
    """The ``top`` largest feature contributions to each target the GBM predicts, per
    customer, joined by ``"; "`` (column per target of :data:`REASON_COLUMNS`; missing when
    no feature moves the prediction)."""
    features, matrix = gbm.feature_matrix(purchases, as_of, customers)
    reasons = pd.DataFrame(index=features.index)
    values, names = matrix.to_numpy(dtype=object), gbm.feature_names_
    for target in targets:
        if target not in gbm.boosters_:
            continue
        # One column per feature, then the bias (the expected margin): left out.
        predicted = gbm.boosters_[target].predict(matrix, pred_contrib=True)
        contributions = np.asarray(predicted, dtype=float)[:, :-1]
        order = np.argsort(-np.abs(contributions), axis=1)[:, :top]
        words = _TARGET_WORDS[target]
        said = [
            "; ".join(
                f"{feature_phrase(names[j], values[i, j])} "
                f"({'raises' if contributions[i, j] > 0 else 'lowers'} {words})"
                for j in order[i]
                if contributions[i, j] != 0
            )
            for i in range(len(matrix))
        ]
        reasons[REASON_COLUMNS[target]] = pd.array([s or None for s in said], dtype="string")
    return reasons


def rfm_reasons(summary: pd.DataFrame, unit_days: float) -> np.ndarray:
    """Each customer's RFM position in words (what BTYD models read): one-time buyers by
    the age of their purchase; repeat buyers by their usual interval and the time since the
    last purchase, flagged when it is over twice the usual interval."""
    x = summary["frequency"].to_numpy(dtype=float)
    recency = summary["recency"].to_numpy(dtype=float) * unit_days
    age = summary["T"].to_numpy(dtype=float) * unit_days
    since = age - recency
    every = np.divide(recency, x, out=np.zeros_like(recency), where=x > 0)
    words = []
    for count, interval, gap, days in zip(x, every, since, age, strict=True):
        if count == 0:
            words.append(f"one purchase only, {days:,.0f} days ago")
        elif gap > 2 * interval:
            words.append(
                f"long gap since the last purchase ({gap:,.0f} days) for a buyer every "
                f"{interval:,.0f} days ({count + 1:,.0f} purchases)"
            )
        else:
            words.append(
                f"buys every {interval:,.0f} days ({count + 1:,.0f} purchases), the last "
                f"{gap:,.0f} days ago"
            )
    return np.array(words, dtype=object)


def reason_columns(
    model: CLVModel,
    summary: pd.DataFrame,
    horizon_days: float | None,
    history: PurchaseDays | None = None,
    as_of: pd.Timestamp | None = None,
    covariates: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """:data:`REASON_COLUMNS` for the customers of ``summary`` (an RFM summary in the model's
    unit, indexed by ``customer_id``): the GBM's contributions for the targets it predicts at
    this horizon with these inputs (see :meth:`CLVModel.sources_for`), the RFM position for
    the others."""
    sources = model.sources_for(horizon_days, gbm_inputs=history is not None)
    position = pd.Series(rfm_reasons(summary, model.unit_days), index=summary.index)
    table = pd.DataFrame(index=summary.index)
    by_gbm = tuple(target for target, source in sources.items() if source.kind == GBM)
    if by_gbm and model.gbm is not None and history is not None and as_of is not None:
        explained = gbm_reasons(model.gbm, history, as_of, covariates, targets=by_gbm)
        table = table.join(explained)
    for target in sources:
        column = REASON_COLUMNS[target]
        if column not in table:
            table[column] = position
    return table[[REASON_COLUMNS[target] for target in sources]]
