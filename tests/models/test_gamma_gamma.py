"""Gamma-Gamma: clvlab's GammaGamma against FHL (2005), lifetimes and simulation."""

from __future__ import annotations

import importlib.resources
import json
import warnings

import numpy as np
import pandas as pd
import pytest
from lifetimes import GammaGammaFitter
from lifetimes.utils import summary_data_from_transaction_data
from scipy.optimize import check_grad
from sklearn.exceptions import NotFittedError

from clvlab.errors import ConfigError, DataError
from clvlab.models import GammaGamma
from clvlab.models.btyd import BTYDConvergenceWarning
from clvlab.models.btyd.gamma_gamma import negative_log_likelihood
from simulators import assert_recovers, simulate_gamma_gamma

#: Fader, Hardie & Lee (2005, "RFM and CLV"): the 946 repeat buyers of the CDNOW sample.
PUBLISHED = {"p": 6.25, "q": 3.74, "v": 15.44}
#: Parameters of the simulated customers.
TRUTH = {"p": 6.0, "q": 4.0, "v": 15.0}


def _datasets() -> importlib.resources.abc.Traversable:
    return importlib.resources.files("lifetimes") / "datasets"


def _cdnow_with_spend() -> pd.DataFrame:
    """FHL's CDNOW summary: x, t_x, T and zbar (mean repeat-purchase value)."""
    path = _datasets() / "cdnow_customers_summary_with_transactions.csv"
    with path.open() as handle:
        raw = pd.read_csv(handle)
    return raw.rename(
        columns={"x": "frequency", "t_x": "recency", "zbar": "monetary_value"}
    ).set_index("ID")


def _cdnow_from_transactions() -> pd.DataFrame:
    """RFM rebuilt from CDNOW_sample.txt with lifetimes, calibration period to 1997-09-30."""
    path = _datasets() / "CDNOW_sample.txt"
    with path.open() as handle:
        tx = pd.read_csv(
            handle,
            sep=r"\s+",
            header=None,
            names=["master_id", "customer_id", "date", "n_cds", "amount"],
            dtype={"date": str},
        )
    tx["date"] = pd.to_datetime(tx["date"], format="%Y%m%d")
    tx = tx[tx["date"] <= "1997-09-30"]
    return summary_data_from_transaction_data(
        tx,
        "customer_id",
        "date",
        monetary_value_col="amount",
        observation_period_end="1997-09-30",
        freq="D",
        freq_multiplier=7,
    )


@pytest.fixture(scope="module")
def cdnow() -> pd.DataFrame:
    # The same customers as conftest's cdnow, with their mean spend.
    return _cdnow_with_spend()


@pytest.fixture(scope="module")
def fitted(cdnow: pd.DataFrame) -> GammaGamma:
    return GammaGamma().fit(cdnow)


@pytest.fixture(scope="module")
def lifetimes_fitted(cdnow: pd.DataFrame) -> GammaGammaFitter:
    repeat = cdnow[cdnow["frequency"] > 0]
    return GammaGammaFitter().fit(repeat["frequency"], repeat["monetary_value"])


# --- fit on CDNOW --------------------------------------------------------------------------


def test_cdnow_fit_matches_published_values(fitted: GammaGamma, cdnow: pd.DataFrame) -> None:
    assert (cdnow["frequency"] > 0).sum() == 946
    assert fitted.converged_
    assert list(fitted.params_.index) == ["p", "q", "v"]
    for name, value in PUBLISHED.items():
        assert fitted.params_[name] == pytest.approx(value, rel=1e-2), name
    # The (unpublished) log-likelihood of the 946 repeat buyers' mean spends.
    assert fitted.log_likelihood_ == pytest.approx(-4055.923, abs=1e-3)


