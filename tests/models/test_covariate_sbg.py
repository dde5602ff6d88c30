"""sBG with static covariates: exact gradient, the simulated coefficients recovered, the
plain sBG without covariates, and bad covariates refused."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import check_grad

from clvlab import DataError
from clvlab.models.btyd import BTYDConvergenceWarning
from clvlab.models.contractual import CovariateShiftedBetaGeometric, ShiftedBetaGeometric
from clvlab.models.contractual.covariates import negative_log_likelihood

ALPHA, BETA = 0.8, 1.6
GAMMA_ALPHA, GAMMA_BETA = np.array([0.5, -0.3]), np.array([-0.4, 0.2])


@pytest.fixture(scope="module")
def simulated() -> tuple[pd.DataFrame, pd.DataFrame]:
    """20,000 subscribers: a plan (0/1) and a standardised price move both shapes; each is
    observed for 1 to 24 periods (staggered starts), lost when his geometric lifetime ends
    within them."""
    rng = np.random.default_rng(0)
    n = 20_000
    covariates = pd.DataFrame({"plan": rng.integers(0, 2, n).astype(float)})
    covariates["price"] = rng.normal(0.0, 1.0, n)
    z = covariates.to_numpy()
    theta = rng.beta(ALPHA * np.exp(z @ GAMMA_ALPHA), BETA * np.exp(z @ GAMMA_BETA))
    lifetime = rng.geometric(theta)
    observed = rng.integers(1, 25, n)
    churned = lifetime <= observed
    table = pd.DataFrame({"periods": np.where(churned, lifetime, observed), "churned": churned})
    return table, covariates


def test_recovers_the_simulated_coefficients(simulated):
    table, covariates = simulated
    model = CovariateShiftedBetaGeometric().fit(table, covariates)
    truth = {
        "alpha": ALPHA,
        "beta": BETA,
        "alpha:plan": GAMMA_ALPHA[0],
        "alpha:price": GAMMA_ALPHA[1],
        "beta:plan": GAMMA_BETA[0],
        "beta:price": GAMMA_BETA[1],
    }
    assert list(model.params_.index) == list(truth)
    for name, value in truth.items():
        assert abs(model.params_[name] - value) < 3 * model.stderr_[name], name
    # A subscriber's survival at his own shapes.
    alpha, beta = model.shapes(covariates.head(3))
    shapes = {"alpha": float(alpha[0]), "beta": float(beta[0])}
    sbg = ShiftedBetaGeometric.from_dict({"model": "ShiftedBetaGeometric", "params": shapes})
    np.testing.assert_allclose(
        model.survival(4, 2, covariates.head(1)), sbg.survival(4, 2), rtol=1e-12
    )


def test_without_covariates_it_is_the_plain_sbg(simulated):
    table, covariates = simulated
    model = CovariateShiftedBetaGeometric().fit(table, covariates.iloc[:, :0])
    plain = ShiftedBetaGeometric().fit(table)
    np.testing.assert_allclose(model.params_, plain.params_, rtol=1e-9)
    np.testing.assert_allclose(model.stderr_, plain.stderr_, rtol=1e-6)
    assert model.log_likelihood_ == pytest.approx(plain.log_likelihood_, rel=1e-12)


def test_gradient_is_exact(simulated):
    table, covariates = simulated
    t = table["periods"].to_numpy(float)[:500]
    c = table["churned"].to_numpy(float)[:500]
    w = np.ones(500)
    z = covariates.head(500)
    u = np.array([np.log(0.7), np.log(1.9), 0.3, -0.2, -0.1, 0.4])
    error = check_grad(
        lambda v: negative_log_likelihood(v, t, c, w, z)[0],
        lambda v: negative_log_likelihood(v, t, c, w, z)[1],
        u,
    )
    assert error < 1e-4 * np.linalg.norm(negative_log_likelihood(u, t, c, w, z)[1])


def test_bad_covariates_are_refused(simulated):
    table, covariates = simulated
    head, covs = table.head(100), covariates.head(100)
    with pytest.raises(DataError, match=r"\['segment'\] are not numeric.*get_dummies"):
        CovariateShiftedBetaGeometric().fit(head, covs.assign(segment="a"))
    with pytest.raises(DataError, match=r"\['price'\] have missing values"):
        CovariateShiftedBetaGeometric().fit(head, covs.assign(price=np.nan))
    with pytest.raises(DataError, match="one row per customer"):
        CovariateShiftedBetaGeometric().fit(head, covs.head(10))
    with pytest.warns(BTYDConvergenceWarning, match=r"\['flat'\] are constant"):
        model = CovariateShiftedBetaGeometric().fit(head, covs.assign(flat=1.0))
    assert np.isfinite(model.params_).all()
