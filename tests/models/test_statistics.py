"""Fitting from sufficient statistics: the counted distinct rows of an RFM summary fit the
same BTYD and Gamma-Gamma models as the summary, bit for bit."""

import numpy as np
import pandas as pd
import pytest

from clvlab import rfm
from clvlab.errors import ConfigError, DataError
from clvlab.models import SufficientStatistics
from clvlab.models.clv import fit_clv_model, fit_purchase_model


@pytest.fixture(scope="module")
def summary(cdnow_master) -> pd.DataFrame:
    """The 23,570 CDNOW customers at the end of September 1997, in whole weeks (one repeat
    buyer has a zero mean repeat spend)."""
    return rfm(cdnow_master, "1997-09-30", freq="W")


@pytest.fixture(scope="module")
def statistics(summary: pd.DataFrame) -> SufficientStatistics:
    return SufficientStatistics.from_summary(summary)


def test_statistics_count_the_distinct_rows(
    summary: pd.DataFrame, statistics: SufficientStatistics
) -> None:
    repeat = summary[summary["frequency"] > 0]
    assert statistics.customers == len(summary) == 23_570
    assert statistics.nonpositive_repeat_spend == (repeat["monetary_value"] <= 0).sum() == 1
    assert list(statistics.purchases.columns) == ["frequency", "recency", "T", "count"]
    assert statistics.spend is not None
    assert list(statistics.spend.columns) == ["frequency", "monetary_value", "count"]
    assert statistics.purchases["count"].sum() == len(summary)
    assert statistics.spend["count"].sum() == len(repeat) - 1
    assert not statistics.purchases.duplicated(["frequency", "recency", "T"]).any()
    assert not statistics.spend.duplicated(["frequency", "monetary_value"]).any()
    # Purchase histories shrink tenfold; mean spends are mostly distinct.
    assert len(statistics.purchases) == 2_143
    assert len(statistics.spend) == 5_963
    assert statistics.nbytes < summary.memory_usage(deep=True).sum() / 5


@pytest.mark.parametrize("purchases", ["bgnbd", "mbgnbd", "pareto_nbd"])
def test_fit_on_statistics_equals_fit_on_customers(
    summary: pd.DataFrame, statistics: SufficientStatistics, purchases: str
) -> None:
    ours, excluded = fit_clv_model(statistics, purchases, time_unit="W")
    theirs, expected = fit_clv_model(summary, purchases, time_unit="W")
    assert excluded == expected == {"spend_fit.nonpositive_repeat_spend": 1}
    assert ours.name == theirs.name == f"{purchases}_gamma_gamma"
    assert ours.spend is not None and theirs.spend is not None
    for fitted, reference in [(ours.purchases, theirs.purchases), (ours.spend, theirs.spend)]:
        # Exactly: the distinct rows come in the order the estimators compress them in.
        pd.testing.assert_series_equal(fitted.params_, reference.params_, rtol=0, atol=0)
        pd.testing.assert_series_equal(fitted.stderr_, reference.stderr_, rtol=0, atol=0)
        assert fitted.log_likelihood_ == reference.log_likelihood_


def test_row_order_changes_only_rounding(
    summary: pd.DataFrame, statistics: SufficientStatistics
) -> None:
    """Rows in another order (as an aggregation in Spark may give them) sum the likelihood in
    another order: the same fit up to rounding. How far rounding moves the optimizer's stop
    depends on the CPU's summation (on CDNOW, 3e-10 to 2e-8 relative in the parameters, up to
    4e-8 in the standard errors), so the parameters are held to a millionth of their standard
    error: a difference no data could show."""
    assert statistics.spend is not None
    shuffled = SufficientStatistics(
        statistics.purchases.sample(frac=1.0, random_state=1),
        statistics.spend.sample(frac=1.0, random_state=2),
        statistics.nonpositive_repeat_spend,
        statistics.customers,
    )
    ours, _ = fit_clv_model(shuffled, "pareto_nbd")
    theirs, _ = fit_clv_model(summary, "pareto_nbd")
    assert ours.spend is not None and theirs.spend is not None
    for fitted, reference in [(ours.purchases, theirs.purchases), (ours.spend, theirs.spend)]:
        np.testing.assert_array_less(
            np.abs(fitted.params_ - reference.params_), 1e-6 * reference.stderr_
        )
        np.testing.assert_allclose(fitted.stderr_, reference.stderr_, rtol=1e-6)
        assert fitted.log_likelihood_ == pytest.approx(reference.log_likelihood_, rel=1e-12)


def test_count_only_summary_has_no_spend(cdnow: pd.DataFrame) -> None:
    summary = cdnow[["frequency", "recency", "T"]]
    statistics = SufficientStatistics.from_summary(summary)
    assert statistics.spend is None
    assert statistics.nonpositive_repeat_spend == 0
    assert len(statistics.purchases) == 1_016  # of 2,357 customers
    model, excluded = fit_clv_model(statistics, "bgnbd")
    assert model.spend is None and model.name == "bgnbd" and excluded == {}
    pd.testing.assert_series_equal(
        fit_purchase_model(statistics, "bgnbd").params_,
        fit_purchase_model(summary, "bgnbd").params_,
        rtol=0,
        atol=0,
    )


def test_lifetimes_engine_needs_the_per_customer_summary(cdnow: pd.DataFrame) -> None:
    statistics = SufficientStatistics.from_summary(cdnow)
    with pytest.raises(ConfigError, match="per-customer RFM summary"):
        fit_clv_model(statistics, "bgnbd", engine="lifetimes")


def test_invalid_rows_are_kept_for_the_fit_to_reject(cdnow: pd.DataFrame) -> None:
    summary = cdnow[["frequency", "recency", "T"]].copy()
    summary.loc[0, "recency"] = np.nan
    statistics = SufficientStatistics.from_summary(summary)
    assert statistics.purchases["count"].sum() == len(summary)
    with pytest.raises(DataError):
        fit_purchase_model(statistics, "bgnbd")


def test_missing_columns_are_data_errors(cdnow: pd.DataFrame) -> None:
    with pytest.raises(DataError, match="recency"):
        SufficientStatistics.from_summary(cdnow.drop(columns="recency"))
    with pytest.raises(DataError, match="count"):
        SufficientStatistics(cdnow, None, 0, len(cdnow))
