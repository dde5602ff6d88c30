"""Segments a marketer can act on: RFM scores and segments, value tiers and churn-risk tiers.

Each scored customer gets

- ``r_score``, ``f_score``, ``m_score``: quintile scores 1-5 of recency (days since the last
  purchase, ``T - recency``: 5 is the most recent fifth), ``frequency`` and ``monetary_value``
  (5 is the highest fifth);
- ``rfm_segment``: a name from the classic 5 x 5 grid of the R score against the FM score (the
  mean of F and M, rounded half up; F alone for count-only data, which has no M), ten segments
  (:data:`RFM_SEGMENTS`): champions, loyal customers, potential loyalists, new customers,
  promising, need attention, about to sleep, at risk, can't lose, hibernating. It is the R x F
  map of RFM practice, e.g. the segment names of the R package rfm's ``rfm_segment``
  (Hebbali, https://rfm.rsquaredacademy.com) laid out on the quintile grid as in the widely
  copied ``seg_map`` of R and F scores. It was preferred to PyMC-Marketing's ``rfm_segments``
  (``pymc_marketing/clv/utils.py``: "Premium Customer", "Repeat Customer", "Top Spender", "At
  Risk Customer", "Inactive Customer", "Other" over quartile scores "111"-"444"), which needs
  monetary values for every segment and leaves many scores in "Other": this grid names every
  customer, works unchanged without amounts, and is the segment map drawn at training;
- ``value_tier``: ``low``, ``medium``, ``high`` or ``top`` by quantile cut points of ``clv``
  (of ``expected_purchases`` for a count-only model, which has no CLV);
- ``churn_tier``: ``low``, ``medium`` or ``high`` by thresholds of ``p_churn``.

The cut points are fixed when the model is trained (:func:`fit_segment_rules`, from the final
model's scores of the training customers) and kept with the model (:class:`SegmentRules`), so a
customer's segment moves only when the customer does, never because other customers moved. A
value equal to a cut point goes with the values below it, as in :func:`pandas.qcut`; with many
ties (one-time buyers all have frequency 0 and monetary value 0) a score may stay empty:
on CDNOW every one-time buyer has F = 1 and M = 1 and no customer has F = 2.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from clvlab.errors import ClvlabError

#: The score table's segment columns, after ``reason``, when the model has segment rules.
SEGMENT_COLUMNS = ["r_score", "f_score", "m_score", "rfm_segment", "value_tier", "churn_tier"]
#: RFM segment -> its cells ``"<R score><FM score>"`` of the 5 x 5 grid (every cell once).
RFM_SEGMENTS: dict[str, tuple[str, ...]] = {
    "champions": ("54", "55"),
    "loyal_customers": ("34", "35", "44", "45"),
    "potential_loyalists": ("42", "43", "52", "53"),
    "new_customers": ("51",),
    "promising": ("41",),
    "need_attention": ("33",),
    "about_to_sleep": ("31", "32"),
    "at_risk": ("13", "14", "23", "24"),
    "cant_lose": ("15", "25"),
    "hibernating": ("11", "12", "21", "22"),
}
#: Value tiers from the lowest, and the default quantiles of value that separate them.
VALUE_TIERS = ("low", "medium", "high", "top")
VALUE_QUANTILES = (0.5, 0.8, 0.95)
#: Churn-risk tiers from the lowest, and the default ``p_churn`` thresholds between them.
CHURN_TIERS = ("low", "medium", "high")
CHURN_THRESHOLDS = (0.3, 0.7)
_QUINTILES = (0.2, 0.4, 0.6, 0.8)
_CELLS = {f"{r}{fm}" for r in range(1, 6) for fm in range(1, 6)}


@dataclass(frozen=True)
class SegmentRules:
    """The cut points and names that turn a score table into segments, fixed at training.

    Attributes
    ----------
    recency_days, frequency, monetary_value
        The quintile cut points (20, 40, 60 and 80 %) of the training customers' days since
        their last purchase, ``frequency`` and ``monetary_value`` (None for a count-only
        model). R is 5 up to the first cut of days, 1 beyond the last; F and M are 1 up to the
        first cut, 5 beyond the last.
    value_column, value
        The column tiered by value (``"clv"``, or ``"expected_purchases"`` for a count-only
        model) and its cut points between :attr:`value_tiers`.
    churn
        The ``p_churn`` thresholds between :attr:`churn_tiers`.
    horizon_days
        The horizon the value and churn cut points hold for (the model's): scored at another
        horizon, ``value_tier`` and ``churn_tier`` are missing.
    value_tiers, churn_tiers
        Tier names, from the lowest.
    rfm_segments
        Segment name -> its cells of the R x FM grid (see :data:`RFM_SEGMENTS`).
    """

    recency_days: tuple[float, ...]
    frequency: tuple[float, ...]
    monetary_value: tuple[float, ...] | None
    value_column: str
    value: tuple[float, ...]
    churn: tuple[float, ...]
    horizon_days: float
    value_tiers: tuple[str, ...] = VALUE_TIERS
    churn_tiers: tuple[str, ...] = CHURN_TIERS
    rfm_segments: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: RFM_SEGMENTS)

    def __post_init__(self) -> None:
        cuts = [self.recency_days, self.frequency, self.monetary_value or _QUINTILES]
        cells = [cell for group in self.rfm_segments.values() for cell in group]
        if (
            any(len(points) != len(_QUINTILES) for points in cuts)
            or len(self.value_tiers) != len(self.value) + 1
            or len(self.churn_tiers) != len(self.churn) + 1
            or sorted(cells) != sorted(_CELLS)
        ):
            raise ClvlabError(
                "segment rules need 4 cut points each for R, F and M, one tier name more than "
                "cut points for value and churn, and each cell of the 5 x 5 R x FM grid in one "
                f"segment; got {self.to_dict()}"
            )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable description from which :meth:`from_dict` rebuilds the rules."""
        return {
            "recency_days": list(self.recency_days),
            "frequency": list(self.frequency),
            "monetary_value": None if self.monetary_value is None else list(self.monetary_value),
            "value_column": self.value_column,
            "value": list(self.value),
            "value_tiers": list(self.value_tiers),
            "churn": list(self.churn),
            "churn_tiers": list(self.churn_tiers),
            "horizon_days": self.horizon_days,
            "rfm_segments": {name: list(cells) for name, cells in self.rfm_segments.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SegmentRules:
        """Rebuild rules from :meth:`to_dict`'s output."""
        fields: dict[str, Any] = {
            key: tuple(value) if isinstance(value, list) else value for key, value in data.items()
        }
        fields["rfm_segments"] = {
            name: tuple(cells) for name, cells in data["rfm_segments"].items()
        }
        return cls(**fields)


def fit_segment_rules(
    scores: pd.DataFrame,
    *,
    unit_days: float,
    horizon_days: float,
    value_quantiles: Sequence[float] = VALUE_QUANTILES,
    churn_thresholds: Sequence[float] = CHURN_THRESHOLDS,
) -> SegmentRules:
    """The segment rules of the training customers.

    Parameters
    ----------
    scores
        The final model's score table of the training transactions at the end of the data
        (``frequency``, ``recency``, ``T``, ``monetary_value``, ``expected_purchases``,
        ``clv``): its customers with scores set the cut points. Without monetary values
        (count-only) the rules have no M and tier value by ``expected_purchases``.
    unit_days
        The length of the table's time unit in days (recency and T are in it).
    horizon_days
        The horizon of the table's predictions.
    value_quantiles
        Quantiles of value that separate the value tiers (``low``, ``medium``, ``high``,
        ``top``), increasing.
    churn_thresholds
        ``p_churn`` thresholds that separate the churn-risk tiers (``low``, ``medium``,
        ``high``), increasing.
    """
    scored = scores[scores["frequency"].notna()]
    count_only = scored["monetary_value"].isna().all()
    value_column = "expected_purchases" if count_only else "clv"

    def quantiles(values: pd.Series, levels: Sequence[float]) -> tuple[float, ...]:
        return tuple(float(q) for q in np.quantile(values.to_numpy(dtype=float), levels))

    return SegmentRules(
        recency_days=quantiles((scored["T"] - scored["recency"]) * unit_days, _QUINTILES),
        frequency=quantiles(scored["frequency"], _QUINTILES),
        monetary_value=None if count_only else quantiles(scored["monetary_value"], _QUINTILES),
        value_column=value_column,
        value=quantiles(scored[value_column], value_quantiles),
        churn=tuple(float(threshold) for threshold in churn_thresholds),
        horizon_days=float(horizon_days),
    )


def add_segments(
    table: pd.DataFrame, rules: SegmentRules, *, unit_days: float, horizon_days: float
) -> pd.DataFrame:
    """The score table with :data:`SEGMENT_COLUMNS` added at its end.

    Parameters
    ----------
    table
        A score table (:data:`clvlab.scoring.SCORE_COLUMNS`).
    rules
        The model's segment rules.
    unit_days
        The length of the table's time unit in days.
    horizon_days
        The horizon of the table's predictions: at another than ``rules.horizon_days`` the
        value and churn tiers are missing (their cut points do not hold there).

    Returns
    -------
    pandas.DataFrame
        A copy of ``table``; scores are nullable integers, names strings. A customer without
        scores (a ``reason``) has them all missing, and so has ``m_score`` for a count-only
        model.
    """
    columns = {
        name: table[name].to_numpy(dtype=float, na_value=np.nan)
        for name in ("frequency", "recency", "T", "monetary_value", "p_churn", rules.value_column)
    }
    values = segment_values(columns, rules, unit_days=unit_days, horizon_days=horizon_days)
    return table.assign(
        **{
            name: pd.array(column, dtype="Int64" if column.dtype.kind == "f" else "string")
            for name, column in values.items()
        }
    )


def segment_values(
    columns: Mapping[str, np.ndarray], rules: SegmentRules, *, unit_days: float, horizon_days: float
) -> dict[str, np.ndarray]:
    """:data:`SEGMENT_COLUMNS` of score columns (arrays; see :func:`add_segments`): the
    scores as floats (NaN where missing), the names as objects (None where missing)."""
    days = (columns["T"] - columns["recency"]) * unit_days
    r_score = len(_QUINTILES) + 1 - _bins(days, rules.recency_days)
    f_score = 1 + _bins(columns["frequency"], rules.frequency)
    if rules.monetary_value is None:
        m_score = np.full(len(days), np.nan)
    else:
        m_score = 1 + _bins(columns["monetary_value"], rules.monetary_value)
    fm_score = fm_scores(f_score, m_score)
    cells = {int(cell): name for name, group in rules.rfm_segments.items() for cell in group}
    at_horizon = horizon_days == rules.horizon_days
    missing = np.full(len(days), np.nan)
    value = columns[rules.value_column] if at_horizon else missing
    churn = columns["p_churn"] if at_horizon else missing
    return {
        "r_score": r_score,
        "f_score": f_score,
        "m_score": m_score,
        "rfm_segment": _names(r_score * 10 + fm_score, cells),
        "value_tier": _names(_bins(value, rules.value), dict(enumerate(rules.value_tiers))),
        "churn_tier": _names(_bins(churn, rules.churn), dict(enumerate(rules.churn_tiers))),
    }


def fm_scores(f_score: np.ndarray, m_score: np.ndarray) -> np.ndarray:
    """The FM score of the segment grid: the mean of F and M rounded half up, or F where there
    is no M (count-only); NaN where F is missing."""
    return np.where(np.isnan(m_score), f_score, (f_score + m_score + 1) // 2)


def segment_grid(segmented: pd.DataFrame, value_column: str) -> pd.DataFrame:
    """Each occupied cell of the R x FM grid: its ``segment``, ``customers`` and the mean of
    ``value_column``, indexed by ``r_score`` and ``fm_score`` (from a table with
    :data:`SEGMENT_COLUMNS`, see :func:`add_segments`)."""
    scored = segmented[segmented["r_score"].notna()]
    f_score, m_score = (
        scored[c].to_numpy(dtype=float, na_value=np.nan) for c in ("f_score", "m_score")
    )
    cells = scored.assign(fm_score=fm_scores(f_score, m_score).astype(int))
    return cells.groupby(["r_score", "fm_score"]).agg(
        segment=("rfm_segment", "first"),
        customers=("rfm_segment", "size"),
        mean_value=(value_column, "mean"),
    )


def _bins(values: np.ndarray, cuts: Sequence[float]) -> np.ndarray:
    """How many ``cuts`` are below each value (a value equal to a cut is not above it); NaN
    for missing values."""
    numbers = np.asarray(values, dtype=float)
    below = np.searchsorted(np.asarray(cuts, dtype=float), numbers, side="left")
    return np.where(np.isnan(numbers), np.nan, below)


def _names(codes: np.ndarray, names: Mapping[int, str]) -> np.ndarray:
    """The name of each code (small non-negative integers as floats; None where missing or
    unnamed)."""
    lookup = np.array([names.get(code) for code in range(max(names) + 1)] + [None], object)
    at = np.where(
        np.isnan(codes), len(lookup) - 1, np.minimum(np.nan_to_num(codes), len(lookup) - 1)
    )
    return lookup[at.astype(np.intp)]
