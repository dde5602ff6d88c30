"""BG/NBD with static covariates: exact gradient, simulated coefficients recovered,
BG/NBD itself without covariates, predictions at each customer's own parameters."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import check_grad

from clvlab import BetaGeo, DataError
from clvlab.models.btyd import CovariateBetaGeo
from clvlab.models.btyd.covariates import negative_log_likelihood
from simulators import simulate_bgnbd

BASE = {"r": 0.25, "alpha": 4.0, "a": 0.8, "b": 2.5}
GAMMA_P, GAMMA_D = np.array([0.6, -0.3]), np.array([-0.5, 0.25])


@pytest.fixture(scope="module")
def simulated() -> tuple[pd.DataFrame, pd.DataFrame]:
    """30,000 BG/NBD customers in six groups of a plan (0/1) and a price level (-1, 0, 1),
    each group simulated at its own alpha = alpha e^{-z'g_p}, a, b = (a, b) e^{z'g_d}."""
    rng = np.random.default_rng(1)
    frames = []
    for plan in (0.0, 1.0):
        for price in (-1.0, 0.0, 1.0):
            z = np.array([plan, price])
            scale = float(np.exp(z @ GAMMA_D))
            params = {
                "r": BASE["r"],
                "alpha": BASE["alpha"] * float(np.exp(-z @ GAMMA_P)),
                "a": BASE["a"] * scale,
                "b": BASE["b"] * scale,
            }
            group = simulate_bgnbd(rng, 5_000, params, T=rng.uniform(20, 60, 5_000))
            frames.append(group.assign(plan=plan, price=price))
    data = pd.concat(frames, ignore_index=True)
    return data[["frequency", "recency", "T"]], data[["plan", "price"]]


@pytest.fixture(scope="module")
def fitted(simulated) -> CovariateBetaGeo:
    return CovariateBetaGeo().fit(*simulated)


def test_recovers_the_simulated_coefficients(fitted):
    truth = {
        **BASE,
        "purchase:plan": GAMMA_P[0],
        "purchase:price": GAMMA_P[1],
        "dropout:plan": GAMMA_D[0],
        "dropout:price": GAMMA_D[1],
    }
    assert list(fitted.params_.index) == list(truth)
    for name, value in truth.items():
        assert abs(fitted.params_[name] - value) < 3 * fitted.stderr_[name], name


def test_predictions_are_bgnbd_at_each_customers_parameters(fitted, simulated):
    rfm, covariates = simulated
    rows = rfm.iloc[[0, 7_000, 29_999]]
    z = covariates.iloc[[0, 7_000, 29_999]]
    params = fitted.params_
    for (_, history), (_, row) in zip(rows.iterrows(), z.iterrows(), strict=True):
        zi = row.to_numpy()
        scale = np.exp(zi @ params[["dropout:plan", "dropout:price"]].to_numpy())
        own = {
            "r": params["r"],
            "alpha": params["alpha"] * np.exp(-zi @ params[["purchase:plan", "purchase:price"]]),
            "a": params["a"] * scale,
            "b": params["b"] * scale,
        }
        model = BetaGeo.from_dict({"model": "BetaGeo", "params": own})
        args = (history["frequency"], history["recency"], history["T"])
        one_row, one_z = history.to_frame().T, row.to_frame().T
        assert fitted.p_alive(one_row, one_z)[0] == pytest.approx(float(model.p_alive(*args)))
        assert fitted.expected_purchases(10.0, one_row, one_z)[0] == pytest.approx(
            float(model.expected_purchases(10.0, *args))
        )


def test_without_covariates_it_is_bgnbd(simulated):
    rfm, covariates = simulated
    model = CovariateBetaGeo().fit(rfm, covariates.iloc[:, :0])
    plain = BetaGeo().fit(rfm)
    np.testing.assert_allclose(model.params_, plain.params_[["r", "alpha", "a", "b"]], rtol=1e-6)
    assert model.log_likelihood_ == pytest.approx(plain.log_likelihood_, rel=1e-9)


def test_gradient_is_exact(simulated):
    rfm, covariates = simulated
    head = rfm.head(2_000)
    x, t_x, T = (head[c].to_numpy(float) for c in ("frequency", "recency", "T"))
    w, z = np.ones(len(x)), covariates.head(2_000).to_numpy()
    u = np.array([np.log(0.3), np.log(3.0), np.log(0.9), np.log(2.0), 0.2, -0.1, -0.2, 0.1])

    def nll(v: np.ndarray) -> float:
        return negative_log_likelihood(v, x, t_x, T, w, z)[0]

    def grad(v: np.ndarray) -> np.ndarray:
        return negative_log_likelihood(v, x, t_x, T, w, z)[1]

    assert check_grad(nll, grad, u) < 1e-5 * np.linalg.norm(grad(u))


def test_bad_covariates_are_refused(simulated):
    rfm, covariates = simulated
    with pytest.raises(DataError, match=r"\['country'\] are not numeric"):
        CovariateBetaGeo().fit(rfm.head(50), covariates.head(50).assign(country="UK"))
    with pytest.raises(DataError, match="one row per customer"):
        CovariateBetaGeo().fit(rfm.head(50), covariates.head(40))