def test_cdnow_fit_matches_lifetimes(
    fitted: GammaGamma, lifetimes_fitted: GammaGammaFitter, cdnow: pd.DataFrame
) -> None:
    theirs = lifetimes_fitted.params_[["p", "q", "v"]]
    np.testing.assert_allclose(fitted.params_.to_numpy(), theirs.to_numpy(), rtol=1e-4)
    repeat = cdnow[cdnow["frequency"] > 0]
    n = len(repeat)
    their_ll = -n * GammaGammaFitter._negative_log_likelihood(
        np.log(theirs.to_numpy()),
        repeat["frequency"].to_numpy(dtype=float),
        repeat["monetary_value"].to_numpy(),
        np.ones(n),
        0.0,
    )
    assert fitted.log_likelihood_ >= their_ll - 1e-6
    np.testing.assert_allclose(
        fitted.stderr_.to_numpy(), lifetimes_fitted.standard_errors_.to_numpy(), rtol=1e-3
    )


def test_fit_on_rfm_built_from_transactions() -> None:
    # The RFM rebuilt from the raw sample differs from FHL's file in the last digits of the
    # mean spends (FHL rounded zbar to cents): p, q, v move by < 2e-4 relative.
    rfm = _cdnow_from_transactions()
    assert (rfm["frequency"] > 0).sum() == 946
    ours = GammaGamma().fit(rfm)
    repeat = rfm[rfm["frequency"] > 0]
    theirs = GammaGammaFitter().fit(repeat["frequency"], repeat["monetary_value"])
    np.testing.assert_allclose(ours.params_, theirs.params_[["p", "q", "v"]], rtol=1e-4)
    for name, value in PUBLISHED.items():
        assert ours.params_[name] == pytest.approx(value, rel=1e-2), name


def test_log_likelihood_equals_lifetimes_at_arbitrary_points(cdnow: pd.DataFrame) -> None:
    repeat = cdnow[cdnow["frequency"] > 0]
    x = repeat["frequency"].to_numpy(dtype=float)
    m = repeat["monetary_value"].to_numpy()
    n = len(x)
    for log_params in ([0.0, 0.0, 0.0], [2.0, 1.0, 3.0], [-1.0, 3.0, 5.0]):
        ours, _ = negative_log_likelihood(np.array(log_params), x, m)
        theirs = n * GammaGammaFitter._negative_log_likelihood(
            np.array(log_params), x, m, np.ones(n), 0.0
        )
        assert ours == pytest.approx(theirs, rel=1e-10)


@pytest.mark.parametrize("penalizer", [0.001, 0.01])
def test_penalized_fit_matches_lifetimes(cdnow: pd.DataFrame, penalizer: float) -> None:
    ours = GammaGamma(penalizer_coef=penalizer).fit(cdnow)
    repeat = cdnow[cdnow["frequency"] > 0]
    theirs = GammaGammaFitter(penalizer_coef=penalizer).fit(
        repeat["frequency"], repeat["monetary_value"]
    )
    np.testing.assert_allclose(ours.params_, theirs.params_[["p", "q", "v"]], rtol=1e-4)


def test_ignores_non_repeat_buyers_and_their_spend(cdnow: pd.DataFrame, fitted: GammaGamma) -> None:
    rfm = cdnow.copy()
    rfm.loc[rfm["frequency"] == 0, "monetary_value"] = np.nan
    refit = GammaGamma().fit(rfm)
    np.testing.assert_allclose(refit.params_, fitted.params_, rtol=1e-10)


def test_weights_equal_repeated_rows(cdnow: pd.DataFrame, fitted: GammaGamma) -> None:
    repeat = cdnow[cdnow["frequency"] > 0]
    doubled = pd.concat([repeat, repeat])
    weighted = GammaGamma().fit(repeat, sample_weight=np.full(len(repeat), 2.0))
    plain = GammaGamma().fit(doubled)
    np.testing.assert_allclose(weighted.params_, plain.params_, rtol=1e-6)
    np.testing.assert_allclose(weighted.params_, fitted.params_, rtol=1e-5)
    assert weighted.log_likelihood_ == pytest.approx(2 * fitted.log_likelihood_, rel=1e-9)


