"""P(alive) at a future time T + t (issue 18, item 2): P(alive now) times the survival of t
more given alive, each model's checked by an independent computation (quadrature over the
posterior, another model's formula, or simulation)."""

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, stats

from clvlab import (
    MBGCNBD,
    BetaGeo,
    GGompertzNBD,
    ModifiedBetaGeo,
    ParetoNBD,
    rfm,
)

HISTORIES = [(0, 0.0, 10.0), (3, 20.0, 30.0), (12, 50.0, 52.0), (2, 5.0, 60.0)]


def _known(model, **params):
    """``model`` at ``params`` (the fitted state taken there, its warnings ignored)."""
    history = pd.DataFrame({"frequency": [1.0], "recency": [1.0], "T": [2.0], "litt": [0.0]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(history, at=params)


@pytest.fixture(scope="module")
def models(cdnow_sample):
    """Each model fitted on the CDNOW sample's calibration, in weeks."""
    summary = rfm(cdnow_sample, "1997-09-30", freq_multiplier=7)
    return {cls.__name__: cls().fit(summary) for cls in (BetaGeo, ModifiedBetaGeo, ParetoNBD)}


@pytest.mark.parametrize("name", ["BetaGeo", "ModifiedBetaGeo", "ParetoNBD"])
def test_at_t_zero_it_is_p_alive_now(models, name):
    model = models[name]
    x, t_x, T = np.array(HISTORIES).T
    np.testing.assert_array_equal(model.p_alive(x, t_x, T, t=0.0), model.p_alive(x, t_x, T))


def _bg_integrand(p: float, z: float, power: float, a: float, b: float) -> float:
    return (1 + p * z) ** -power * stats.beta.pdf(p, a, b)


def _pareto_integrand(mu: float, t: float, s: float, rate: float) -> float:
    return math.exp(-mu * t) * stats.gamma.pdf(mu, s, scale=1.0 / rate)


@pytest.mark.parametrize("name", ["BetaGeo", "ModifiedBetaGeo"])
def test_bg_family_survives_if_no_purchase_brings_dropout(models, name):
    """Given alive at T, lambda ~ Gamma(r + x, alpha + T) and p ~ Beta(a, b') independently,
    and dropouts come at rate lambda p: survival E[(1 + p t / (alpha + T))^-(r + x)]."""
    model = models[name]
    r, alpha, a, b = model.params_
    shift = 1.0 if name == "ModifiedBetaGeo" else 0.0
    for x, t_x, T in HISTORIES:
        for t in (1.0, 13.0, 52.0, 520.0):
            survival, _ = integrate.quad(
                _bg_integrand, 0, 1, args=(t / (alpha + T), r + x, a, b + x + shift), limit=200
            )
            expected = float(model.p_alive(x, t_x, T)) * survival
            assert float(model.p_alive(x, t_x, T, t=t)) == pytest.approx(expected, rel=1e-9)


def test_pareto_nbd_survives_at_the_posterior_dropout_rate(models):
    """Given alive at T, mu ~ Gamma(s, beta + T): survival E[exp(-mu t)]."""
    model = models["ParetoNBD"]
    _, _, s, beta = model.params_
    for x, t_x, T in HISTORIES:
        for t in (1.0, 52.0, 520.0):
            survival, _ = integrate.quad(_pareto_integrand, 0, np.inf, args=(t, s, beta + T))
            expected = float(model.p_alive(x, t_x, T)) * survival
            assert float(model.p_alive(x, t_x, T, t=t)) == pytest.approx(expected, rel=1e-8)


@pytest.mark.parametrize("name", ["BetaGeo", "ModifiedBetaGeo", "ParetoNBD"])
def test_p_alive_falls_with_the_time_ahead(models, name):
    model = models[name]
    ahead = np.array([0.0, 1.0, 10.0, 100.0, 1_000.0, 100_000.0])
    for x, t_x, T in HISTORIES:
        path = model.p_alive(x, t_x, T, t=ahead)
        assert np.all(np.diff(path) < 0) and np.all(path > 0)


def test_ggompertz_nbd_survives_with_its_lifetime_distribution():
    model = _known(GGompertzNBD(), r=0.55, alpha=10.6, b=0.05, s=0.6, beta=2.0)
    b, s, beta = 0.05, 0.6, 2.0

    def survival(tau):  # S(tau) = (beta / (beta - 1 + e^{b tau}))^s
        return (beta / (beta - 1 + math.exp(b * tau))) ** s

    for x, t_x, T in HISTORIES:
        expected = float(model.p_alive(x, t_x, T)) * survival(T + 26.0) / survival(T)
        assert float(model.p_alive(x, t_x, T, t=26.0)) == pytest.approx(expected, rel=1e-12)


def test_mbg_cnbd_k_of_one_is_mbg_nbd(models):
    """MBG/CNBD-k survives the purchases of the window by E[(1 - p)^M]; with k = 1 that is
    MBG/NBD's hypergeometric formula, computed another way."""
    mbg = models["ModifiedBetaGeo"]
    cnbd = _known(MBGCNBD(k=1), **dict(mbg.params_))
    x, t_x, T = np.array(HISTORIES).T
    for t in (1.0, 13.0, 52.0, 520.0):
        np.testing.assert_allclose(
            cnbd.p_alive(x, t_x, T, t=t), mbg.p_alive(x, t_x, T, t=t), rtol=1e-8
        )


def test_mbg_cnbd_k_new_customers_alive_as_simulated():
    """k = 3 at BTYDplus' example parameters: new customers alive at t, against 200,000
    simulated. A customer has a dropout chance at the first purchase and after each repeat
    purchase, the repeats Erlang-3 apart: he is alive at t when he survived the first chance
    and the chance that ends him comes after t."""
    params = {"r": 0.85, "alpha": 1.45, "a": 0.79, "b": 2.42}
    model = _known(MBGCNBD(k=3), **params)
    rng = np.random.default_rng(9)
    n = 200_000
    rate = rng.gamma(params["r"], 1.0 / params["alpha"], n)
    chances = rng.geometric(rng.beta(params["a"], params["b"], n))  # the one that ends him
    repeats = chances - 1  # repeat purchases made before it (0: lost at the first purchase)
    ends = np.where(repeats > 0, rng.gamma(3.0 * np.maximum(repeats, 1), 1.0 / rate), 0.0)
    for t in (2.0, 10.0, 40.0):
        simulated = np.mean((repeats > 0) & (ends > t))
        expected = float(model.p_alive(0, 0.0, 0.0, t=t))
        assert abs(simulated - expected) < 4 * math.sqrt(expected * (1 - expected) / n)
