"""Per-customer features for gradient-boosted predictors, at one or many as-of dates.

A gradient-boosted model must be trained for the horizon it is scored on and must not see the
future, so features are computed *at an as-of date* from the transactions on or before it (a
date covers its whole day), and labels from the ``horizon_days`` after it. Stacking several
as-of dates (rolling origins) gives the model many examples of "what happened in the next
``horizon_days``", each with the origin's age, so an ageing cohort is not mistaken for a
stationary one.

Purchases are counted per customer-day, as the RFM summary at daily resolution does (lifetimes'
semantics): two purchases on one day are one purchase occasion whose value is their sum.

Features (days unless said otherwise; NaN where undefined, which LightGBM handles):

- ``purchases``, ``frequency`` (repeat purchase days), ``age_days`` (since the first purchase),
  ``recency_days`` (first to last purchase), ``days_since_last``;
- ``purchases_<w>d`` and, with amounts, ``revenue_<w>d`` for each window ``w``;
- ``rate_per_day`` (purchase days per day of age, the first day counted);
- inter-purchase times: ``gap_mean_days``, ``gap_std_days``, ``gap_cv``, ``gap_max_days``,
  ``gap_last_days`` and ``overdue_ratio`` (days since last / mean gap);
- spend (with amounts): ``revenue_total``, ``spend_mean``, ``spend_last``, ``spend_max``,
  ``spend_trend`` (mean of the last three purchases / mean of all);
- calendar: ``as_of_month``, ``history_days`` (the origin's age: days since the data start),
  ``purchases_same_season_last_year`` (purchase days in the year-earlier window of the coming
  horizon; NaN where the history does not reach back that far);
- static covariates from a customer table, joined by ``customer_id``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np
import pandas as pd

from clvlab.data.io import AMOUNT, CUSTOMER_ID, DATE, check_canonical
from clvlab.errors import DataError

#: Default feature windows in days.
DEFAULT_WINDOWS = (30, 90, 180, 365)
#: Label columns of :func:`horizon_labels`.
LABELS = ("purchases", "revenue", "churn")
ORIGIN = "origin"
_DAY = "day"
_VALUE = "value"
_GAP = "gap_days"


@dataclass(frozen=True)
class PurchaseDays:
    """Transactions merged to one row per customer and day, sorted, with the gap in days to
    the customer's previous purchase day: the input of :func:`window_features`.

    Build it once with :meth:`from_transactions` and reuse it for every origin.
    """

    days: pd.DataFrame
    has_amount: bool
    start: pd.Timestamp

    @classmethod
    def from_transactions(cls, transactions: pd.DataFrame) -> PurchaseDays:
        """Merge canonical transactions (``customer_id``, ``date``, [``amount``]) per day."""
        check_canonical(transactions.columns)
        if transactions.empty:
            raise DataError("no transactions to compute features from")
        has_amount = AMOUNT in transactions
        frame = pd.DataFrame(
            {
                CUSTOMER_ID: transactions[CUSTOMER_ID].astype("string"),
                _DAY: transactions[DATE].dt.floor("D"),
                _VALUE: transactions[AMOUNT].astype(float) if has_amount else 1.0,
            }
        )
        # as_index=False gives a frame (the keys as columns); pandas-stubs types it a Series.
        days = cast(
            pd.DataFrame,
            frame.groupby([CUSTOMER_ID, _DAY], as_index=False, sort=True)[_VALUE].sum(),
        )
        previous = days.groupby(CUSTOMER_ID, sort=False)[_DAY].shift()
        days[_GAP] = (days[_DAY] - previous).dt.days.astype(float)
        return cls(days=days, has_amount=has_amount, start=days[_DAY].min())

    def until(self, as_of: pd.Timestamp) -> pd.DataFrame:
        """Purchase days on or before ``as_of``'s day."""
        return self.days[self.days[_DAY] <= as_of.normalize()]


