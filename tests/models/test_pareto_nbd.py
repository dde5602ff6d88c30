"""Pareto/NBD: clvlab's ParetoNBD against FHL (2005), lifetimes, references and simulation.

What every purchase model must do alike (recovery, serialization, invalid input) is
checked in test_purchase_models.py.
"""

from __future__ import annotations

import itertools
import math
from decimal import Decimal, localcontext

import numpy as np
import pandas as pd
import pytest
from lifetimes import ParetoNBDFitter
from scipy import integrate
from scipy.optimize import check_grad

from clvlab.errors import DataError
from clvlab.models.btyd.base import FitProblem, penalized_objective
from clvlab.models.btyd.pareto_nbd import (
    ParetoNBD,
    _log_hyp2f1_unit,
    _log_integral,
    log_hyp2f1,
    negative_log_likelihood,
)
from simulators import simulate_pareto_nbd

#: Fader, Hardie & Lee (2005, MATLAB note), CDNOW sample, 39-week calibration period.
PUBLISHED = {"r": 0.5532, "alpha": 10.5763, "s": 0.6062, "beta": 11.6715}
PUBLISHED_LL = -9594.98
NAMES = ["r", "alpha", "s", "beta"]


def _with_params(params: dict[str, float]) -> ParetoNBD:
    return ParetoNBD.from_dict({"model": "ParetoNBD", "params": dict(params)})


def _lifetimes_with_params(params: dict[str, float]) -> ParetoNBDFitter:
    fitter = ParetoNBDFitter()
    fitter.params_ = pd.Series(params)[NAMES]
    return fitter


