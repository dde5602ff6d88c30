"""GGompertz/NBD (Bemmaor & Glady 2012; CLVTools ``ggomnbd``): the integral of the likelihood
against adaptive quadrature, the gradient against differences, the CDNOW fit against the
values BTYDplus printed, predictions against simulation at known parameters, and recovery."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.integrate import quad
from scipy.optimize import approx_fprime

import clvlab
import simulators
from clvlab.models.btyd import (
    BTYDConvergenceWarning,
    GGompertzNBD,
    ParetoNBD,
    estimator_from_dict,
)
from clvlab.models.btyd.ggompertz_nbd import _dropout_integral, negative_log_likelihood

#: BTYDplus' former test of ggnbd (tests/testthat/test-gg-nbd.R).
TRUTH = {"r": 0.85, "alpha": 4.45, "b": 0.12, "s": 0.75, "beta": 9.55}
#: What BTYDplus reported on the CDNOW sample (weeks, calibration to 1997-09-30).
BTYDPLUS_CDNOW = {"r": 0.552, "alpha": 10.568, "b": 0.000035, "s": 0.609, "beta": 0.000417}


@pytest.fixture(scope="module")
def cdnow() -> pd.DataFrame:
    transactions = clvlab.read_transactions("lifetimes:CDNOW_sample")
    return clvlab.rfm(transactions, as_of="1997-09-30", freq_multiplier=7)


def _known(params: dict[str, float]) -> GGompertzNBD:
    """The model at ``params`` (fitted state taken there, its warnings ignored)."""
    history = pd.DataFrame({"frequency": [1.0], "recency": [1.0], "T": [2.0]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return GGompertzNBD().fit(history, at=params)


@pytest.mark.parametrize(
    "params", [tuple(TRUTH.values()), tuple(BTYDPLUS_CDNOW.values()), (2.0, 0.3, 1.5, 0.4, 0.2)]
)
def test_the_integral_is_that_of_adaptive_quadrature(params):
    r, alpha, b, s, beta = params
    x = np.array([0.0, 0.0, 1.0, 5.0, 40.0, 200.0, 3.0])
    t_x = np.array([0.0, 0.0, 3.0, 10.0, 20.0, 31.9, 32.0])
    T = np.array([32.0, 0.5, 32.0, 32.0, 32.0, 32.0, 32.0])
    ours, _ = _dropout_integral(params, x, t_x, T)
    for i in range(len(x) - 1):

        def f(y, i=i):  # relative to (alpha + t_x)^-(r + x), so that it does not underflow
            power = ((alpha + y) / (alpha + t_x[i])) ** -(r + x[i])
            return power * np.exp(b * y) * (beta + np.expm1(b * y)) ** -(s + 1)

        exact = quad(f, t_x[i], T[i], epsabs=0, epsrel=1e-13, limit=200)[0]
        log_exact = np.log(exact) - (r + x[i]) * np.log(alpha + t_x[i])
        assert ours[i] == pytest.approx(log_exact, rel=1e-9, abs=1e-9)
    assert ours[-1] == -np.inf  # t_x = T: nothing to integrate


def test_the_gradient_is_that_of_the_likelihood(cdnow):
    x, t_x, T = (cdnow[c].to_numpy(float) for c in ("frequency", "recency", "T"))
    weight = np.ones_like(x)
    at = np.log([0.7, 8.0, 0.05, 0.8, 2.0])
    _, grad = negative_log_likelihood(at, x, t_x, T, weight)
    numeric = approx_fprime(at, lambda u: negative_log_likelihood(u, x, t_x, T, weight)[0], 1e-7)
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-3)


def test_cdnow_reaches_a_better_likelihood_than_btyplus_at_the_pareto_limit(cdnow):
    """BTYDplus printed r=0.552, alpha=10.568, b=0.000035, s=0.609, beta=0.000417. The
    likelihood rises further along b, beta -> 0 with beta / b fixed, the limit in which the
    Gamma-Gompertz lifetime is Pareto/NBD's: the fit ends there (with a warning that beta is
    on its bound), at Pareto/NBD's likelihood, 0.0075 above BTYDplus' point."""
    with pytest.warns(BTYDConvergenceWarning, match=r"\['beta'\] ended on the edge"):
        fitted = GGompertzNBD().fit(cdnow)
    x, t_x, T = (cdnow[c].to_numpy(float) for c in ("frequency", "recency", "T"))
    at_btydplus = -negative_log_likelihood(
        np.log(list(BTYDPLUS_CDNOW.values())), x, t_x, T, np.ones_like(x)
    )[0]
    assert fitted.log_likelihood_ > at_btydplus + 0.005
    pareto = ParetoNBD().fit(cdnow)
    assert fitted.log_likelihood_ == pytest.approx(pareto.log_likelihood_, abs=1e-4)
    for name in ("r", "alpha", "s"):
        assert fitted.params_[name] == pytest.approx(BTYDPLUS_CDNOW[name], rel=0.01), name
        assert fitted.params_[name] == pytest.approx(pareto.params_[name], rel=1e-3), name
    params = fitted.params_
    assert params["beta"] / params["b"] == pytest.approx(pareto.params_["beta"], rel=1e-3)
    history = (39.0, cdnow["frequency"], cdnow["recency"], cdnow["T"])
    np.testing.assert_allclose(
        fitted.expected_purchases(*history), pareto.expected_purchases(*history), atol=1e-5
    )
    np.testing.assert_allclose(fitted.p_churn(*history), pareto.p_churn(*history), atol=1e-4)


def test_predictions_at_known_parameters_match_simulation():
    """40,000 customers simulated at BTYDplus' parameters, 32 weeks observed and 32 ahead:
    P(alive), expected purchases and P(no purchase) add up to what happened (at 200,000
    customers and seed 7: 1.0017, 0.9987 and 0.8527 against 0.8528)."""
    model = _known(TRUTH)
    data = simulators.simulate_ggompertz_nbd(np.random.default_rng(7), 40_000, TRUTH, 32.0, 32.0)
    history = (data["frequency"], data["recency"], data["T"])
    assert model.p_alive(*history).sum() == pytest.approx(data["alive"].sum(), rel=0.02)
    expected = model.expected_purchases(32.0, *history)
    assert expected.sum() == pytest.approx(data["x_star"].sum(), rel=0.03)
    none = model.p_churn(32.0, *history)
    assert none.mean() == pytest.approx((data["x_star"] == 0).mean(), abs=0.006)
    assert model.p_purchases(0, 32.0, *history) == pytest.approx(none)


@pytest.mark.parametrize("t", [5.0, 32.0, 200.0])
def test_the_purchase_distribution_adds_up(t):
    """P(X = n) over n sums to 1 and its mean is the expected purchases, for light and heavy
    buyers, short and long windows."""
    model = _known(TRUTH)
    history = (np.array([0.0, 2, 10, 60]), np.array([0.0, 10, 30, 31]), np.full(4, 32.0))
    probabilities = model.p_purchases(np.arange(600)[:, None], t, *history)
    assert (probabilities >= 0).all()
    np.testing.assert_allclose(probabilities.sum(axis=0), 1.0, atol=1e-12)
    mean = np.arange(600) @ probabilities
    np.testing.assert_allclose(mean, model.expected_purchases(t, *history), rtol=1e-10)
    np.testing.assert_allclose(probabilities[0], model.p_churn(t, *history), rtol=1e-12)


def test_simulated_parameters_are_recovered():
    data = simulators.simulate_ggompertz_nbd(np.random.default_rng(1), 5000, TRUTH, 32.0, 0.0)
    fitted = GGompertzNBD().fit(data)
    simulators.assert_recovers(fitted, TRUTH, z=3.0)
    again = estimator_from_dict(json.loads(json.dumps(fitted.to_dict())))
    assert isinstance(again, GGompertzNBD)
    pd.testing.assert_series_equal(again.params_, fitted.params_)


def test_random_parameters_give_sane_predictions():
    """60 random parameter sets, Gompertz scales b from 1e-5 to 20 per period (lifetimes that
    end abruptly included) and random histories: expected purchases finite and rising with
    the horizon, P(alive) falling as time passes without a purchase, P(churn) a probability
    falling with the horizon, and the purchase distribution summing to 1."""
    rng = np.random.default_rng(0)
    horizons = np.array([1.0, 10.0, 52.0, 260.0])
    for _ in range(60):
        params = {
            "r": rng.lognormal(0, 1),
            "alpha": rng.lognormal(1, 1.5),
            "b": rng.lognormal(-3, 2),
            "s": rng.lognormal(0, 1),
            "beta": rng.lognormal(0, 3),
        }
        model = _known(params)
        x = float(rng.integers(0, 40))
        T = float(rng.uniform(0.1, 150))
        t_x = 0.0 if x == 0 else float(rng.uniform(0, T))
        expected = model.expected_purchases(horizons, x, t_x, T)
        assert np.isfinite(expected).all(), params
        assert (np.diff(expected) >= -1e-9 * expected[1:]).all(), (params, expected)
        alive = model.p_alive(x, t_x, T + np.array([0.0, 5.0, 50.0]))
        assert (np.diff(alive) <= 1e-12).all(), (params, alive)
        churn = model.p_churn(horizons, x, t_x, T)
        assert ((churn >= 0) & (churn <= 1 + 1e-12)).all() and (np.diff(churn) <= 1e-9).all()
        total = model.p_purchases(np.arange(2000), 26.0, x, t_x, T).sum()
        assert total == pytest.approx(1.0, abs=1e-6), params
