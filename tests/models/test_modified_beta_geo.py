"""MBG/NBD: clvlab's ModifiedBetaGeo against lifetimes, BG/NBD identities and simulation."""

from __future__ import annotations

import importlib.resources
import json
import warnings

import numpy as np
import pandas as pd
import pytest
from lifetimes import BetaGeoFitter, ModifiedBetaGeoFitter
from scipy.optimize import check_grad
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from clvlab.errors import ConfigError, DataError
from clvlab.models import BetaGeo
from clvlab.models.btyd import BTYDConvergenceWarning
from clvlab.models.btyd.beta_geo import negative_log_likelihood as bgnbd_negative_log_likelihood
from clvlab.models.btyd.modified_beta_geo import ModifiedBetaGeo, negative_log_likelihood

#: MBG/NBD on the CDNOW sample (39 weeks), as fitted by lifetimes (its documentation).
PUBLISHED = {"r": 0.525, "alpha": 6.183, "a": 0.891, "b": 1.614}
NAMES = ["r", "alpha", "a", "b"]


def _cdnow_summary() -> pd.DataFrame:
    path = importlib.resources.files("lifetimes") / "datasets" / "cdnow_customers_summary.csv"
    with path.open() as handle:
        return pd.read_csv(handle)


def _with_params(params: dict[str, float]) -> ModifiedBetaGeo:
    return ModifiedBetaGeo.from_dict({"model": "ModifiedBetaGeo", "params": params})


def _lifetimes_with_params(params: dict[str, float], cls: type = ModifiedBetaGeoFitter):
    fitter = cls()
    fitter.params_ = pd.Series(params)[NAMES]
    return fitter


def _simulate(
    rng: np.random.Generator,
    n: int,
    params: dict[str, float],
    T: float | np.ndarray,
    horizon: float = 0.0,
) -> pd.DataFrame:
    """Simulate MBG/NBD histories on (0, T] and the purchases in (T, T + horizon].

    Dropout chances come at time 0 and after each repeat purchase; the first fatal one is
    the G-th, G ~ Geometric(p) on {1, 2, ...}, so at most K = G - 1 repeat purchases happen.
    With N(T) ~ Poisson(lambda T) arrivals while alive, x = min(N, K) and t_x is the x-th of
    N uniform arrival times, T * Beta(x, N - x + 1). Alive at T iff N < K (the chance after
    the x-th purchase was survived); by memorylessness the future purchases are
    min(Poisson(lambda t), K - x).
    """
    T = np.broadcast_to(np.asarray(T, dtype=float), (n,))
    lam = rng.gamma(params["r"], 1.0 / params["alpha"], n)
    p = rng.beta(params["a"], params["b"], n)
    k = rng.geometric(p) - 1
    n_arrivals = rng.poisson(lam * T)
    x = np.minimum(n_arrivals, k)
    t_x = np.where(x > 0, T * rng.beta(np.maximum(x, 1), n_arrivals - x + 1), 0.0)
    alive = n_arrivals < k
    future = np.where(alive, np.minimum(rng.poisson(lam * horizon), k - x), 0)
    return pd.DataFrame({"frequency": x, "recency": t_x, "T": T, "alive": alive, "future": future})


@pytest.fixture(scope="module")
def cdnow() -> pd.DataFrame:
    return _cdnow_summary()


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


def test_weights_equal_repeated_rows(cdnow: pd.DataFrame, fitted: ModifiedBetaGeo) -> None:
    counts = cdnow.groupby(["frequency", "recency", "T"]).size().rename("n").reset_index()
    weighted = ModifiedBetaGeo().fit(counts, weights=counts["n"].to_numpy())
    np.testing.assert_allclose(weighted.params_, fitted.params_, rtol=1e-6)
    assert weighted.log_likelihood_ == pytest.approx(fitted.log_likelihood_, abs=1e-6)


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