def test_deprecated_weights_argument_warns_and_equals_sample_weight(cdnow: pd.DataFrame) -> None:
    repeat = cdnow[cdnow["frequency"] > 0]
    w = np.arange(len(repeat)) % 3 + 1.0
    new = GammaGamma().fit(repeat, sample_weight=w)
    deprecated = r"GammaGamma\.fit: .*weights.*use sample_weight"
    with pytest.warns(FutureWarning, match=deprecated) as record:
        old = GammaGamma().fit(repeat, weights=w)
    assert record[0].filename == __file__  # the warning points at the caller
    assert old.to_dict() == new.to_dict()
    with pytest.raises(ConfigError, match="sample_weight only"):
        GammaGamma().fit(repeat, sample_weight=w, weights=w)


# --- gradient -------------------------------------------------------------------------------


def test_analytic_gradient_matches_finite_differences(cdnow: pd.DataFrame) -> None:
    repeat = cdnow[cdnow["frequency"] > 0]
    x = np.concatenate([repeat["frequency"].to_numpy(dtype=float), [1.0, 1000.0, 50.0]])
    m = np.concatenate([repeat["monetary_value"].to_numpy(), [1e-3, 2.5, 1e4]])
    w = np.linspace(0.5, 2.0, len(x))
    rng = np.random.default_rng(5)
    for log_params in [np.log(list(PUBLISHED.values())), *rng.normal(0.0, 1.5, (5, 3))]:

        def value(lp: np.ndarray) -> float:
            return negative_log_likelihood(lp, x, m, w)[0]

        def grad(lp: np.ndarray) -> np.ndarray:
            return negative_log_likelihood(lp, x, m, w)[1]

        scale = np.linalg.norm(grad(log_params)) + 1.0
        # scipy's check_grad uses forward differences (truncation error ~ eps * |Hessian|).
        assert check_grad(value, grad, log_params, epsilon=1e-7) / scale < 1e-4
        # Central differences are more precise: the analytic gradient agrees to 1e-6.
        h = 1e-5
        central = np.array(
            [(value(log_params + h * e) - value(log_params - h * e)) / (2 * h) for e in np.eye(3)]
        )
        np.testing.assert_allclose(grad(log_params), central, rtol=1e-6, atol=1e-6 * scale)


# --- predictions --------------------------------------------------------------------------


def test_expected_spend_equals_lifetimes(
    fitted: GammaGamma, lifetimes_fitted: GammaGammaFitter, cdnow: pd.DataFrame
) -> None:
    same = GammaGamma.from_dict(
        {"model": "GammaGamma", "params": lifetimes_fitted.params_.to_dict()}
    )
    x = cdnow["frequency"].to_numpy(dtype=float)
    m = cdnow["monetary_value"].to_numpy()
    np.testing.assert_allclose(
        same.expected_spend(x, m),
        lifetimes_fitted.conditional_expected_average_profit(x, m),
        rtol=1e-12,
    )
    np.testing.assert_allclose(
        fitted.expected_spend(x, m),
        lifetimes_fitted.conditional_expected_average_profit(x, m),
        rtol=1e-4,
    )


def test_expected_spend_population_mean_and_limits(fitted: GammaGamma) -> None:
    p, q, v = fitted.params_
    population = p * v / (q - 1)
    # frequency 0: the population mean, whatever monetary_value says (NaN included).
    np.testing.assert_allclose(fitted.expected_spend([0, 0, 0], [np.nan, 0.0, 99.0]), population)
    # Many purchases: the customer's own mean.
    assert float(fitted.expected_spend(100000, 12.0)) == pytest.approx(12.0, rel=1e-3)
    # Shrinkage towards the population mean: between the two.
    spend = float(fitted.expected_spend(2, 100.0))
    assert population < spend < 100.0
    assert fitted.expected_spend([1, 2, 3], 20.0).shape == (3,)
    assert fitted.expected_spend(1, 20.0).shape == ()


def test_expected_spend_infinite_when_population_mean_undefined() -> None:
    model = GammaGamma.from_dict({"model": "GammaGamma", "params": {"p": 2, "q": 0.5, "v": 10}})
    out = model.expected_spend([0, 1], [np.nan, 5.0])
    assert np.isinf(out[0])
    assert out[1] == pytest.approx(2 * (10 + 5.0) / (2 + 0.5 - 1))


