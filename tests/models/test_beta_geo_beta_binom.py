"""BG/BB: clvlab's BetaGeoBetaBinom against FHS (2010) and lifetimes, on the donations data."""

from __future__ import annotations

import importlib.resources
import json

import numpy as np
import pandas as pd
import pytest
from lifetimes import BetaGeoBetaBinomFitter
from scipy.optimize import check_grad
from scipy.special import betaln
from sklearn.exceptions import NotFittedError

import clvlab.models.btyd as btyd
from clvlab.errors import ConfigError, DataError
from clvlab.models.btyd import BetaGeoBetaBinom, estimator_from_dict
from clvlab.models.btyd.beta_geo_beta_binom import (
    _expected_alive_opportunities,
    negative_log_likelihood,
)

#: Fader, Hardie & Shang (2010): the 11,104 first-time supporters of 1995, 6 opportunities.
PUBLISHED = {"alpha": 1.204, "beta": 0.750, "gamma": 0.657, "delta": 2.783}
NAMES = list(PUBLISHED)


@pytest.fixture(scope="module")
def donations() -> pd.DataFrame:
    """lifetimes' donations table: one row per history (x, t_x, n) with its customer count."""
    path = importlib.resources.files("lifetimes") / "datasets" / "donations.csv"
    with path.open() as handle:
        return pd.read_csv(handle).rename(columns={"periods": "n_periods"})


@pytest.fixture(scope="module")
def fitted(donations: pd.DataFrame) -> BetaGeoBetaBinom:
    return BetaGeoBetaBinom().fit(donations, sample_weight=donations["weights"])


@pytest.fixture(scope="module")
def lifetimes_fitted(donations: pd.DataFrame) -> BetaGeoBetaBinomFitter:
    return BetaGeoBetaBinomFitter().fit(
        donations["frequency"],
        donations["recency"],
        donations["n_periods"],
        weights=donations["weights"],
    )