def test_predictions_equal_lifetimes_on_all_customers(
    cdnow: pd.DataFrame, lifetimes_fitted: ModifiedBetaGeoFitter
) -> None:
    ours = _with_params(lifetimes_fitted.params_.to_dict())
    x, t_x, T = _args(cdnow)
    np.testing.assert_allclose(
        ours.p_alive(x, t_x, T),
        lifetimes_fitted.conditional_probability_alive(x, t_x, T),
        rtol=1e-6,
    )
    for t in (1.0, 39.0, 52.0, 200.0):
        np.testing.assert_allclose(
            ours.expected_purchases(t, x, t_x, T),
            lifetimes_fitted.conditional_expected_number_of_purchases_up_to_time(t, x, t_x, T),
            rtol=1e-6,
        )


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


@pytest.mark.parametrize(
    ("x", "t_x", "T"), [(0, 0.0, 38.86), (2, 30.43, 38.86), (7, 10.0, 38.86), (200, 39.0, 39.0)]
)
@pytest.mark.parametrize("t", [1.0, 39.0, 200.0])
def test_p_purchases_is_a_distribution_with_the_right_mean(
    fitted: ModifiedBetaGeo, x: float, t_x: float, T: float, t: float
) -> None:
    n = np.arange(20_000)
    p = fitted.p_purchases(n, t, x, t_x, T)
    assert (p >= 0).all() and p[-1] < 1e-12
    assert p.sum() == pytest.approx(1.0, abs=1e-10)
    assert float(p @ n) == pytest.approx(float(fitted.expected_purchases(t, x, t_x, T)), rel=1e-8)
    assert p[0] == fitted.p_churn(t, x, t_x, T)


def test_p_purchases_new_customer_sums_to_one(fitted: ModifiedBetaGeo) -> None:
    n = np.arange(50_000)
    for t in (0.5, 39.0, 78.0):
        p = fitted.p_purchases_new_customer(n, t)
        assert p.sum() == pytest.approx(1.0, abs=1e-10)
        assert float(p @ n) == pytest.approx(
            float(fitted.expected_purchases_new_customer(t)), rel=1e-8
        )


# --- simulation ---------------------------------------------------------------------------


def test_predictions_match_simulation() -> None:
    """Averages of the conditional predictions equal simulated outcomes within each x."""
    rng = np.random.default_rng(2025)
    horizon = 39.0
    n_customers = 200_000
    sim = _simulate(
        rng, n_customers, PUBLISHED, T=rng.uniform(30.0, 40.0, n_customers), horizon=horizon
    )
    model = _with_params(PUBLISHED)
    x, t_x, T = _args(sim)
    future = sim["future"].to_numpy()
    predicted = {
        "alive": model.p_alive(x, t_x, T),
        "churn": model.p_churn(horizon, x, t_x, T),
        "future": model.expected_purchases(horizon, x, t_x, T),
        **{f"P(n={n})": model.p_purchases(n, horizon, x, t_x, T) for n in (1, 2, 3, 5)},
    }
    observed = {
        "alive": sim["alive"].to_numpy(dtype=float),
        "churn": (future == 0).astype(float),
        "future": future.astype(float),
        **{f"P(n={n})": (future == n).astype(float) for n in (1, 2, 3, 5)},
    }
    groups = {"x=0": x == 0, "x=1": x == 1, "x=2": x == 2, "x=3-5": (x >= 3) & (x <= 5)}
    for label, mask in groups.items():
        for key in predicted:
            obs = observed[key][mask]
            se = obs.std() / np.sqrt(mask.sum())
            gap = abs(predicted[key][mask].mean() - obs.mean())
            assert gap < 4 * se + 1e-3, (label, key, gap, se)
    # New customers: the whole distribution of X(0, 39] of customers aged 0.
    fresh = _simulate(rng, n_customers, PUBLISHED, T=0.0, horizon=horizon)["future"].to_numpy()
    for n in range(6):
        share = float(np.mean(fresh == n))
        se = np.sqrt(share * (1 - share) / n_customers)
        assert abs(float(model.p_purchases_new_customer(n, horizon)) - share) < 4 * se + 1e-4


# --- synthetic recovery -------------------------------------------------------------------


def test_recovers_simulated_parameters() -> None:
    truth = {"r": 0.5, "alpha": 5.0, "a": 0.8, "b": 2.5}
    sim = _simulate(np.random.default_rng(17), 20_000, truth, T=52.0)
    model = ModifiedBetaGeo().fit(sim)
    assert model.converged_
    for name, value in truth.items():
        se = model.stderr_[name]
        assert np.isfinite(se) and se > 0
        assert abs(model.params_[name] - value) < 4 * se, (name, model.params_[name], se)