def test_expected_spend_matches_posterior_simulation() -> None:
    """E[zeta | x, m] equals the mean of simulated zeta among customers with (x, m) nearby."""
    truth = {"p": 6.0, "q": 4.0, "v": 15.0}
    rng = np.random.default_rng(9)
    rfm, zeta = simulate_gamma_gamma(rng, 400_000, truth)
    model = GammaGamma.from_dict({"model": "GammaGamma", "params": truth})
    predicted = model.expected_spend(rfm["frequency"], rfm["monetary_value"])
    for x in (1, 3, 6):
        for lo, hi in ((10.0, 15.0), (30.0, 40.0)):
            mask = ((rfm["frequency"] == x) & rfm["monetary_value"].between(lo, hi)).to_numpy()
            se = zeta[mask].std() / np.sqrt(mask.sum())
            assert abs(predicted[mask].mean() - zeta[mask].mean()) < 4 * se + 0.02, (x, lo)


def test_predictions_are_pure(fitted: GammaGamma) -> None:
    before = fitted.to_dict()
    fitted.expected_spend([0, 1, 2], [0.0, 10.0, 20.0])
    assert fitted.to_dict() == before


# --- synthetic recovery -------------------------------------------------------------------


def test_recovers_simulated_parameters() -> None:
    rfm, _ = simulate_gamma_gamma(np.random.default_rng(17), 5_000, TRUTH)
    assert_recovers(GammaGamma().fit(rfm), TRUTH)


def test_recovers_parameters_at_one_million_customers() -> None:
    """1,000,000 repeat buyers, mean spends in whole cents (~1/3000 of the mean spend, so the
    rounding does not bias the fit, but many customers share a row and the fit compresses
    them: ~85,000 distinct rows). Measured on 2 cores: simulation ~0.1 s, fit at most ~3 s."""
    rfm, _ = simulate_gamma_gamma(np.random.default_rng(1_000_017), 1_000_000, TRUTH)
    rfm["monetary_value"] = rfm["monetary_value"].round(2)
    model = GammaGamma().fit(rfm)
    assert_recovers(model, TRUTH)


@pytest.mark.parametrize(
    ("seed", "truth", "cents"),
    [(21, TRUTH, False), (22, TRUTH, True), (23, {"p": 2.5, "q": 3.0, "v": 40.0}, True)],
    ids=["exact", "cents", "cents-other-params"],
)
def test_synthetic_fit_matches_lifetimes(seed: int, truth: dict[str, float], cents: bool) -> None:
    """20,000 simulated repeat buyers, mean spends exact or in whole cents."""
    rfm, _ = simulate_gamma_gamma(np.random.default_rng(seed), 20_000, truth)
    if cents:
        rfm["monetary_value"] = rfm["monetary_value"].round(2)
    x = rfm["frequency"].to_numpy(dtype=float)
    m = rfm["monetary_value"].to_numpy()
    n = len(rfm)
    ours = GammaGamma().fit(rfm)
    theirs = GammaGammaFitter().fit(x, m)
    mine, their_params = ours.params_.to_numpy(), theirs.params_[["p", "q", "v"]].to_numpy()

    def lifetimes_ll(params: np.ndarray) -> float:
        """lifetimes' static log-likelihood (its mean NLL is in log-parameters)."""
        return -n * GammaGammaFitter._negative_log_likelihood(np.log(params), x, m, np.ones(n), 0.0)

    assert ours.converged_
    np.testing.assert_allclose(mine, their_params, rtol=1e-4)
    assert ours.log_likelihood_ == pytest.approx(lifetimes_ll(mine), rel=1e-10)
    their_ll = lifetimes_ll(their_params)
    assert ours.log_likelihood_ >= their_ll - 1e-8 * abs(their_ll)


# --- edge inputs --------------------------------------------------------------------------


def test_extreme_inputs_stay_finite(cdnow: pd.DataFrame) -> None:
    extra = pd.DataFrame(
        {"frequency": [1000, 1, 500, 2], "monetary_value": [5.0, 1e-4, 1e5, 3e4]}, index=[-1] * 4
    )
    rfm = pd.concat([cdnow[["frequency", "monetary_value"]], extra])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BTYDConvergenceWarning)
        model = GammaGamma().fit(rfm)
    assert np.isfinite(model.params_).all() and np.isfinite(model.log_likelihood_)
    spend = model.expected_spend([0, 1, 100000, 100000], [0.0, 1e6, 1e-6, 50.0])
    assert np.isfinite(spend).all() and (spend > 0).all()