def _columns(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return tuple(frame[c].to_numpy(dtype=float) for c in ("frequency", "recency", "n_periods"))


def _lifetimes_log_likelihood(params: np.ndarray, frame: pd.DataFrame) -> float:
    """lifetimes' total log-likelihood: its objective is the weighted mean NLL (plus penalty)."""
    w = frame["weights"].to_numpy(dtype=float)
    x, t_x, n = (a.astype(int) for a in _columns(frame))
    mean_nll = BetaGeoBetaBinomFitter._negative_log_likelihood(np.log(params), x, t_x, n, w, 0.0)
    return -float(mean_nll) * float(w.sum())


# --- fit on the donations data ----------------------------------------------------------------


def test_donations_fit_matches_published_values(
    fitted: BetaGeoBetaBinom, donations: pd.DataFrame
) -> None:
    assert donations["weights"].sum() == 11104
    assert fitted.converged_
    assert list(fitted.params_.index) == NAMES
    assert fitted.params_.round(3).to_dict() == PUBLISHED
    assert fitted.log_likelihood_ == pytest.approx(-33225.58, abs=0.01)
    assert fitted.stderr_.notna().all() and (fitted.stderr_ > 0).all()


def test_donations_fit_matches_lifetimes(
    fitted: BetaGeoBetaBinom, lifetimes_fitted: BetaGeoBetaBinomFitter, donations: pd.DataFrame
) -> None:
    theirs = lifetimes_fitted.params_[NAMES].to_numpy()
    np.testing.assert_allclose(fitted.params_.to_numpy(), theirs, rtol=1e-4)
    # Same likelihood: ours at our optimum is lifetimes' at it, and not below theirs at theirs.
    mine = fitted.params_.to_numpy()
    assert fitted.log_likelihood_ == pytest.approx(
        _lifetimes_log_likelihood(mine, donations), rel=1e-10
    )
    assert fitted.log_likelihood_ >= _lifetimes_log_likelihood(theirs, donations) - 1e-6
    assert -lifetimes_fitted._negative_log_likelihood_ * 11104 == pytest.approx(
        fitted.log_likelihood_, rel=1e-10
    )
    np.testing.assert_allclose(
        fitted.stderr_.to_numpy(), lifetimes_fitted.standard_errors_[NAMES].to_numpy(), rtol=1e-3
    )


def test_log_likelihood_equals_lifetimes_at_arbitrary_points(donations: pd.DataFrame) -> None:
    x, t_x, n = _columns(donations)
    w = donations["weights"].to_numpy(dtype=float)
    for params in ([1.0, 1.0, 1.0, 1.0], [0.3, 5.0, 2.0, 0.4], [20.0, 0.5, 0.1, 9.0]):
        ours, _ = negative_log_likelihood(np.log(params), x, t_x, n, w)
        theirs = _lifetimes_log_likelihood(np.array(params), donations)
        assert -ours == pytest.approx(theirs, rel=1e-10)


def test_sample_weight_equals_repeated_rows(
    fitted: BetaGeoBetaBinom, donations: pd.DataFrame
) -> None:
    one_per_customer = donations.loc[donations.index.repeat(donations["weights"])]
    assert len(one_per_customer) == 11104
    plain = BetaGeoBetaBinom().fit(one_per_customer)
    np.testing.assert_allclose(plain.params_, fitted.params_, rtol=1e-6)
    assert plain.log_likelihood_ == pytest.approx(fitted.log_likelihood_, rel=1e-10)
    # Fractional weights scale the log-likelihood, not the optimum.
    halved = BetaGeoBetaBinom().fit(donations, sample_weight=donations["weights"] / 2)
    np.testing.assert_allclose(halved.params_, fitted.params_, rtol=1e-6)
    assert halved.log_likelihood_ == pytest.approx(fitted.log_likelihood_ / 2, rel=1e-10)


def test_penalized_fit_matches_lifetimes(donations: pd.DataFrame) -> None:
    ours = BetaGeoBetaBinom(penalizer_coef=0.01).fit(donations, sample_weight=donations["weights"])
    theirs = BetaGeoBetaBinomFitter(penalizer_coef=0.01).fit(
        donations["frequency"],
        donations["recency"],
        donations["n_periods"],
        weights=donations["weights"],
    )
    np.testing.assert_allclose(ours.params_, theirs.params_[NAMES], rtol=1e-4)


# --- gradient ---------------------------------------------------------------------------------


def test_analytic_gradient_matches_finite_differences() -> None:
    rng = np.random.default_rng(3)
    n = rng.integers(0, 40, 300).astype(float)
    t_x = np.floor(rng.uniform(0, 1, 300) * (n + 1))
    x = np.where(t_x > 0, np.floor(rng.uniform(0, 1, 300) * t_x) + 1, 0.0)
    w = rng.uniform(0.5, 3.0, 300)
    for log_params in [np.log(list(PUBLISHED.values())), *rng.normal(0.0, 1.5, (5, 4))]:

        def value(lp: np.ndarray) -> float:
            return negative_log_likelihood(lp, x, t_x, n, w)[0]

        def grad(lp: np.ndarray) -> np.ndarray:
            return negative_log_likelihood(lp, x, t_x, n, w)[1]

        scale = np.linalg.norm(grad(log_params)) + 1.0
        assert check_grad(value, grad, log_params, epsilon=1e-7) / scale < 1e-4
        h = 1e-5
        central = np.array(
            [(value(log_params + h * e) - value(log_params - h * e)) / (2 * h) for e in np.eye(4)]
        )
        np.testing.assert_allclose(grad(log_params), central, rtol=1e-6, atol=1e-6 * scale)


# --- predictions ------------------------------------------------------------------------------


def test_predictions_equal_lifetimes(
    fitted: BetaGeoBetaBinom, lifetimes_fitted: BetaGeoBetaBinomFitter, donations: pd.DataFrame
) -> None:
    same = BetaGeoBetaBinom.from_dict(
        {"model": "BetaGeoBetaBinom", "params": lifetimes_fitted.params_.to_dict()}
    )
    x, t_x, n = _columns(donations)
    # lifetimes' P(alive at n + m); FHS's P(alive) is m = 1, the next opportunity.
    theirs_alive = lifetimes_fitted.conditional_probability_alive(1, x, t_x, n)
    np.testing.assert_allclose(same.p_alive(x, t_x, n), theirs_alive, rtol=1e-10)
    np.testing.assert_allclose(fitted.p_alive(x, t_x, n), theirs_alive, rtol=1e-4)
    for n_future in (1, 5, 30):
        theirs = lifetimes_fitted.conditional_expected_number_of_purchases_up_to_time(
            n_future, x, t_x, n
        )
        np.testing.assert_allclose(same.expected_purchases(n_future, x, t_x, n), theirs, rtol=1e-10)
        np.testing.assert_allclose(
            fitted.expected_purchases(n_future, x, t_x, n), theirs, rtol=1e-4
        )
    # E[X(6)] from lifetimes' expected customers by frequency (the BG/BB pmf of X(6)).
    by_x = lifetimes_fitted.expected_number_of_transactions_in_first_n_periods(6)["model"]
    assert list(by_x.index) == list(range(7))
    mean = float(by_x.index.to_numpy() @ by_x.to_numpy()) / 11104
    assert float(same.expected_transactions(6)) == pytest.approx(mean, rel=1e-10)


def test_predictions_agree_with_each_other(fitted: BetaGeoBetaBinom) -> None:
    alpha, beta, _, _ = fitted.params_
    x, t_x, n = np.array([0, 1, 3, 3, 6]), np.array([0, 5, 4, 6, 6]), np.array([6, 6, 6, 9, 6])
    # Next opportunity: alive then, times the posterior mean of p given alive through n.
    np.testing.assert_allclose(
        fitted.expected_purchases(1, x, t_x, n),
        fitted.p_alive(x, t_x, n) * (alpha + x) / (alpha + beta + n),
        rtol=1e-12,
    )
    # A customer with no history is a new customer.
    horizons = np.array([0, 1, 6, 40])
    np.testing.assert_allclose(
        fitted.expected_purchases(horizons, 0, 0, 0), fitted.expected_transactions(horizons)
    )
    assert float(fitted.expected_transactions(0)) == 0.0
    # One opportunity: bought with probability E[p], alive with E[1 - theta].
    gamma, delta = fitted.params_["gamma"], fitted.params_["delta"]
    assert float(fitted.expected_transactions(1)) == pytest.approx(
        alpha / (alpha + beta) * delta / (gamma + delta), rel=1e-12
    )
    # More future opportunities, more purchases; recent buyers are more likely alive.
    assert np.all(np.diff(fitted.expected_purchases([0, 1, 2, 10, 100], 3, 6, 6)) > 0)
    assert np.all(np.diff(fitted.p_alive(1, [1, 2, 3, 4, 5, 6], 6)) > 0)
    assert fitted.p_alive([[1], [2]], [3, 4], 6).shape == (2, 2)
    assert fitted.p_alive(1, 1, 6).shape == ()


@pytest.mark.parametrize("gamma", [0.3, 1.0 - 5e-4, 1.0, 1.0 + 1e-6, 1.0 + 2e-3, 4.0])
def test_alive_opportunities_equal_the_sum_they_telescope(gamma: float) -> None:
    # The closed form has a removable singularity at gamma = 1: compare with the plain sum.
    delta = 2.5
    for n in (0, 6, 200):
        for n_future in (0, 1, 10, 300):
            k = np.arange(1, n_future + 1)
            plain = np.exp(betaln(gamma, delta + n + k) - betaln(gamma, delta)).sum()
            closed = _expected_alive_opportunities(gamma, delta, np.array(n), np.array(n_future))
            assert float(closed) == pytest.approx(plain, rel=1e-7, abs=1e-300), (n, n_future)


# --- serialization and errors -----------------------------------------------------------------


def test_round_trip_gives_identical_predictions(
    fitted: BetaGeoBetaBinom, donations: pd.DataFrame
) -> None:
    restored = BetaGeoBetaBinom.from_dict(json.loads(json.dumps(fitted.to_dict())))
    assert estimator_from_dict(fitted.to_dict()).params_.equals(fitted.params_)
    x, t_x, n = _columns(donations)
    np.testing.assert_array_equal(restored.p_alive(x, t_x, n), fitted.p_alive(x, t_x, n))
    np.testing.assert_array_equal(
        restored.expected_purchases(5, x, t_x, n), fitted.expected_purchases(5, x, t_x, n)
    )
    pd.testing.assert_series_equal(restored.params_, fitted.params_)
    pd.testing.assert_series_equal(restored.stderr_, fitted.stderr_)
    assert restored.log_likelihood_ == fitted.log_likelihood_
    assert restored.get_params() == fitted.get_params()
    with pytest.raises(ConfigError, match="BetaGeoBetaBinom"):
        BetaGeoBetaBinom.from_dict({**fitted.to_dict(), "model": "BetaGeo"})


def test_exported_but_not_a_purchase_model() -> None:
    assert btyd.BetaGeoBetaBinom is BetaGeoBetaBinom
    assert BetaGeoBetaBinom not in btyd.PURCHASE_MODELS.values()


def test_not_fitted_raises() -> None:
    with pytest.raises(NotFittedError):
        BetaGeoBetaBinom().p_alive(1, 1, 6)


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        ({"frequency": [1, 2], "recency": [1, 2]}, r"lacks column\(s\) \['n_periods'\]"),
        ({"frequency": [1, 2], "recency": [1, 7], "n_periods": 6}, "recency larger than n_per"),
        ({"frequency": [3, 2], "recency": [2, 2], "n_periods": 6}, "frequency larger than rec"),
        ({"frequency": [0, 2], "recency": [3, 2], "n_periods": 6}, "recency > 0 with frequency 0"),
        ({"frequency": [1, 2], "recency": [1.5, 2], "n_periods": 6}, "non-integer recency"),
        ({"frequency": [0, 0], "recency": [0, 0], "n_periods": [-1, 6]}, "negative n_periods"),
        ({"frequency": [1, 2], "recency": [1, 2], "n_periods": [np.nan, 6]}, "NaN"),
    ],
)
def test_invalid_histories_raise_data_error(columns: dict[str, object], message: str) -> None:
    with pytest.raises(DataError, match=message) as info:
        BetaGeoBetaBinom().fit(pd.DataFrame(columns, index=[10, 11]))
    if "lacks" not in message:
        assert "index 10:" in str(info.value) or "index 11:" in str(info.value)


def test_invalid_prediction_inputs_raise_data_error(fitted: BetaGeoBetaBinom) -> None:
    with pytest.raises(DataError, match="frequency larger than recency"):
        fitted.p_alive(3, 2, 6)
    with pytest.raises(DataError, match="recency larger than n_periods"):
        fitted.expected_purchases(1, 1, 7, 6)
    with pytest.raises(DataError, match="n_future has 1 non-integer"):
        fitted.expected_purchases(1.5, 1, 1, 6)
    with pytest.raises(DataError, match="n has 1 negative"):
        fitted.expected_transactions([-1, 2])