# --- edge inputs -------------------------------------------------------------------------


def test_only_one_time_buyers_warns_and_stays_finite() -> None:
    rfm = pd.DataFrame(
        {"frequency": np.zeros(200), "recency": np.zeros(200), "T": np.linspace(1.0, 52.0, 200)}
    )
    with pytest.warns(BTYDConvergenceWarning, match="ModifiedBetaGeo"):
        model = ModifiedBetaGeo().fit(rfm)
    assert np.isfinite(model.params_).all() and np.isfinite(model.log_likelihood_)
    for prediction in (
        model.expected_purchases(10.0, [0, 3, 100000], [0, 2, 40], 52.0),
        model.p_alive([0, 3, 100000], [0, 2, 40], 52.0),
        model.p_churn(10.0, [0, 3, 100000], [0, 2, 40], 52.0),
        model.p_purchases([0, 1, 7], 10.0, [0, 3, 100000], [0, 2, 40], 52.0),
        model.expected_purchases_new_customer([1.0, 52.0, 1e4]),
    ):
        assert np.isfinite(prediction).all()


def test_extreme_frequencies_stay_finite(cdnow: pd.DataFrame) -> None:
    extreme = pd.DataFrame(
        {
            "frequency": [1000, 1000, 1000, 500, 999],
            "recency": [0.0, 19.0, 38.86, 38.0, 1e-3],
            "T": [38.86] * 5,
        }
    )
    rfm = pd.concat([cdnow[["frequency", "recency", "T"]], extreme], ignore_index=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BTYDConvergenceWarning)
        model = ModifiedBetaGeo().fit(rfm)
    assert np.isfinite(model.params_).all() and np.isfinite(model.log_likelihood_)
    x = np.array([0, 1, 1000, 100000, 100000, 100000])
    t_x = np.array([0.0, 38.86, 0.0, 0.0, 19.0, 38.86])
    for m in (model, _with_params(PUBLISHED)):
        for t in (0.0, 1.0, 39.0, 1e4):
            for values in (
                m.expected_purchases(t, x, t_x, 38.86),
                m.p_churn(t, x, t_x, 38.86),
                m.p_alive(x, t_x, 38.86),
                m.p_purchases(np.array([[0], [1], [1000], [10**7]]), t, x, t_x, 38.86),
            ):
                assert np.isfinite(values).all() and (values >= 0).all()


