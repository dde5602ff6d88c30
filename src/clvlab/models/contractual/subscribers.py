"""sBG per cohort, and each active subscriber's renewal, residual lifetime and value.

The input is :func:`clvlab.subscriber_periods`' table (``customer_id``, ``cohort``,
``periods``, ``churned`` and, for values, ``price`` per period). Cohorts that start at
different times can churn differently (Fader & Hardie 2007 fit each of their two segments
apart), so :func:`fit_cohorts` fits one :class:`ShiftedBetaGeometric` per cohort, or one for
all; :func:`score_subscribers` then scores the subscribers still active with their cohort's
model.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from clvlab.errors import DataError
from clvlab.models.contractual.shifted_beta_geo import ShiftedBetaGeometric

#: The key of the one model of :func:`fit_cohorts` with ``by=None``.
ALL = "all"


def fit_cohorts(
    periods: pd.DataFrame, *, by: str | None = "cohort", penalizer_coef: float = 0.0
) -> dict[str, ShiftedBetaGeometric]:
    """One fitted sBG per value of column ``by`` (the cohort), or one for every subscriber
    (``by=None``, under the key :data:`ALL`).

    Parameters
    ----------
    periods
        :func:`clvlab.subscriber_periods`' table: ``periods`` and ``churned`` per
        subscription, and the column ``by``.
    by
        The column that names each subscription's cohort; None pools them.
    penalizer_coef
        As for :class:`ShiftedBetaGeometric`.
    """
    if by is None:
        return {ALL: ShiftedBetaGeometric(penalizer_coef=penalizer_coef).fit(periods)}
    if by not in periods:
        raise DataError(
            f"no column {by!r} to fit by: the table has {list(periods.columns)}; give by= one "
            "of them, or by=None for one model of every subscriber"
        )
    return {
        str(cohort): ShiftedBetaGeometric(penalizer_coef=penalizer_coef).fit(group)
        for cohort, group in periods.groupby(by, sort=True)
    }


def score_subscribers(
    models: ShiftedBetaGeometric | Mapping[str, ShiftedBetaGeometric],
    periods: pd.DataFrame,
    *,
    discount_rate: float,
    by: str | None = "cohort",
) -> pd.DataFrame:
    """Each active subscriber's renewal probability, residual lifetime and value.

    Parameters
    ----------
    models
        One fitted :class:`ShiftedBetaGeometric`, or :func:`fit_cohorts`' models by cohort.
    periods
        :func:`clvlab.subscriber_periods`' table; the churned rows are left out.
    discount_rate
        Per period (about 0.008 for months at 10 % a year).
    by
        The cohort column that picks each subscriber's model when ``models`` is a mapping.

    Returns
    -------
    pandas.DataFrame
        The active rows with ``p_renew`` (renewing at the end of the current period:
        :math:`(\\beta + n) / (\\alpha + \\beta + n)` after :math:`n` periods), ``derl`` (the
        discounted expected renewals to come, FH10's DERL) and, with a ``price`` column,
        ``clv``: ``price * derl``, the expected discounted value of the renewals.
    """
    active = periods[~periods["churned"].astype(bool)].copy()
    if isinstance(models, ShiftedBetaGeometric):
        groups = {ALL: (models, np.ones(len(active), dtype=bool))}
    else:
        if by is None or by not in active:
            raise DataError(f"scoring by cohort needs the column {by!r} in the table")
        cohorts = active[by].astype(str).to_numpy()
        unknown = sorted(set(cohorts) - set(models))
        if unknown:
            raise DataError(
                f"no model for cohort(s) {unknown[:5]}: fit them (fit_cohorts) or score with "
                "one pooled model"
            )
        groups = {name: (model, cohorts == name) for name, model in models.items()}
    p_renew = np.full(len(active), np.nan)
    derl = np.full(len(active), np.nan)
    n = active["periods"].to_numpy(dtype=float)
    for model, rows in groups.values():
        if rows.any():
            p_renew[rows] = model.survival(1, n[rows])
            derl[rows] = model.expected_residual_lifetime(discount_rate, n[rows])
    active["p_renew"], active["derl"] = p_renew, derl
    if "price" in active:
        active["clv"] = active["price"].to_numpy(dtype=float) * derl
    return active.reset_index(drop=True)
