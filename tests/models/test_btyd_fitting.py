"""The fitting machinery of BG/NBD and MBG/NBD: the grouped likelihood with its exact
Hessian, row compression, and the coarse-to-fine fit used on large data."""

from __future__ import annotations

import importlib.resources
import warnings
from unittest import mock

import numpy as np
import pandas as pd
import pytest

from clvlab.models.btyd import (
    BetaGeo,
    BTYDConvergenceWarning,
    ModifiedBetaGeo,
    base,
    beta_geo_likelihood,
)
from clvlab.models.btyd.beta_geo import family_negative_log_likelihood
from clvlab.models.btyd.beta_geo_likelihood import GroupedHistories

POINTS = [
    np.log([0.2426, 4.4136, 0.7929, 2.4259]),  # FHL's CDNOW optimum
    np.log([2.0, 0.5, 3.0, 0.3]),
    np.array([0.3, -1.0, 1.5, 2.0]),
]


@pytest.fixture(scope="module")
def cdnow() -> pd.DataFrame:
    path = importlib.resources.files("lifetimes") / "datasets" / "cdnow_customers_summary.csv"
    with path.open() as handle:
        return pd.read_csv(handle)[["frequency", "recency", "T"]]


@pytest.mark.parametrize("initial_dropout", [False, True])
@pytest.mark.parametrize("log_params", POINTS)
def test_grouped_likelihood_equals_row_by_row(cdnow, initial_dropout, log_params):
    columns = [cdnow[c].to_numpy(dtype=float) for c in ("frequency", "recency", "T")]
    weights = np.random.default_rng(3).integers(1, 5, len(cdnow)).astype(float)
    grouped = GroupedHistories.build(base.compress(columns, weights), initial_dropout)
    value, grad, hess = grouped.nll(log_params, hessian=True)
    row_value, row_grad = family_negative_log_likelihood(
        log_params, *columns, weights, initial_dropout
    )
    assert value == pytest.approx(row_value, rel=1e-13)
    np.testing.assert_allclose(grad, row_grad, rtol=1e-10, atol=1e-9)
    plain_value, plain_grad = grouped.nll(log_params)
    assert plain_value == value
    np.testing.assert_array_equal(plain_grad, grad)
    numerical = base.numerical_hessian(lambda u: grouped.nll(u)[1], log_params)
    np.testing.assert_allclose(hess, numerical, rtol=1e-6, atol=1e-6 * np.abs(hess).max())
    np.testing.assert_array_equal(hess, hess.T)


def test_compress_rows_merges_equal_rows_and_sums_weights():
    x = np.array([1.0, 0.0, 1.0, 2.0, 1.0, 0.0])
    t = np.array([3.5, 0.0, 3.5, 7.0, 3.5, 0.0])
    T = np.array([10.0, 8.0, 10.0, 10.0, 10.0, 9.0])
    w = np.array([1.0, 2.0, 0.5, 1.0, 0.0, 1.0])
    out = pd.DataFrame(np.column_stack(base.compress_rows([x, t, T], w)), columns=[*"xtTw"])
    expected = pd.DataFrame(
        {"x": [1.0, 0.0, 2.0, 0.0], "t": [3.5, 0.0, 7.0, 0.0], "T": [10, 8, 10, 9.0]}
    ).assign(w=[1.5, 2.0, 1.0, 1.0])
    pd.testing.assert_frame_equal(out, expected)
    # whole numbers (days) take the arithmetic path; the same rows as by factorizing
    days = np.random.default_rng(0).integers(0, 900, (3, 5000)).astype(float)
    fast = base.compress_rows(list(days), np.ones(5000))
    slow = base.compress_rows(list(days + 0.5), np.ones(5000))
    np.testing.assert_array_equal(np.column_stack(fast[:3]) + 0.5, np.column_stack(slow[:3]))


@pytest.mark.parametrize("model", [BetaGeo, ModifiedBetaGeo])
def test_coarse_to_fine_fit_equals_direct_fit(cdnow, model):
    """Weights of 50 make 117,850 customers: the fit runs on a subsample first and polishes
    on all data; the optimum is that of the unweighted data, log-likelihood times 50."""
    direct = model().fit(cdnow)
    polished = []

    def spy(*args, **kwargs):
        polished.append(real_polish(*args, **kwargs))
        return polished[-1]

    real_polish = base.polish
    with mock.patch.object(base, "polish", spy):
        large = model().fit(cdnow, sample_weight=np.full(len(cdnow), 50.0))
    assert len(polished) == 1 and polished[0] is not None and polished[0].converged
    assert large.converged_
    pd.testing.assert_series_equal(large.params_, direct.params_, rtol=1e-7)
    assert large.log_likelihood_ == pytest.approx(50 * direct.log_likelihood_, rel=1e-12)
    pd.testing.assert_series_equal(large.stderr_ * np.sqrt(50), direct.stderr_, rtol=1e-5)


def test_coarse_to_fine_with_penalty_and_degenerate_data(cdnow):
    weights = np.full(len(cdnow), 50.0)
    direct = BetaGeo(penalizer_coef=0.01).fit(cdnow)
    large = BetaGeo(penalizer_coef=0.01).fit(cdnow, sample_weight=weights)
    # lifetimes' BG/NBD penalty is on the mean log-likelihood: weights do not change it
    pd.testing.assert_series_equal(large.params_, direct.params_, rtol=1e-7)
    one_timers = pd.DataFrame({"frequency": 0.0, "recency": 0.0, "T": np.linspace(1, 52, 500)})
    with pytest.warns(BTYDConvergenceWarning):
        model = BetaGeo().fit(one_timers, sample_weight=np.full(500, 1000.0))
    assert np.isfinite(model.params_).all() and np.isfinite(model.log_likelihood_)


def test_fit_is_reproducible(cdnow):
    weights = np.full(len(cdnow), 50.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        first = BetaGeo().fit(cdnow, sample_weight=weights)
        second = BetaGeo().fit(cdnow, sample_weight=weights)
    pd.testing.assert_series_equal(first.params_, second.params_, rtol=0)


@pytest.mark.parametrize("initial_dropout", [False, True])
def test_grouped_likelihood_is_the_same_in_parallel_chunks(cdnow, initial_dropout, monkeypatch):
    columns = [cdnow[c].to_numpy(dtype=float) for c in ("frequency", "recency", "T")]
    grouped = GroupedHistories.build(base.compress(columns, np.ones(len(cdnow))), initial_dropout)
    whole = grouped.nll(POINTS[0], hessian=True)
    monkeypatch.setattr(beta_geo_likelihood, "_CHUNK_ROWS", 300)
    assert len(grouped._chunks()) > 1
    chunked = grouped.nll(POINTS[0], hessian=True)
    assert chunked[0] == pytest.approx(whole[0], rel=1e-14)
    np.testing.assert_allclose(chunked[1], whole[1], rtol=1e-12, atol=1e-10)
    np.testing.assert_allclose(chunked[2], whole[2], rtol=1e-12)