def test_frequent_buyers_fit_cleanly(cdnow: pd.DataFrame) -> None:
    extreme = pd.DataFrame(
        {"frequency": [1000, 1000, 500, 999], "recency": [19.0, 38.86, 38.0, 30.0], "T": 38.86}
    )
    rfm = pd.concat([cdnow[["frequency", "recency", "T"]], extreme], ignore_index=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", BTYDConvergenceWarning)
        model = ModifiedBetaGeo().fit(rfm)
    assert model.converged_
    assert np.isfinite(model.params_).all() and np.isfinite(model.stderr_).all()


# --- serialization and sklearn conventions ------------------------------------------------


def test_round_trip_gives_identical_predictions(
    fitted: ModifiedBetaGeo, cdnow: pd.DataFrame
) -> None:
    text = json.dumps(fitted.to_dict())
    assert json.loads(text)["model"] == "ModifiedBetaGeo"
    restored = ModifiedBetaGeo.from_dict(json.loads(text))
    assert type(restored) is ModifiedBetaGeo
    x, t_x, T = _args(cdnow)
    for method, args in (
        ("expected_purchases", (39, x, t_x, T)),
        ("p_alive", (x, t_x, T)),
        ("p_churn", (39, x, t_x, T)),
        ("p_purchases", (2, 39, x, t_x, T)),
    ):
        np.testing.assert_array_equal(
            getattr(restored, method)(*args), getattr(fitted, method)(*args)
        )
    pd.testing.assert_series_equal(restored.params_, fitted.params_)
    pd.testing.assert_series_equal(restored.stderr_, fitted.stderr_)
    assert restored.log_likelihood_ == fitted.log_likelihood_
    assert restored.converged_ == fitted.converged_ and restored.n_iter_ == fitted.n_iter_


def test_from_dict_does_not_mix_models(fitted: ModifiedBetaGeo) -> None:
    with pytest.raises(ConfigError, match="ModifiedBetaGeo"):
        ModifiedBetaGeo.from_dict({"model": "BetaGeo", "params": PUBLISHED})
    with pytest.raises(ConfigError, match="BetaGeo"):
        BetaGeo.from_dict(fitted.to_dict())


def test_not_fitted_raises() -> None:
    model = ModifiedBetaGeo()
    for call in (
        lambda: model.p_alive(1, 1.0, 2.0),
        lambda: model.expected_purchases(1, 1, 1.0, 2.0),
        lambda: model.p_churn(1, 1, 1.0, 2.0),
        lambda: model.p_purchases(1, 1, 1, 1.0, 2.0),
        lambda: model.expected_purchases_new_customer(1),
        lambda: model.p_no_purchase_new_customer(1),
        lambda: model.p_purchases_new_customer(1, 1),
    ):
        with pytest.raises(NotFittedError):
            call()


def test_sklearn_conventions() -> None:
    model = ModifiedBetaGeo(penalizer_coef=0.1)
    assert model.get_params() == {"penalizer_coef": 0.1}
    cloned = clone(model)
    assert type(cloned) is ModifiedBetaGeo and cloned.penalizer_coef == 0.1
    assert isinstance(model, BetaGeo)


# --- invalid input ------------------------------------------------------------------------


def _rfm(**overrides: list[float]) -> pd.DataFrame:
    base = {"frequency": [0, 2, 1, 3], "recency": [0.0, 5.0, 2.0, 9.0], "T": [10.0] * 4}
    base.update(overrides)
    return pd.DataFrame(base)


@pytest.mark.parametrize(
    ("rfm", "message"),
    [
        (_rfm(frequency=[0, -2, 1, 3]), r"1 of 4 rows have a negative frequency"),
        (_rfm(frequency=[0, 2.5, 1, 3]), "non-integer frequency"),
        (_rfm(recency=[0.0, 5.0, 12.0, 11.0]), r"2 of 4 rows have recency larger than T"),
        (_rfm(recency=[0.0, -5.0, 2.0, 9.0]), "negative recency"),
        (_rfm(recency=[1.0, 5.0, 2.0, 9.0]), "recency > 0 with frequency 0"),
        (_rfm(T=[10.0, np.nan, 10.0, 10.0]), r"missing \(NaN\)"),
        (_rfm().drop(columns="T"), r"ModifiedBetaGeo\.fit: the RFM table lacks column"),
        (_rfm().iloc[:0], "no rows"),
        (_rfm().to_numpy(), r"ModifiedBetaGeo\.fit expects a pandas DataFrame"),
    ],
)
def test_invalid_rfm_raises_data_error(rfm: object, message: str) -> None:
    with pytest.raises(DataError, match=message):
        ModifiedBetaGeo().fit(rfm)


def test_invalid_weights_and_penalizer() -> None:
    with pytest.raises(DataError, match=r"ModifiedBetaGeo\.fit: weights"):
        ModifiedBetaGeo().fit(_rfm(), weights=np.ones(2))
    with pytest.raises(ConfigError, match="penalizer_coef"):
        ModifiedBetaGeo(penalizer_coef=-1.0).fit(_rfm())


def test_invalid_prediction_input_raises_data_error(fitted: ModifiedBetaGeo) -> None:
    with pytest.raises(DataError, match="recency exceeds T"):
        fitted.p_alive(1, 5.0, 4.0)
    with pytest.raises(DataError, match="negative"):
        fitted.expected_purchases(-1.0, 1, 1.0, 4.0)
    with pytest.raises(DataError, match="NaN"):
        fitted.p_churn(1.0, np.nan, 1.0, 4.0)
    with pytest.raises(DataError, match="non-integer"):
        fitted.p_purchases(0.5, 1.0, 1, 1.0, 4.0)
    with pytest.raises(DataError, match="negative"):
        fitted.p_purchases_new_customer(-1, 1.0)
    with pytest.raises(DataError, match="broadcast"):
        fitted.p_purchases([1, 2], 1.0, [1, 2, 3], 1.0, 4.0)