def _columns(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return tuple(frame[c].to_numpy(dtype=float) for c in ("frequency", "recency", "T"))


@pytest.fixture(scope="module")
def fitted(cdnow: pd.DataFrame) -> ParetoNBD:
    return ParetoNBD().fit(cdnow)


@pytest.fixture(scope="module")
def lifetimes_fitted(cdnow: pd.DataFrame) -> ParetoNBDFitter:
    # lifetimes starts Nelder-Mead from a random point unless given one.
    return ParetoNBDFitter().fit(*_columns(cdnow), initial_params=np.ones(4))


# --- fit on CDNOW --------------------------------------------------------------------------


def test_cdnow_fit_matches_published_values(fitted: ParetoNBD) -> None:
    assert fitted.converged_
    assert list(fitted.params_.index) == NAMES
    for name, value in PUBLISHED.items():
        assert fitted.params_[name] == pytest.approx(value, rel=1e-3), name
    assert fitted.log_likelihood_ == pytest.approx(PUBLISHED_LL, abs=0.01)
    assert fitted.n_iter_ > 0
    assert np.isfinite(fitted.stderr_).all() and (fitted.stderr_ > 0).all()


def test_cdnow_fit_matches_lifetimes(
    fitted: ParetoNBD, lifetimes_fitted: ParetoNBDFitter, cdnow: pd.DataFrame
) -> None:
    theirs = lifetimes_fitted.params_[NAMES].to_numpy()
    np.testing.assert_allclose(fitted.params_.to_numpy(), theirs, rtol=1e-4)
    # lifetimes fits on rescaled time (its Nelder-Mead stops at tol 1e-4); its static NLL
    # on the original data is the same function as ours: our optimum is at least as good.
    args = _columns(cdnow)
    n = len(cdnow)
    their_ll = -ParetoNBDFitter._negative_log_likelihood(theirs, *args, np.ones(n), 0.0)
    ours_in_their_function = -ParetoNBDFitter._negative_log_likelihood(
        fitted.params_.to_numpy(), *args, np.ones(n), 0.0
    )
    assert ours_in_their_function == pytest.approx(fitted.log_likelihood_, abs=1e-8)
    assert fitted.log_likelihood_ >= their_ll - 1e-8


def test_standard_errors_match_hessian_of_lifetimes_likelihood(
    fitted: ParetoNBD, cdnow: pd.DataFrame
) -> None:
    """lifetimes reports no standard errors: differentiate its NLL twice numerically."""
    args = _columns(cdnow)
    ones = np.ones(len(cdnow))
    log_theta = np.log(fitted.params_.to_numpy())

    def nll(lp: np.ndarray) -> float:
        return ParetoNBDFitter._negative_log_likelihood(np.exp(lp), *args, ones, 0.0)

    h = 1e-3
    hess = np.empty((4, 4))
    for i, j in np.ndindex(4, 4):
        ei, ej = np.eye(4)[i] * h, np.eye(4)[j] * h
        hess[i, j] = (
            nll(log_theta + ei + ej)
            - nll(log_theta + ei - ej)
            - nll(log_theta - ei + ej)
            + nll(log_theta - ei - ej)
        ) / (4 * h * h)
    se = np.exp(log_theta) * np.sqrt(np.diag(np.linalg.inv(hess)))
    np.testing.assert_allclose(fitted.stderr_.to_numpy(), se, rtol=1e-3)


def test_log_likelihood_equals_lifetimes_at_arbitrary_points(cdnow: pd.DataFrame) -> None:
    args = _columns(cdnow)
    n = len(cdnow)
    points = ([0.0, 0.0, 0.0, 0.0], [-1.5, 1.2, -0.3, 0.9], [1.0, 3.0, 2.0, -2.0], [0, 2, 0, 2.1])
    for log_params in points:
        ours, _ = negative_log_likelihood(np.array(log_params), *args)
        theirs = ParetoNBDFitter._negative_log_likelihood(
            np.exp(log_params), *args, np.ones(n), 0.0
        )
        assert ours == pytest.approx(theirs, rel=1e-10)


@pytest.mark.parametrize("penalizer", [0.01, 1.0])
def test_penalized_fit_matches_lifetimes(
    cdnow: pd.DataFrame, fitted: ParetoNBD, penalizer: float
) -> None:
    """lifetimes' ParetoNBD penalty is added to the total NLL, in units of max(T)."""
    args = _columns(cdnow)
    n = len(cdnow)
    ours = ParetoNBD(penalizer_coef=penalizer).fit(cdnow)
    theirs = ParetoNBDFitter(penalizer_coef=penalizer).fit(*args, initial_params=np.ones(4))
    scale = 1.0 / args[2].max()

    def their_objective(params: np.ndarray) -> float:
        scaled = np.array(params, dtype=float) * [1.0, scale, 1.0, scale]
        return ParetoNBDFitter._negative_log_likelihood(
            scaled, args[0], args[1] * scale, args[2] * scale, np.ones(n), penalizer
        )

    mine, lifetimes_params = ours.params_.to_numpy(), theirs.params_[NAMES].to_numpy()
    np.testing.assert_allclose(mine, lifetimes_params, rtol=3e-4)
    assert their_objective(mine) <= their_objective(lifetimes_params) + 1e-8
    # log_likelihood_ excludes the penalty: the penalized fit's LL is below the MLE's.
    assert ours.log_likelihood_ < fitted.log_likelihood_


# --- the hypergeometric function and the A0 integral -------------------------------------


def _decimal_hyp2f1(a: float, b: float, z: float) -> float:
    """ln 2F1(a, b; a + 1; z) by its series in 40-digit decimal arithmetic."""
    with localcontext() as ctx:
        ctx.prec = 40
        a_, b_, z_ = Decimal(a), Decimal(b), Decimal(z)
        term = total = Decimal(1)
        k = 0
        while True:
            term = term * (a_ + k) * (b_ + k) / ((a_ + 1 + k) * (k + 1)) * z_
            total += term
            k += 1
            if k > 20 and term < total * Decimal("1e-32"):
                return float(total.ln())


def _quad_log_integral(p: float, q: float, big: float, small: float, lo: float, hi: float) -> float:
    """ln of int_lo^hi (P + y)^-p (Q + y)^-q dy by adaptive quadrature in w = ln(Q + y).

    The log-integrand is shifted by its maximum on a fine grid, and the range is cut in
    half-unit pieces (plus the tail), each integrated to a relative 1e-13.
    """
    w_a, w_b = math.log(small + lo), math.log(small + hi) if math.isfinite(hi) else math.inf
    diff = big - small

    def log_f(w: np.ndarray) -> np.ndarray:
        return -p * np.logaddexp(math.log(diff), w) + (1 - q) * w

    end = min(w_b, w_a + 80.0)
    grid = np.linspace(w_a, end, 400_001)
    top = float(log_f(grid).max())
    edges = [*np.arange(w_a, end, 0.5), end]
    total = 0.0
    for lo_w, hi_w in itertools.pairwise(edges):
        total += integrate.quad(
            lambda w: math.exp(log_f(np.array(w)) - top),
            lo_w,
            hi_w,
            epsabs=0,
            epsrel=1e-13,
            limit=200,
        )[0]
    if w_b > end:
        total += integrate.quad(
            lambda w: math.exp(log_f(np.array(w)) - top),
            end,
            w_b,
            epsabs=0,
            epsrel=1e-13,
            limit=200,
        )[0]
    return top + math.log(total)


@pytest.mark.parametrize(
    ("a", "b", "z"),
    [
        (1.5, 1.6, 0.3),
        (1.5, 1.6, 0.59),  # series
        (1.5, 1.6, 0.61),  # quadrature + series
        (0.7, 1.2, 0.99),
        (3.0, 2.0, 0.999),
        (10.2, 0.5, 0.95),
        (0.6, 0.55, 0.999),
        (100_000.6, 1.6, 0.9),  # large x
        (100_000.6, 1.6, 0.3),
    ],
)
def test_log_hyp2f1_equals_decimal_series(a: float, b: float, z: float) -> None:
    assert float(log_hyp2f1(a, b, z)) == pytest.approx(_decimal_hyp2f1(a, b, z), rel=1e-14)


@pytest.mark.filterwarnings("ignore::scipy.integrate.IntegrationWarning")
@pytest.mark.parametrize(
    ("a", "b", "z"),
    [
        (5.5, 1.6, 0.9999),
        (1.2, 0.9, 1 - 1e-8),  # z near 1, b < 1
        (100_000.6, 1.6, 1 - 1e-6),  # large x, z near 1
        (100_001.0, 100_000.0, 0.5),  # alpha < beta branch: b = r + x huge
        (100_001.0, 100_000.0, 0.99),
        (0.05, 0.02, 0.999999),
    ],
)
def test_log_hyp2f1_equals_quadrature_in_hard_regions(a: float, b: float, z: float) -> None:
    want = math.log(a) + _quad_log_integral(a + 1 - b, b, 1.0, 1.0 - z, 0.0, math.inf)
    assert float(log_hyp2f1(a, b, z)) == pytest.approx(want, rel=1e-12)


def test_log_hyp2f1_vectorized_and_at_zero() -> None:
    a = np.array([[1.5], [7.0]])
    z = np.array([0.0, 0.2, 0.7, 0.95])
    got = log_hyp2f1(a, 1.6, z)
    assert got.shape == (2, 4)
    assert (got[:, 0] == 0.0).all()
    for i, j in np.ndindex(2, 4):
        assert got[i, j] == pytest.approx(_decimal_hyp2f1(float(a[i, 0]), 1.6, z[j]), rel=1e-14)
    with pytest.raises(ValueError):
        log_hyp2f1(1.0, 1.0, 1.0)


def test_hyp2f1_series_derivatives() -> None:
    p = np.array([0.3, 1.0, 40.0, 1e5, 2.5])
    q = np.array([1.6, 0.2, 3.0, 1.5, 1e5])
    z = np.array([0.59, 0.0, 0.3, 0.5, 0.6])
    _, d_p, d_q, d_z = _log_hyp2f1_unit(p, q, z)
    h = 1e-6
    for got, (sp, sq, sz) in ((d_p, (h * p, 0, 0)), (d_q, (0, h * q, 0)), (d_z, (0, 0, h))):
        up = _log_hyp2f1_unit(p + sp, q + sq, z + sz)[0]
        down = _log_hyp2f1_unit(p - sp, q - sq, z - sz)[0]
        step = np.broadcast_to(np.asarray(sp + sq + sz, dtype=float), p.shape)
        np.testing.assert_allclose(got, (up - down) / (2 * step), rtol=1e-6, atol=1e-9)


@pytest.mark.filterwarnings("ignore::scipy.integrate.IntegrationWarning")
@pytest.mark.parametrize(
    "params",
    [
        (0.5532, 10.5763, 0.6062, 11.6715),  # CDNOW: alpha < beta, series only
        (0.5, 1000.0, 0.6, 0.01),  # alpha >> beta: z near 1, quadrature
        (0.5, 0.01, 2.0, 1000.0),  # beta >> alpha
        (0.3, 1e4, 0.05, 1e-3),
    ],
)
def test_a0_integral_equals_quadrature(params: tuple[float, float, float, float]) -> None:
    r, alpha, s, beta = params
    x = np.array([0.0, 0.0, 1.0, 5.0, 1000.0, 100_000.0, 100_000.0])
    lower = np.array([0.0, 0.0, 0.0, 20.0, 0.0, 0.0, 38.0])
    upper = np.array([39.0, 10_000.0, 39.0, 39.0, 39.0, 39.0, 39.0])
    got, _ = _log_integral(params, x, lower, upper)
    big, small = max(alpha, beta), min(alpha, beta)
    for i in range(x.size):
        p, q = (r + x[i], s + 1.0) if alpha >= beta else (s + 1.0, r + x[i])
        want = _quad_log_integral(p, q, big, small, lower[i], upper[i])
        assert got[i] == pytest.approx(want, rel=1e-11, abs=1e-11), i
    # A short interval (recency just below T) is integrated directly, not as a difference
    # of two nearly equal tails; reference: Simpson's rule in 50-digit arithmetic.
    for x_i, lo, width in ((2.0, 1.0, 1e-6), (0.0, 0.0, 1e-9), (100_000.0, 38.0, 1e-7)):
        hi = lo + width
        got_short, _ = _log_integral(params, np.array([x_i]), np.array([lo]), np.array([hi]))
        with localcontext() as ctx:
            ctx.prec = 50
            a_, b_ = Decimal(r) + Decimal(x_i), Decimal(s) + 1
            lo_, hi_ = Decimal(lo), Decimal(hi)  # exact binary values

            def f(y: Decimal, a_: Decimal = a_, b_: Decimal = b_) -> Decimal:
                return (Decimal(alpha) + y) ** -a_ * (Decimal(beta) + y) ** -b_

            h = (hi_ - lo_) / 8
            simpson = (
                sum(
                    (f(lo_ + 2 * k * h) + 4 * f(lo_ + (2 * k + 1) * h) + f(lo_ + (2 * k + 2) * h))
                    for k in range(4)
                )
                * h
                / 3
            )
            want = float(simpson.ln())
        assert float(got_short[0]) == pytest.approx(want, rel=1e-13), (x_i, lo, width)


# --- gradient --------------------------------------------------------------------------------


def test_analytic_gradient_matches_finite_differences(cdnow: pd.DataFrame) -> None:
    extra_x = [0, 1, 1000, 1000, 1000, 100_000, 100_000, 5]
    extra_tx = [0.0, 38.0, 0.0, 20.0, 39.0, 0.0, 39.0, 39.0]
    extra_T = [39.0, 39.0, 39.0, 39.0, 39.0, 39.0, 10_000.0, 39.0]
    x = np.concatenate([cdnow["frequency"].to_numpy(), extra_x])
    t_x = np.concatenate([cdnow["recency"].to_numpy(), extra_tx])
    T = np.concatenate([cdnow["T"].to_numpy(), extra_T])
    w = np.linspace(0.5, 2.0, len(x))
    rng = np.random.default_rng(3)
    points = [
        np.log(list(PUBLISHED.values())),
        np.log([0.5, 1000.0, 0.6, 0.01]),  # the quadrature branch for most rows
        np.log([0.5, 0.01, 2.0, 1000.0]),
        np.log([5.0, 5.0, 1.0, 5.0 + 1e-9]),  # alpha = beta: the two branches meet
        *rng.normal(0.0, 2.0, (3, 4)),
    ]
    for log_params in points:

        def value(lp: np.ndarray) -> float:
            return negative_log_likelihood(lp, x, t_x, T, w)[0]

        grad = negative_log_likelihood(log_params, x, t_x, T, w)[1]
        scale = np.linalg.norm(grad) + 1.0
        # Fourth-order central differences: truncation ~h^4, rounding ~eps |NLL| / h.
        h = 1e-4
        fd = np.array(
            [
                (-value(log_params + 2 * h * e) + 8 * value(log_params + h * e))
                - (8 * value(log_params - h * e) - value(log_params - 2 * h * e))
                for e in np.eye(4)
            ]
        ) / (12 * h)
        np.testing.assert_allclose(grad, fd, rtol=1e-7, atol=1e-9 * scale + 1e-6)


def test_check_grad_on_cdnow(cdnow: pd.DataFrame) -> None:
    x, t_x, T = _columns(cdnow)
    log_params = np.log(list(PUBLISHED.values())) + 0.1

    def value(lp: np.ndarray) -> float:
        return negative_log_likelihood(lp, x, t_x, T)[0]

    def grad(lp: np.ndarray) -> np.ndarray:
        return negative_log_likelihood(lp, x, t_x, T)[1]

    assert (
        check_grad(value, grad, log_params, epsilon=1e-7) / (np.linalg.norm(grad(log_params)) + 1)
        < 1e-4
    )


def test_penalized_objective_gradient(cdnow: pd.DataFrame) -> None:
    x, t_x, T = _columns(cdnow)
    problem = FitProblem(
        nll=lambda lp: negative_log_likelihood(lp, x, t_x, T),
        total_weight=float(len(x)),
        log_offset=np.array([0.0, np.log(39.0), 0.0, np.log(39.0)]),
        penalty_scale=np.array([1.0, 1 / 39.0, 1.0, 1 / 39.0]) / np.sqrt(len(x)),
    )
    objective = penalized_objective(problem, 0.3)
    for u in ([0.1, 0.1, 0.1, 0.1], [-1.0, -2.0, 0.5, 1.5]):
        u = np.array(u)
        assert check_grad(lambda v: objective(v)[0], lambda v: objective(v)[1], u) < 1e-5


# --- predictions vs FHL and lifetimes ------------------------------------------------------


def test_conditional_pmf_equals_lifetimes(
    cdnow: pd.DataFrame, lifetimes_fitted: ParetoNBDFitter
) -> None:
    ours = _with_params(lifetimes_fitted.params_[NAMES].to_dict())
    sample = cdnow.iloc[::12]
    x, t_x, T = _columns(sample)
    for n in (0, 1, 2, 5):
        theirs = lifetimes_fitted.conditional_probability_of_n_purchases_up_to_time(
            n, 39.0, x, t_x, T
        )
        np.testing.assert_allclose(ours.p_purchases(n, 39.0, x, t_x, T), theirs, rtol=1e-6)


def test_conditional_pmf_is_consistent(fitted: ParetoNBD) -> None:
    x = np.array([0.0, 1.0, 2.0, 7.0, 20.0])
    t_x = np.array([0.0, 30.0, 10.0, 38.0, 36.0])
    T, t = 38.86, 39.0
    n = np.arange(0, 260)[:, None]
    pmf = fitted.p_purchases(n, t, x, t_x, T)
    assert pmf.shape == (260, 5)
    np.testing.assert_allclose(pmf.sum(axis=0), 1.0, atol=1e-10)
    np.testing.assert_allclose(
        (n * pmf).sum(axis=0), fitted.expected_purchases(t, x, t_x, T), rtol=1e-9
    )
    np.testing.assert_allclose(pmf[0], fitted.p_churn(t, x, t_x, T), rtol=1e-12)
    # Empty window and huge counts.
    assert float(fitted.p_purchases(0, 0.0, 3, 20.0, T)) == 1.0
    assert float(fitted.p_purchases(2, 0.0, 3, 20.0, T)) == 0.0
    big = fitted.p_purchases([0, 1000, 100_000], 39.0, 100_000, 38.0, T)
    assert np.isfinite(big).all() and (big >= 0).all() and (big <= 1).all()
    with pytest.raises(DataError, match="whole numbers"):
        fitted.p_purchases(1.5, 39.0, 1, 2.0, T)


@pytest.mark.parametrize(
    ("params", "t", "top"),
    [
        (PUBLISHED, 39.0, 260),  # weeks, the holdout
        (PUBLISHED, 520.0, 400),  # ten years ahead
        ({"r": 0.96, "alpha": 40.2, "s": 0.96, "beta": 255.4}, 3650.0, 400),  # days, 10 years
        ({"r": 5.0, "alpha": 2.0, "s": 3.0, "beta": 0.5}, 39.0, 400),  # quick buyers, quick exits
    ],
)
def test_pmf_by_count_equals_pmf(cdnow: pd.DataFrame, params, t: float, top: int) -> None:
    """The dropout integral shared by all counts (one Gauss-Legendre rule) gives
    p_purchases' values, from the adaptive quadrature of each count, to 1e-10."""
    model = _with_params(params)
    rows = cdnow.iloc[np.r_[0 : len(cdnow) : 60, np.argsort(-cdnow["frequency"].to_numpy())[:5]]]
    x, t_x, T = _columns(rows)
    counts = np.arange(top + 1)
    shared = model.p_purchases_by_count(counts, t, x, t_x, T)
    one_by_one = model.p_purchases(counts[:, None], t, x, t_x, T)
    assert shared.shape == (top + 1, len(rows))
    np.testing.assert_allclose(shared, one_by_one, rtol=1e-10, atol=1e-15)


def test_new_customer_predictions() -> None:
    model = _with_params(PUBLISHED)
    theirs = _lifetimes_with_params(PUBLISHED)
    t = np.array([0.0, 0.5, 1.0, 10.0, 39.0, 78.0, 500.0])
    np.testing.assert_allclose(
        model.expected_purchases_new_customer(t),
        theirs.expected_number_of_purchases_up_to_time(t),
        rtol=1e-10,
        atol=1e-14,
    )
    # A new customer is a customer with x = t_x = T = 0.
    np.testing.assert_allclose(model.p_no_purchase_new_customer(t), model.p_churn(t, 0, 0, 0))
    np.testing.assert_allclose(
        model.p_no_purchase_new_customer(t), model.p_purchases(0, t, 0, 0, 0), rtol=1e-12
    )
    np.testing.assert_allclose(
        model.expected_purchases_new_customer(t), model.expected_purchases(t, 0, 0, 0)
    )
    # P(X(t) = 0) is the likelihood of x = 0 on (0, t].
    for age in (0.5, 39.0, 500.0):
        ll, _ = negative_log_likelihood(np.log(list(PUBLISHED.values())), [0.0], [0.0], [age])
        assert float(model.p_no_purchase_new_customer(age)) == pytest.approx(np.exp(-ll))


def test_expected_purchases_continuous_at_s_equal_one() -> None:
    near = [_with_params({**PUBLISHED, "s": 1.0 + d}) for d in (-1e-9, 0.0, 1e-9)]
    values = [m.expected_purchases(39.0, 3, 20.0, 38.86) for m in near]
    assert np.isfinite(values).all()
    assert values[0] == pytest.approx(values[1], rel=1e-8)
    assert values[2] == pytest.approx(values[1], rel=1e-8)


def test_predictions_match_simulation() -> None:
    """Averages of the conditional predictions equal simulated outcomes within each x."""
    rng = np.random.default_rng(2024)
    horizon = 39.0
    n = 200_000
    sim = simulate_pareto_nbd(rng, n, PUBLISHED, T=rng.uniform(30.0, 40.0, n), horizon=horizon)
    model = _with_params(PUBLISHED)
    x, t_x, T = _columns(sim)
    churn = model.p_churn(horizon, x, t_x, T)
    predicted = {
        "alive": model.p_alive(x, t_x, T),
        "churn": churn,
        "future": model.expected_purchases(horizon, x, t_x, T),
    }
    # The PMF integrates numerically per customer: check it on every 4th.
    every = slice(None, None, 4)
    one = np.full(n, np.nan)
    one[every] = model.p_purchases(1, horizon, x[every], t_x[every], T[every])
    predicted["one"] = one
    future = sim["future"].to_numpy()
    observed = {
        "alive": sim["alive"].to_numpy(dtype=float),
        "churn": (future == 0).astype(float),
        "future": future.astype(float),
        "one": (future == 1).astype(float),
    }
    groups = {"x=0": x == 0, "x=1": x == 1, "x=2": x == 2, "x=3-5": (x >= 3) & (x <= 5)}
    r, alpha, s, beta = PUBLISHED.values()
    alive = predicted["alive"]
    naive = (
        1
        - alive
        + alive
        * ((alpha + T) / (alpha + T + horizon)) ** (r + x)
        * ((beta + T) / (beta + T + horizon)) ** s
    )
    quarter = np.zeros(n, dtype=bool)
    quarter[every] = True
    for label, group in groups.items():
        for key in predicted:
            mask = group & quarter if key == "one" else group
            obs = observed[key][mask]
            se = obs.std() / np.sqrt(mask.sum())
            gap = abs(predicted[key][mask].mean() - obs.mean())
            assert gap < 4 * se + 1e-3, (label, key, gap, se)
        mask = group
        # Ignoring dropout inside the window underestimates P(no purchase) by far.
        se = observed["churn"][mask].std() / np.sqrt(mask.sum())
        assert observed["churn"][mask].mean() - naive[mask].mean() > 10 * se, label


def test_p_churn_limits(fitted: ParetoNBD) -> None:
    x, t_x, T = 3.0, 20.0, 38.86
    alive = float(fitted.p_alive(x, t_x, T))
    assert float(fitted.p_churn(0.0, x, t_x, T)) == 1.0
    # An endless window: a customer alive at T buys unless dying before the first purchase,
    # which happens with probability E[mu / (lambda + mu)] under the posterior.
    r, alpha, s, beta = fitted.params_.to_numpy()
    lam = np.random.default_rng(5).gamma(r + x, 1 / (alpha + T), 400_000)
    mu = np.random.default_rng(6).gamma(s, 1 / (beta + T), 400_000)
    first_death = float(np.mean(mu / (lam + mu)))
    assert float(fitted.p_churn(1e9, x, t_x, T)) == pytest.approx(
        1 - alive + alive * first_death, abs=2e-3
    )
    times = np.linspace(0.0, 500.0, 60)
    assert (np.diff(fitted.p_churn(times, x, t_x, T)) < 0).all()


# --- edge inputs (more in test_purchase_models.py) ---------------------------------------


def test_predictions_for_huge_frequency(fitted: ParetoNBD) -> None:
    r, alpha = fitted.params_["r"], fitted.params_["alpha"]
    # A very frequent buyer seen at T is alive and buys about (r + x) / (alpha + T) a week.
    assert float(fitted.p_alive(100_000, 38.86, 38.86)) == 1.0
    weekly = float(fitted.expected_purchases(1.0, 100_000, 38.86, 38.86))
    assert weekly == pytest.approx((r + 100_000) / (alpha + 38.86), rel=0.01)
    # ...and one silent for half the period is gone.
    assert float(fitted.p_alive(100_000, 19.0, 38.86)) < 1e-100
