"""sBG: clvlab's ShiftedBetaGeometric against Fader & Hardie (2007, 2010)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import approx_fprime, check_grad
from scipy.special import betaln, hyp2f1
from sklearn.exceptions import NotFittedError

import clvlab.models.btyd as btyd
from clvlab.errors import ConfigError, DataError
from clvlab.models.contractual import ShiftedBetaGeometric
from clvlab.models.contractual.shifted_beta_geo import SubscriberRows, negative_log_likelihood

#: FH07: customers of each cohort still there at the start of years 1..8 (of 1000).
SURVIVORS = {
    "regular": [1000, 631, 468, 382, 326, 289, 262, 241],
    "high end": [1000, 869, 743, 653, 593, 551, 517, 491],
}
#: FH07's estimates from those 7 years.
PUBLISHED = {
    "regular": {"alpha": 0.704, "beta": 1.182},
    "high end": {"alpha": 0.668, "beta": 3.806},
}
#: Survivors (of 1000) after years 8..12, 1000 * S(t) at the published estimates, rounded to
#: 0.1 (derived here; FH07 plot this projection).
PROJECTED = {
    "regular": [220.1, 204.4, 191.2, 179.9, 170.1],
    "high end": [460.5, 435.8, 414.2, 395.1, 378.0],
}
#: The total log-likelihood at the optimum (measured here).
LOG_LIKELIHOOD = {"regular": -1680.2652, "high end": -1611.1581}


def cohort_table(survivors: list[int]) -> tuple[pd.DataFrame, np.ndarray]:
    """One row per (periods, churned) with its count: lost at the end of year t = 1..7, and
    the survivors of year 7 still active."""
    counts = np.array(survivors[:-1]) - np.array(survivors[1:])
    table = pd.DataFrame({"periods": [*range(1, 8), 7], "churned": [True] * 7 + [False]})
    return table, np.append(counts, survivors[-1]).astype(float)


@pytest.fixture(scope="module", params=list(SURVIVORS))
def cohort(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def fitted(cohort: str) -> ShiftedBetaGeometric:
    table, counts = cohort_table(SURVIVORS[cohort])
    return ShiftedBetaGeometric().fit(table, sample_weight=counts)


@pytest.fixture(scope="module")
def regular() -> ShiftedBetaGeometric:
    table, counts = cohort_table(SURVIVORS["regular"])
    return ShiftedBetaGeometric().fit(table, sample_weight=counts)


def at_params(alpha: float, beta: float) -> ShiftedBetaGeometric:
    """A model with the given parameters."""
    state = {"model": "ShiftedBetaGeometric", "params": {"alpha": alpha, "beta": beta}}
    return ShiftedBetaGeometric.from_dict(state)


def beta_survival(alpha: float, beta: float, t: np.ndarray) -> np.ndarray:
    """S(t) = B(alpha, beta + t) / B(alpha, beta), computed here."""
    return np.exp(betaln(alpha, beta + t) - betaln(alpha, beta))


# --- fit on FH07's cohorts ------------------------------------------------------------------


def test_fit_matches_published_estimates(fitted: ShiftedBetaGeometric, cohort: str) -> None:
    assert fitted.converged_
    assert list(fitted.params_.index) == ["alpha", "beta"]
    assert fitted.params_.round(3).to_dict() == PUBLISHED[cohort]
    assert fitted.log_likelihood_ == pytest.approx(LOG_LIKELIHOOD[cohort], abs=1e-3)
    assert fitted.stderr_.notna().all() and (fitted.stderr_ > 0).all()


def test_projected_survivors_match_published_projection(
    fitted: ShiftedBetaGeometric, cohort: str
) -> None:
    projected = 1000.0 * fitted.survival(np.arange(8, 13))
    np.testing.assert_allclose(projected, PROJECTED[cohort], atol=0.1)
    # and the 7 fitted years follow the cohort (the high end one is off by 18 in year 2)
    np.testing.assert_allclose(1000.0 * fitted.survival(np.arange(8)), SURVIVORS[cohort], atol=20)


def test_predictions_agree_with_each_other(regular: ShiftedBetaGeometric) -> None:
    alpha, beta = regular.params_
    t = np.arange(1, 30)
    survival = regular.survival(np.arange(40))
    np.testing.assert_allclose(survival, beta_survival(alpha, beta, np.arange(40)), rtol=1e-12)
    np.testing.assert_allclose(regular.churn_probability(t), survival[t - 1] - survival[t])
    np.testing.assert_allclose(regular.retention_rate(t), survival[t] / survival[t - 1])
    assert np.all(np.diff(regular.retention_rate(t)) > 0)  # heterogeneity: rates rise
    # conditioning on periods completed: S(n + t) / S(n) and P(T = n + t) / S(n)
    n = 5
    np.testing.assert_allclose(regular.survival(t, periods=n), survival[n + t] / survival[n])
    np.testing.assert_allclose(
        regular.churn_probability(t[:-n], periods=n),
        (survival[n + t[:-n] - 1] - survival[n + t[:-n]]) / survival[n],
    )
    assert regular.survival([[0], [3]], periods=[0, 2]).shape == (2, 2)


# --- likelihood and gradient ----------------------------------------------------------------


def test_gradient_and_hessian_match_finite_differences() -> None:
    rng = np.random.default_rng(7)
    periods = rng.integers(0, 40, size=200).astype(float)
    churned = (rng.random(200) < 0.6) & (periods >= 1)
    weights = rng.uniform(0.5, 3.0, size=200)
    rows = SubscriberRows(periods, churned.astype(float), weights)
    for point in (np.log([0.7, 1.2]), np.log([5.0, 0.3]), np.log([0.05, 40.0])):

        def value(u: np.ndarray) -> float:
            return negative_log_likelihood(u, periods, churned, weights)[0]

        def grad(u: np.ndarray) -> np.ndarray:
            return negative_log_likelihood(u, periods, churned, weights)[1]

        scale = np.abs(grad(point)).max() + 1.0
        assert check_grad(value, grad, point, epsilon=1e-6) / scale < 1e-5
        _, hess_grad, hess = rows.hessian(point)
        np.testing.assert_allclose(hess_grad, grad(point))
        numeric = np.array([approx_fprime(point, lambda u, i=i: grad(u)[i], 1e-6) for i in (0, 1)])
        np.testing.assert_allclose(hess, numeric, rtol=1e-4, atol=1e-4)


def test_sample_weight_equals_repeated_rows() -> None:
    table, counts = cohort_table(SURVIVORS["regular"])
    weighted = ShiftedBetaGeometric().fit(table, sample_weight=counts)
    repeated = table.loc[table.index.repeat(counts.astype(int))].reset_index(drop=True)
    repeated["churned"] = repeated["churned"].astype(int)  # 0/1 works as bool does
    unweighted = ShiftedBetaGeometric().fit(repeated)
    assert len(repeated) == 1000
    np.testing.assert_allclose(unweighted.params_, weighted.params_, rtol=1e-6)
    assert unweighted.log_likelihood_ == pytest.approx(weighted.log_likelihood_, rel=1e-10)
    np.testing.assert_allclose(unweighted.stderr_, weighted.stderr_, rtol=1e-4)


def test_active_subscribers_in_their_first_period_change_nothing() -> None:
    table, counts = cohort_table(SURVIVORS["high end"])
    base = ShiftedBetaGeometric().fit(table, sample_weight=counts)
    newcomers = pd.concat([table, pd.DataFrame({"periods": [0], "churned": [False]})])
    more = ShiftedBetaGeometric().fit(newcomers, sample_weight=np.append(counts, 500))
    np.testing.assert_allclose(more.params_, base.params_, rtol=1e-6)


@pytest.mark.filterwarnings("ignore:.*Hessian of the log-likelihood is singular")
def test_no_churn_warns() -> None:
    table = pd.DataFrame({"periods": [3, 5], "churned": [False, False]})
    with pytest.warns(btyd.BTYDConvergenceWarning, match="no subscriber churned"):
        ShiftedBetaGeometric().fit(table)


def test_penalizer_shrinks_parameters() -> None:
    table, counts = cohort_table(SURVIVORS["high end"])
    plain = ShiftedBetaGeometric().fit(table, sample_weight=counts)
    penalized = ShiftedBetaGeometric(penalizer_coef=0.01).fit(table, sample_weight=counts)
    assert penalized.params_["beta"] < plain.params_["beta"]
    assert penalized.log_likelihood_ < plain.log_likelihood_


# --- DERL -----------------------------------------------------------------------------------


def truncated_derl(alpha: float, beta: float, n: int, d: float, terms: int) -> float:
    """sum_{k=1}^{terms} S(n + k | T > n) (1 + d)^-(k - 1), with the survival ratio as a sum
    of log1p terms (accurate for large beta as well)."""
    j = np.arange(terms, dtype=float)
    # log S(n + k | T > n) = sum_{i=0}^{k-1} log((beta + n + i) / (alpha + beta + n + i))
    log_survival = np.cumsum(np.log1p(-alpha / (alpha + beta + n + j)))
    return float(np.sum(np.exp(log_survival - j * np.log1p(d))))


def test_derl_matches_truncated_sum_and_hyp2f1(regular: ShiftedBetaGeometric) -> None:
    alpha, beta = regular.params_
    for d in (1.0, 0.1, 0.01):
        for n in (0, 1, 7, 30):
            derl = float(regular.expected_residual_lifetime(d, periods=n))
            assert derl == pytest.approx(truncated_derl(alpha, beta, n, d, 20_000), rel=1e-11)
            # FH10 eq. 6, whose n counts the current period: n + 1 here
            big_n = n + 1
            fh10 = (beta + big_n - 1) / (alpha + beta + big_n - 1)
            fh10 *= hyp2f1(1.0, beta + big_n, alpha + beta + big_n, 1.0 / (1.0 + d))
            assert derl == pytest.approx(fh10, rel=1e-11)
    grid = regular.expected_residual_lifetime([[0.1], [0.01]], periods=[0, 7])
    assert grid.shape == (2, 2) and np.all(np.diff(grid, axis=1) > 0)


def test_derl_where_hyp2f1_fails() -> None:
    """Low, homogeneous churn (beta in the thousands) and alpha = 1: scipy's hyp2f1 gives NaN
    or a wrong value there; the quadrature does not."""
    cases = [(5.0, 2000.0, 0.01), (0.7, 1e5, 0.001), (1.0, 0.2, 0.001), (50.0, 3.0, 1e-4)]
    for alpha, beta, d in cases:
        model = at_params(alpha, beta)
        expected = truncated_derl(alpha, beta, 3, d, int(60 / d))
        assert float(model.expected_residual_lifetime(d, 3)) == pytest.approx(expected, rel=1e-10)


def test_undiscounted_derl(regular: ShiftedBetaGeometric) -> None:
    # alpha < 1: E[1 / theta] is infinite, so is the undiscounted residual lifetime
    assert np.isinf(regular.expected_residual_lifetime(0.0, 4))
    model = at_params(3.0, 8.0)
    assert float(model.expected_residual_lifetime(0.0, 4)) == pytest.approx(12.0 / 2.0)
    assert float(model.expected_residual_lifetime(1e-7, 4)) == pytest.approx(6.0, rel=1e-5)


# --- persistence ----------------------------------------------------------------------------


def test_json_round_trip(regular: ShiftedBetaGeometric) -> None:
    state = json.loads(json.dumps(regular.to_dict()))
    assert state["model"] == "ShiftedBetaGeometric"
    restored = ShiftedBetaGeometric.from_dict(state)
    pd.testing.assert_series_equal(restored.params_, regular.params_)
    pd.testing.assert_series_equal(restored.stderr_, regular.stderr_)
    assert restored.log_likelihood_ == regular.log_likelihood_
    np.testing.assert_array_equal(
        restored.expected_residual_lifetime(0.1, [0, 3]),
        regular.expected_residual_lifetime(0.1, [0, 3]),
    )
    unfitted = ShiftedBetaGeometric.from_dict(ShiftedBetaGeometric(penalizer_coef=0.5).to_dict())
    assert unfitted.penalizer_coef == 0.5 and not hasattr(unfitted, "params_")
    with pytest.raises(NotFittedError):
        unfitted.survival(1)
    with pytest.raises(ConfigError, match="ShiftedBetaGeometric"):
        ShiftedBetaGeometric.from_dict({**state, "model": "BetaGeo"})


# --- bad input ------------------------------------------------------------------------------


GOOD = {"periods": [1, 2, 3], "churned": [True, False, True]}


@pytest.mark.parametrize(
    ("change", "column", "problem"),
    [
        ({"periods": [1, -2, 3]}, "periods", "negative"),
        ({"periods": [1, 2.5, 3]}, "periods", "non-integer"),
        ({"periods": [1, np.nan, 3]}, "periods", "missing"),
        ({"periods": ["1", "2", "3"]}, "periods", "not a number"),
        ({"periods": [True, False, True]}, "periods", "not a number"),
        ({"churned": [True, None, False]}, "churned", "missing or not True/False"),
        ({"churned": [1, 2, 0]}, "churned", "missing or not True/False"),
        ({"churned": ["yes", "no", "yes"]}, "churned", "not bool or 0/1|not True/False"),
        ({"churned": pd.array([True, None, False], dtype="boolean")}, "churned", "missing"),
        ({"periods": [0, 2, 3]}, "churned", "churned with periods 0"),
    ],
)
def test_bad_input_names_the_column(change: dict[str, object], column: str, problem: str) -> None:
    table = pd.DataFrame({**GOOD, **change})
    with pytest.raises(DataError, match=problem) as info:
        ShiftedBetaGeometric().fit(table)
    assert f"'{column}'" in str(info.value)


def test_bad_tables() -> None:
    with pytest.raises(DataError, match=r"lacks column\(s\) \['churned'\]"):
        ShiftedBetaGeometric().fit(pd.DataFrame({"periods": [1]}))
    with pytest.raises(DataError, match="no rows"):
        ShiftedBetaGeometric().fit(pd.DataFrame({"periods": [], "churned": []}))
    with pytest.raises(DataError, match="DataFrame"):
        ShiftedBetaGeometric().fit(GOOD)  # type: ignore[arg-type]
    with pytest.raises(DataError, match="sample_weight"):
        ShiftedBetaGeometric().fit(pd.DataFrame(GOOD), sample_weight=[1.0, -1.0, 1.0])


def test_bad_prediction_arguments(regular: ShiftedBetaGeometric) -> None:
    with pytest.raises(DataError, match="t has"):
        regular.churn_probability(0)
    with pytest.raises(DataError, match="t has"):
        regular.survival(1.5)
    with pytest.raises(DataError, match="periods has"):
        regular.survival(1, periods=-1)
    with pytest.raises(DataError, match="discount_rate"):
        regular.expected_residual_lifetime(-0.1)
    with pytest.raises(DataError, match="NaN"):
        regular.retention_rate(np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        regular.expected_residual_lifetime([0.1, 0.0], periods=[0, 0])  # no warnings