def test_identical_spends_warn_and_stay_finite() -> None:
    # Everybody spends exactly the same: no spread across customers, q and v run off to
    # infinity (the MLE is on the boundary), so the fit must warn but stay finite.
    rfm = pd.DataFrame({"frequency": [1, 2, 3, 4] * 5, "monetary_value": 20.0})
    with pytest.warns(BTYDConvergenceWarning):
        model = GammaGamma().fit(rfm)
    assert np.isfinite(model.params_).all()
    assert float(model.expected_spend(2, 20.0)) == pytest.approx(20.0, rel=1e-3)


# --- serialization and errors --------------------------------------------------------------


def test_round_trip_gives_identical_predictions(fitted: GammaGamma, cdnow: pd.DataFrame) -> None:
    restored = GammaGamma.from_dict(json.loads(json.dumps(fitted.to_dict())))
    x = cdnow["frequency"].to_numpy()
    m = cdnow["monetary_value"].to_numpy()
    np.testing.assert_array_equal(restored.expected_spend(x, m), fitted.expected_spend(x, m))
    pd.testing.assert_series_equal(restored.params_, fitted.params_)
    pd.testing.assert_series_equal(restored.stderr_, fitted.stderr_)
    assert restored.log_likelihood_ == fitted.log_likelihood_
    assert restored.get_params() == fitted.get_params()


def test_from_dict_rejects_other_models(fitted: GammaGamma) -> None:
    data = fitted.to_dict()
    data["model"] = "BetaGeo"
    with pytest.raises(ConfigError, match="GammaGamma"):
        GammaGamma.from_dict(data)


def test_not_fitted_raises() -> None:
    with pytest.raises(NotFittedError):
        GammaGamma().expected_spend(1, 10.0)


def test_non_positive_spend_of_repeat_buyers_raises(cdnow: pd.DataFrame) -> None:
    rfm = cdnow.copy()
    repeat_ids = rfm.index[rfm["frequency"] > 0][:3]
    rfm.loc[repeat_ids[0], "monetary_value"] = 0.0
    rfm.loc[repeat_ids[1], "monetary_value"] = -4.5
    with pytest.raises(DataError) as info:
        GammaGamma().fit(rfm)
    text = str(info.value)
    assert text.startswith("2 of 2357 rows have monetary_value <= 0 with frequency > 0")
    assert f"index {int(repeat_ids[0])}:" in text and "monetary_value=-4.5" in text
    assert "drop" in text


@pytest.mark.parametrize(
    ("rfm", "message"),
    [
        (pd.DataFrame({"frequency": [1, 2], "monetary_value": [np.nan, 3.0]}), "NaN"),
        (pd.DataFrame({"frequency": [-1, 2], "monetary_value": [1.0, 3.0]}), "negative freq"),
        (pd.DataFrame({"frequency": [1.5, 2], "monetary_value": [1.0, 3.0]}), "non-integer"),
        (pd.DataFrame({"frequency": [0, 0], "monetary_value": [0.0, 0.0]}), "no row has freq"),
        (pd.DataFrame({"frequency": [1, 2]}), r"lacks column\(s\) \['monetary_value'\]"),
        (pd.DataFrame({"frequency": [np.nan, 2], "monetary_value": [1.0, 3.0]}), "NaN"),
    ],
)
def test_invalid_rfm_raises_data_error(rfm: pd.DataFrame, message: str) -> None:
    with pytest.raises(DataError, match=message):
        GammaGamma().fit(rfm)


def test_invalid_prediction_input_raises_data_error(fitted: GammaGamma) -> None:
    with pytest.raises(DataError, match="monetary_value"):
        fitted.expected_spend(2, np.nan)
    with pytest.raises(DataError, match="frequency"):
        fitted.expected_spend(-1, 10.0)
