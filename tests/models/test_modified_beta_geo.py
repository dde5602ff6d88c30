"""MBG/NBD: clvlab's ModifiedBetaGeo against lifetimes and BG/NBD identities.

What every purchase model must do alike (simulation, recovery, serialization, invalid
input) is checked in test_purchase_models.py.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from lifetimes import BetaGeoFitter, ModifiedBetaGeoFitter
from scipy.optimize import check_grad

from clvlab.models import BetaGeo
from clvlab.models.btyd.beta_geo import negative_log_likelihood as bgnbd_negative_log_likelihood
from clvlab.models.btyd.modified_beta_geo import ModifiedBetaGeo, negative_log_likelihood

#: MBG/NBD on the CDNOW sample (39 weeks), as fitted by lifetimes (its documentation).
PUBLISHED = {"r": 0.525, "alpha": 6.183, "a": 0.891, "b": 1.614}
NAMES = ["r", "alpha", "a", "b"]


def _with_params(params: dict[str, float]) -> ModifiedBetaGeo:
    return ModifiedBetaGeo.from_dict({"model": "ModifiedBetaGeo", "params": params})


def _lifetimes_with_params(params: dict[str, float], cls: type = ModifiedBetaGeoFitter):
    fitter = cls()
    fitter.params_ = pd.Series(params)[NAMES]
    return fitter


@pytest.fixture(scope="module")
def fitted(cdnow: pd.DataFrame) -> ModifiedBetaGeo:
    return ModifiedBetaGeo().fit(cdnow)


@pytest.fixture(scope="module")
def lifetimes_fitted(cdnow: pd.DataFrame) -> ModifiedBetaGeoFitter:
    return ModifiedBetaGeoFitter().fit(cdnow["frequency"], cdnow["recency"], cdnow["T"])


def _args(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return tuple(frame[c].to_numpy() for c in ("frequency", "recency", "T"))


def _lifetimes_ll(params: np.ndarray, frame: pd.DataFrame) -> float:
    """lifetimes' static MBG/NBD log-likelihood in the data's own time unit (no penalty)."""
    n = len(frame)
    return -n * ModifiedBetaGeoFitter._negative_log_likelihood(
        np.log(params), *_args(frame), np.ones(n), 0.0
    )


# --- fit on CDNOW --------------------------------------------------------------------------


def test_cdnow_fit_matches_published_values(fitted: ModifiedBetaGeo) -> None:
    assert fitted.converged_ and fitted.n_iter_ > 0
    assert list(fitted.params_.index) == NAMES
    for name, value in PUBLISHED.items():
        assert fitted.params_[name] == pytest.approx(value, rel=2e-3), name
    assert np.isfinite(fitted.stderr_).all() and (fitted.stderr_ > 0).all()


def test_cdnow_fit_matches_lifetimes(
    fitted: ModifiedBetaGeo, lifetimes_fitted: ModifiedBetaGeoFitter, cdnow: pd.DataFrame
) -> None:
    theirs = lifetimes_fitted.params_[NAMES].to_numpy()
    ours = fitted.params_.to_numpy()
    their_ll = _lifetimes_ll(theirs, cdnow)
    # Our log-likelihood is lifetimes' function at our parameters...
    assert fitted.log_likelihood_ == pytest.approx(_lifetimes_ll(ours, cdnow), rel=1e-12)
    # ... and at least as high as at theirs; the parameters agree to 1e-4 as well.
    assert fitted.log_likelihood_ >= their_ll - 1e-6
    np.testing.assert_allclose(ours, theirs, rtol=1e-4)
    assert fitted.log_likelihood_ == pytest.approx(-9582.1327, abs=1e-3)
    np.testing.assert_allclose(
        fitted.stderr_.to_numpy(), lifetimes_fitted.standard_errors_[NAMES].to_numpy(), rtol=1e-3
    )


def test_log_likelihood_equals_lifetimes_at_arbitrary_points(cdnow: pd.DataFrame) -> None:
    args = _args(cdnow)
    n = len(cdnow)
    for log_params in ([0.0, 0.0, 0.0, 0.0], [-1.5, 1.2, -0.3, 0.9], [1.0, 3.0, 2.0, -2.0]):
        ours, _ = negative_log_likelihood(np.array(log_params), *args)
        theirs = n * ModifiedBetaGeoFitter._negative_log_likelihood(
            np.array(log_params), *args, np.ones(n), 0.0
        )
        assert ours == pytest.approx(theirs, rel=1e-10)


@pytest.mark.parametrize("penalizer", [0.01, 0.1])
def test_penalized_fit_matches_lifetimes(cdnow: pd.DataFrame, penalizer: float) -> None:
    ours = ModifiedBetaGeo(penalizer_coef=penalizer).fit(cdnow)
    theirs = ModifiedBetaGeoFitter(penalizer_coef=penalizer).fit(*_args(cdnow))
    np.testing.assert_allclose(ours.params_.to_numpy(), theirs.params_[NAMES].to_numpy(), rtol=1e-4)
    assert ours.log_likelihood_ < -9582.1327


def test_differs_from_bgnbd(cdnow: pd.DataFrame, fitted: ModifiedBetaGeo) -> None:
    # Same data, other model: another likelihood (one more dropout chance per customer).
    lp = np.log(fitted.params_.to_numpy())
    mbg, _ = negative_log_likelihood(lp, *_args(cdnow))
    bg, _ = bgnbd_negative_log_likelihood(lp, *_args(cdnow))
    assert mbg == pytest.approx(-fitted.log_likelihood_) and abs(mbg - bg) > 100


# --- gradient --------------------------------------------------------------------------------


def test_analytic_gradient_matches_finite_differences(cdnow: pd.DataFrame) -> None:
    x = np.concatenate([cdnow["frequency"].to_numpy(), [0, 1, 1000, 1000, 1000]])
    t_x = np.concatenate([cdnow["recency"].to_numpy(), [0.0, 38.0, 0.0, 20.0, 39.0]])
    T = np.concatenate([cdnow["T"].to_numpy(), [39.0, 39.0, 39.0, 39.0, 39.0]])
    w = np.linspace(0.5, 2.0, len(x))
    rng = np.random.default_rng(5)
    for log_params in [np.log(list(PUBLISHED.values())), *rng.normal(0.0, 1.5, (5, 4))]:

        def value(lp: np.ndarray) -> float:
            return negative_log_likelihood(lp, x, t_x, T, w)[0]

        def grad(lp: np.ndarray) -> np.ndarray:
            return negative_log_likelihood(lp, x, t_x, T, w)[1]

        scale = np.linalg.norm(grad(log_params)) + 1.0
        assert check_grad(value, grad, log_params, epsilon=1e-7) / scale < 1e-4
        h = 1e-5
        central = np.array(
            [(value(log_params + h * e) - value(log_params - h * e)) / (2 * h) for e in np.eye(4)]
        )
        np.testing.assert_allclose(grad(log_params), central, rtol=1e-6, atol=1e-6 * scale)


# --- predictions vs lifetimes ----------------------------------------------------------------


@pytest.mark.parametrize("params", [PUBLISHED, {"r": 2.0, "alpha": 1.0, "a": 3.0, "b": 10.0}])
def test_new_customer_predictions_equal_lifetimes(params: dict[str, float]) -> None:
    model = _with_params(params)
    theirs = _lifetimes_with_params(params)
    t = np.array([0.5, 1.0, 10.0, 39.0, 78.0, 500.0])
    np.testing.assert_allclose(
        model.expected_purchases_new_customer(t),
        theirs.expected_number_of_purchases_up_to_time(t),
        rtol=1e-8,
    )
    for tt in t:
        n = np.arange(40)
        want = [theirs.probability_of_n_purchases_up_to_time(tt, int(k)) for k in n]
        # (lifetimes' 1 - sum(...) has absolute errors of ~1e-16 where the result is tiny.)
        got = model.p_purchases_new_customer(n, tt)
        np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-15)
    # MBG/NBD's own new-customer formulas, and "new customer" = "x = t_x = T = 0".
    r, alpha, a, b = (params[k] for k in NAMES)
    np.testing.assert_allclose(
        model.p_no_purchase_new_customer(t), a / (a + b) + b / (a + b) * (alpha / (alpha + t)) ** r
    )
    np.testing.assert_array_equal(model.p_no_purchase_new_customer(t), model.p_churn(t, 0, 0, 0))
    np.testing.assert_array_equal(
        model.expected_purchases_new_customer(t), model.expected_purchases(t, 0, 0, 0)
    )
    assert float(model.p_alive(0, 0, 0)) == pytest.approx(b / (a + b), rel=1e-14)
    assert float(model.expected_purchases_new_customer(0.0)) == 0.0


def test_p_alive_below_one_without_repeat_purchases(fitted: ModifiedBetaGeo) -> None:
    r, alpha, a, b = (fitted.params_[k] for k in NAMES)
    T = np.array([0.0, 1.0, 38.86, 1000.0])
    want = 1.0 / (1.0 + a / b * ((alpha + T) / alpha) ** r)
    np.testing.assert_allclose(fitted.p_alive(0, 0.0, T), want, rtol=1e-12)
    assert (fitted.p_alive(0, 0.0, T) < 1).all()
    # BG/NBD at the same parameters says "alive" for sure.
    bg = BetaGeo.from_dict({"model": "BetaGeo", "params": fitted.params_.to_dict()})
    np.testing.assert_array_equal(bg.p_alive(0, 0.0, T), 1.0)


def test_p_churn_formula(fitted: ModifiedBetaGeo) -> None:
    r, alpha = fitted.params_["r"], fitted.params_["alpha"]
    for x, t_x, T, t in ((3.0, 20.0, 38.86, 26.0), (0.0, 0.0, 38.86, 39.0), (1.0, 1.0, 5.0, 0.5)):
        alive = fitted.p_alive(x, t_x, T)
        quiet = ((alpha + T) / (alpha + T + t)) ** (r + x)
        assert float(fitted.p_churn(t, x, t_x, T)) == pytest.approx(
            float(1 - alive + alive * quiet), rel=1e-12
        )
        assert float(fitted.p_churn(0.0, x, t_x, T)) == 1.0
        assert float(fitted.p_churn(1e12, x, t_x, T)) == pytest.approx(float(1 - alive), abs=1e-5)


# --- P(X(T, T+t) = n | x, t_x, T) -----------------------------------------------------------


def test_p_purchases_equals_bgnbd_eq8_at_posterior(
    cdnow: pd.DataFrame, lifetimes_fitted: ModifiedBetaGeoFitter
) -> None:
    """P(n) = d_{n0} (1 - P(alive)) + P(alive) P_BG-new(n | r+x, alpha+T, a, b+x+1)."""
    params = lifetimes_fitted.params_[NAMES].to_dict()
    ours = _with_params(params)
    customers = cdnow.drop_duplicates(["frequency", "recency", "T"]).iloc[::40]
    x, t_x, T = _args(customers)
    alive = lifetimes_fitted.conditional_probability_alive(x, t_x, T)
    for t in (1.0, 39.0):
        for n in range(0, 12, 3):
            posterior = [
                {
                    **params,
                    "r": params["r"] + xi,
                    "alpha": params["alpha"] + Ti,
                    "b": params["b"] + xi + 1,
                }
                for xi, Ti in zip(x, T, strict=True)
            ]
            theirs = np.array(
                [
                    _lifetimes_with_params(p, BetaGeoFitter).probability_of_n_purchases_up_to_time(
                        t, n
                    )
                    for p in posterior
                ]
            )
            want = alive * theirs + (1.0 - alive) * (n == 0)
            got = ours.p_purchases(n, t, x, t_x, T)
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-15)


def test_p_purchases_new_customer_sums_to_one(fitted: ModifiedBetaGeo) -> None:
    n = np.arange(50_000)
    for t in (0.5, 39.0, 78.0):
        p = fitted.p_purchases_new_customer(n, t)
        assert p.sum() == pytest.approx(1.0, abs=1e-10)
        assert float(p @ n) == pytest.approx(
            float(fitted.expected_purchases_new_customer(t)), rel=1e-8
        )


# --- the class -------------------------------------------------------------------------------


def test_is_a_beta_geo() -> None:
    # MBG/NBD reuses BG/NBD's machinery (the shared conventions: test_purchase_models.py).
    assert isinstance(ModifiedBetaGeo(penalizer_coef=0.1), BetaGeo)
