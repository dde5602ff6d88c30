import importlib.resources

import numpy as np
import pandas as pd
import pytest
from lifetimes import BetaGeoFitter, GammaGammaFitter, ParetoNBDFitter

from clvlab import BetaGeo, GammaGamma
from clvlab.models.btyd import ModifiedBetaGeo, ParetoNBD
from clvlab.models.engines import fit_estimator


@pytest.fixture(scope="module")
def summary() -> pd.DataFrame:
    path = importlib.resources.files("lifetimes") / "datasets" / "cdnow_customers_summary.csv"
    with path.open() as handle:
        return pd.read_csv(handle)[["frequency", "recency", "T"]]


def test_lifetimes_engine_carries_lifetimes_parameters(summary):
    ours = fit_estimator(BetaGeo(), summary, "lifetimes")
    theirs = BetaGeoFitter().fit(summary["frequency"], summary["recency"], summary["T"])
    pd.testing.assert_series_equal(
        ours.params_, theirs.params_[ours.params_.index], check_names=False, rtol=1e-12
    )
    assert ours.n_iter_ == 0
    # Both engines reach the same optimum: the same likelihood, the same standard errors.
    native = fit_estimator(BetaGeo(), summary, "clvlab")
    assert ours.log_likelihood_ == pytest.approx(native.log_likelihood_, abs=1e-6)
    assert ours.log_likelihood_ == pytest.approx(-9582.43, abs=0.01)
    pd.testing.assert_series_equal(ours.stderr_, native.stderr_, rtol=1e-3)
    assert ours.converged_


def test_lifetimes_engine_for_mbgnbd_and_gamma_gamma(summary, cdnow_sample):
    ours = fit_estimator(ModifiedBetaGeo(), summary, "lifetimes")
    assert ours.params_["r"] == pytest.approx(0.525, rel=2e-3)
    from clvlab import rfm

    spend = rfm(cdnow_sample, "1997-09-30", freq="D", freq_multiplier=7)
    gamma = fit_estimator(GammaGamma(), spend, "lifetimes")
    repeat = spend[spend["frequency"] > 0]
    theirs = GammaGammaFitter().fit(repeat["frequency"], repeat["monetary_value"])
    pd.testing.assert_series_equal(
        gamma.params_, theirs.params_[gamma.params_.index], check_names=False, rtol=1e-12
    )


def test_lifetimes_engine_for_pareto_nbd(summary):
    # lifetimes starts Pareto/NBD at a random point of numpy's global generator.
    np.random.seed(0)  # noqa: NPY002
    ours = fit_estimator(ParetoNBD(), summary, "lifetimes")
    np.random.seed(0)  # noqa: NPY002
    theirs = ParetoNBDFitter().fit(summary["frequency"], summary["recency"], summary["T"])
    pd.testing.assert_series_equal(
        ours.params_, theirs.params_[ours.params_.index], check_names=False, rtol=1e-12
    )
    carried = ParetoNBD().fit(summary, at=theirs.params_.to_dict())
    pd.testing.assert_series_equal(
        carried.params_, theirs.params_[carried.params_.index], check_names=False, rtol=1e-12
    )
    native = fit_estimator(ParetoNBD(), summary, "clvlab")
    # lifetimes stops a little short of the optimum; ours is at least as likely.
    assert native.log_likelihood_ >= ours.log_likelihood_ - 1e-6
    assert ours.log_likelihood_ == pytest.approx(-9594.98, abs=0.02)  # FHL (2005)


def test_parameters_given_must_be_complete_and_positive(summary):
    with pytest.raises(Exception, match="positive, finite"):
        BetaGeo().fit(summary, at={"r": 1.0, "alpha": 1.0, "a": 1.0})
    with pytest.raises(Exception, match="positive, finite"):
        BetaGeo().fit(summary, at={"r": -1.0, "alpha": 1.0, "a": 1.0, "b": 1.0})
