"""Pareto/NBD with static covariates (CLVTools' parametrisation): the simulated coefficients
recovered, Pareto/NBD itself without covariates, and the gradient of the grouped likelihood."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clvlab import ParetoNBD
from clvlab.models.btyd import CovariateParetoNBD
from simulators import simulate_pareto_nbd

BASE = {"r": 0.55, "alpha": 10.0, "s": 0.6, "beta": 12.0}
GAMMA_P, GAMMA_D = np.array([0.5, -0.3]), np.array([-0.6, 0.3])


@pytest.fixture(scope="module")
def simulated() -> tuple[pd.DataFrame, pd.DataFrame]:
    """18,000 Pareto/NBD customers in six groups of a plan (0/1) and a price level (-1, 0,
    1), each at alpha e^{-z'g_p} and beta e^{-z'g_d}."""
    rng = np.random.default_rng(2)
    frames = []
    for plan in (0.0, 1.0):
        for price in (-1.0, 0.0, 1.0):
            z = np.array([plan, price])
            params = {
                "r": BASE["r"],
                "alpha": BASE["alpha"] * float(np.exp(-z @ GAMMA_P)),
                "s": BASE["s"],
                "beta": BASE["beta"] * float(np.exp(-z @ GAMMA_D)),
            }
            group = simulate_pareto_nbd(rng, 3_000, params, T=rng.uniform(30, 80, 3_000))
            frames.append(group.assign(plan=plan, price=price))
    data = pd.concat(frames, ignore_index=True)
    return data[["frequency", "recency", "T"]], data[["plan", "price"]]


def test_recovers_the_simulated_coefficients(simulated):
    model = CovariateParetoNBD().fit(*simulated)
    truth = {
        **BASE,
        "purchase:plan": GAMMA_P[0],
        "purchase:price": GAMMA_P[1],
        "dropout:plan": GAMMA_D[0],
        "dropout:price": GAMMA_D[1],
    }
    assert list(model.params_.index) == list(truth)
    for name, value in truth.items():
        assert abs(model.params_[name] - value) < 3 * model.stderr_[name], name
    # Predictions are Pareto/NBD's at a customer's own parameters.
    rfm, covariates = simulated
    row = covariates.iloc[[-1]]
    z = row.to_numpy()[0]
    params = model.params_
    own = {
        "r": params["r"],
        "alpha": params["alpha"] * np.exp(-z @ params[["purchase:plan", "purchase:price"]]),
        "s": params["s"],
        "beta": params["beta"] * np.exp(-z @ params[["dropout:plan", "dropout:price"]]),
    }
    single = ParetoNBD.from_dict({"model": "ParetoNBD", "params": own})
    history = rfm.iloc[-1]
    args = (history["frequency"], history["recency"], history["T"])
    assert model.p_alive(rfm.iloc[[-1]], row)[0] == pytest.approx(float(single.p_alive(*args)))


def test_without_covariates_it_is_pareto_nbd(simulated):
    rfm, covariates = simulated
    head = rfm.head(3_000)
    model = CovariateParetoNBD().fit(head, covariates.head(3_000).iloc[:, :0])
    plain = ParetoNBD().fit(head)
    np.testing.assert_allclose(model.params_, plain.params_, rtol=1e-6)
    assert model.log_likelihood_ == pytest.approx(plain.log_likelihood_, rel=1e-9)