def window_features(
    purchases: PurchaseDays,
    as_of: pd.Timestamp | str,
    *,
    horizon_days: float,
    windows: Sequence[int] = DEFAULT_WINDOWS,
    customers: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Features of every customer with a purchase on or before ``as_of``.

    Parameters
    ----------
    purchases
        :class:`PurchaseDays` of the transactions.
    as_of
        The as-of date; its whole day counts as history.
    horizon_days
        Length of the horizon the features are for (for the same-season feature).
    windows
        Feature windows in days.
    customers
        Optional static covariates indexed by ``customer_id`` (e.g. country); object and
        string columns become categorical.

    Returns
    -------
    pandas.DataFrame
        One row per customer (index ``customer_id``, sorted), the columns of the module
        docstring.
    """
    as_of = pd.Timestamp(as_of).normalize()
    history = purchases.until(as_of)
    if history.empty:
        raise DataError(f"no purchase on or before {as_of.date()} to compute features from")
    by_customer = history.groupby(CUSTOMER_ID, sort=True)
    first, last = by_customer[_DAY].min(), by_customer[_DAY].max()
    count = by_customer.size().astype(float)
    features = pd.DataFrame(index=count.index)
    features["purchases"] = count
    features["frequency"] = count - 1
    features["age_days"] = (as_of - first).dt.days.astype(float)
    features["recency_days"] = (last - first).dt.days.astype(float)
    features["days_since_last"] = (as_of - last).dt.days.astype(float)
    features["rate_per_day"] = count / (features["age_days"] + 1)
    for window in windows:
        recent = history[history[_DAY] > as_of - pd.Timedelta(days=window)]
        grouped = recent.groupby(CUSTOMER_ID)[_VALUE]
        features[f"purchases_{window}d"] = grouped.size().reindex(features.index, fill_value=0)
        if purchases.has_amount:
            features[f"revenue_{window}d"] = grouped.sum().reindex(features.index, fill_value=0)

    gaps = by_customer[_GAP]
    features["gap_mean_days"] = gaps.mean()
    features["gap_std_days"] = gaps.std()
    features["gap_cv"] = features["gap_std_days"] / features["gap_mean_days"]
    features["gap_max_days"] = gaps.max()
    features["gap_last_days"] = gaps.last()
    features["overdue_ratio"] = features["days_since_last"] / features["gap_mean_days"]

    if purchases.has_amount:
        values = by_customer[_VALUE]
        features["revenue_total"] = values.sum()
        features["spend_mean"] = features["revenue_total"] / count
        features["spend_last"] = values.last()
        features["spend_max"] = values.max()
        last_three = history.groupby(CUSTOMER_ID, sort=False).tail(3)
        recent_mean = last_three.groupby(CUSTOMER_ID)[_VALUE].mean()
        features["spend_trend"] = recent_mean / features["spend_mean"].where(
            features["spend_mean"] > 0
        )

    features["as_of_month"] = float(as_of.month)
    features["history_days"] = float((as_of - purchases.start).days)
    features["purchases_same_season_last_year"] = _same_season_last_year(
        history, purchases.start, as_of, horizon_days
    ).reindex(features.index)
    if customers is not None:
        features = features.join(_static_covariates(customers), how="left")
    return features


def horizon_labels(
    purchases: PurchaseDays, as_of: pd.Timestamp | str, horizon_days: float, index: pd.Index
) -> pd.DataFrame:
    """What each customer in ``index`` did in the ``horizon_days`` after ``as_of``'s day.

    Returns
    -------
    pandas.DataFrame
        ``purchases`` (purchase days), ``revenue`` (total value; NaN for count-only data) and
        ``churn`` (1.0 when no purchase), indexed like ``index``.
    """
    start = pd.Timestamp(as_of).normalize()
    end = start + pd.Timedelta(days=float(horizon_days))
    days = purchases.days
    window = days[(days[_DAY] > start) & (days[_DAY] <= end)]
    grouped = window.groupby(CUSTOMER_ID)[_VALUE]
    labels = pd.DataFrame(index=index)
    labels["purchases"] = grouped.size().reindex(index, fill_value=0).astype(float)
    labels["revenue"] = (
        grouped.sum().reindex(index, fill_value=0.0) if purchases.has_amount else np.nan
    )
    labels["churn"] = (labels["purchases"] == 0).astype(float)
    return labels


def rolling_origins(
    last: pd.Timestamp | str,
    earliest: pd.Timestamp | str,
    *,
    step_days: int,
    max_origins: int,
) -> list[pd.Timestamp]:
    """As-of dates ``last, last - step, ...`` not before ``earliest``, at most ``max_origins``,
    in ascending order (empty when ``last`` is before ``earliest``)."""
    if step_days < 1 or max_origins < 1:
        raise DataError("step_days and max_origins must be at least 1")
    last, earliest = pd.Timestamp(last).normalize(), pd.Timestamp(earliest).normalize()
    origins: list[pd.Timestamp] = []
    origin = last
    while origin >= earliest and len(origins) < max_origins:
        origins.append(origin)
        origin -= pd.Timedelta(days=step_days)
    return origins[::-1]


def stacked_examples(
    purchases: PurchaseDays,
    origins: Sequence[pd.Timestamp],
    *,
    horizon_days: float,
    windows: Sequence[int] = DEFAULT_WINDOWS,
    customers: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Features and labels at each origin, stacked (the training set of a GBM).

    Returns
    -------
    (features, labels)
        Row-aligned, with a plain integer index; ``features`` has an ``origin`` column (the
        as-of date of the row; not a model input) besides the feature columns, ``labels`` the
        columns of :func:`horizon_labels`.
    """
    feature_frames, label_frames = [], []
    for origin in origins:
        features = window_features(
            purchases, origin, horizon_days=horizon_days, windows=windows, customers=customers
        )
        label_frames.append(horizon_labels(purchases, origin, horizon_days, features.index))
        feature_frames.append(features.assign(**{ORIGIN: origin}))
    features = pd.concat(feature_frames)
    labels = pd.concat(label_frames)
    features.index = labels.index = features.index.rename(CUSTOMER_ID)
    return features.reset_index(), labels.reset_index(drop=True)


def _same_season_last_year(
    history: pd.DataFrame, start: pd.Timestamp, as_of: pd.Timestamp, horizon_days: float
) -> pd.Series:
    """Purchase days in the year-earlier window of the coming horizon; all NaN when the data do
    not cover that window (absent history is not the same as no purchases)."""
    begin = as_of - pd.Timedelta(days=365)  # the window is the days after it
    customers = history[CUSTOMER_ID].unique()
    if begin + pd.Timedelta(days=1) < start:
        return pd.Series(np.nan, index=pd.Index(customers, name=CUSTOMER_ID), dtype=float)
    end = begin + pd.Timedelta(days=float(horizon_days))
    window = history[(history[_DAY] > begin) & (history[_DAY] <= end)]
    return window.groupby(CUSTOMER_ID).size().astype(float).reindex(customers, fill_value=0.0)


def customer_covariates(transactions: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Static covariates taken from extra columns of the transactions (e.g. ``Country``):
    each customer's value on their latest transaction.

    Raises
    ------
    DataError
        If a column is not in the transactions.
    """
    missing = [column for column in columns if column not in transactions]
    if missing:
        raise DataError(
            f"static covariate column(s) {missing} are not in the transactions; they have "
            f"{sorted(transactions.columns)}"
        )
    latest = transactions.sort_values(DATE, kind="stable").groupby(CUSTOMER_ID).last()
    return latest[list(columns)]


def _static_covariates(customers: pd.DataFrame) -> pd.DataFrame:
    """Static covariates with text columns as categoricals (LightGBM's native categories)."""
    table = customers.copy()
    table.index = table.index.astype("string").rename(CUSTOMER_ID)
    if table.index.has_duplicates:
        duplicated = table.index[table.index.duplicated()].unique()
        raise DataError(
            f"the customer table has {len(duplicated)} duplicated customer_id(s), e.g. "
            f"{list(duplicated[:3])}; give one row per customer"
        )
    for column in table.columns:
        if not pd.api.types.is_numeric_dtype(table[column]):
            table[column] = table[column].astype("string").astype("category")
    return table
