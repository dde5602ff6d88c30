import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import integrate

from clvlab import CLVModel, rfm
from clvlab.models import clv as clv_module
from clvlab.models.btyd import ModifiedBetaGeo, ParetoNBD


@pytest.fixture(scope="module")
def purchase_models(sample_models, cdnow_sample):
    """BG/NBD, MBG/NBD and Pareto/NBD on the CDNOW sample's calibration period, in weeks."""
    summary = rfm(cdnow_sample, "1997-09-30", freq="D", freq_multiplier=7)
    return {
        "bgnbd": sample_models[0],
        "mbgnbd": ModifiedBetaGeo().fit(summary),
        "pareto_nbd": ParetoNBD().fit(summary),
    }


@pytest.fixture(scope="module")
def model(sample_models):
    purchases, spend = sample_models
    return CLVModel(
        purchases=purchases, spend=spend, time_unit="W", horizon_days=364, annual_discount_rate=0.10
    )


CUSTOMERS = pd.DataFrame(
    {
        "frequency": [0.0, 2.0, 10.0],
        "recency": [0.0, 30.43, 38.0],
        "T": [38.86, 38.86, 38.86],
        "monetary_value": [0.0, 25.0, 40.0],
    },
    index=pd.Index(["a", "b", "c"], name="customer_id"),
)


def test_predict_combines_the_models(model):
    out = model.predict(CUSTOMERS)
    horizon = 364 / 7
    x, t_x, age = CUSTOMERS["frequency"], CUSTOMERS["recency"], CUSTOMERS["T"]
    np.testing.assert_allclose(
        out["expected_purchases"], model.purchases.expected_purchases(horizon, x, t_x, age)
    )
    np.testing.assert_allclose(out["p_churn"], model.purchases.p_churn(horizon, x, t_x, age))
    np.testing.assert_allclose(
        out["expected_spend"], model.spend.expected_spend(x, CUSTOMERS["monetary_value"])
    )
    np.testing.assert_allclose(
        out["expected_revenue"], out["expected_purchases"] * out["expected_spend"]
    )
    assert (out["clv"] < out["expected_revenue"]).all()
    assert list(out.index) == ["a", "b", "c"]


def test_discounting_matches_the_integral(model):
    """CLV = spend * integral of exp(-delta t) dE[X(t)], delta = log(1.1) per year."""
    x, t_x, age = 2.0, 30.43, 38.86
    horizon = 364 / 7
    delta = math.log(1.1) * 7 / 365.25

    def rate(t, h=1e-4):  # dE[X(t)]/dt by central differences
        up = model.purchases.expected_purchases(t + h, x, t_x, age)
        down = model.purchases.expected_purchases(max(t - h, 0), x, t_x, age)
        return float(np.squeeze(up - down)) / (t + h - max(t - h, 0))

    exact, _ = integrate.quad(lambda t: math.exp(-delta * t) * rate(t), 0, horizon, limit=200)
    ours = model.discounted_purchases(horizon, np.array([x]), np.array([t_x]), np.array([age]))
    assert ours[0] == pytest.approx(exact, rel=1e-6)


#: Customers (in weeks) for the discounting checks: brand new, young, CUSTOMERS' three, old.
DISCOUNT_CUSTOMERS = {
    "frequency": np.array([0.0, 1.0, 0.0, 2.0, 10.0, 25.0]),
    "recency": np.array([0.0, 0.5, 0.0, 30.43, 38.0, 50.0]),
    "T": np.array([0.0, 1.0, 38.86, 38.86, 38.86, 104.0]),
}


def fine_discounted_purchases(purchases, horizon, delta, frequency, recency, T, steps=20_000):
    """Reference: sum of exp(-delta t_mid) (E[X(t_k)] - E[X(t_k-1)]) over a uniform grid of
    ``steps`` and ``2 * steps`` (the midpoint rule for the integral of exp(-delta t) dE[X(t)],
    error O(step^2)), Richardson-extrapolated."""

    def midpoint(n):
        grid = np.linspace(0.0, horizon, n + 1)
        values = purchases.expected_purchases(grid[:, None], frequency, recency, T)
        return np.exp(-delta * (grid[1:] + grid[:-1]) / 2) @ np.diff(values, axis=0)

    coarse, fine = midpoint(steps), midpoint(2 * steps)
    np.testing.assert_allclose(coarse, fine, rtol=1e-6)  # the grid is fine already
    return (4 * fine - coarse) / 3


@pytest.mark.parametrize("name", ["bgnbd", "mbgnbd", "pareto_nbd"])
@pytest.mark.parametrize(
    ("horizon_days", "annual_rate"),
    [(91, 0.10), (364, 0.10), (3652.5, 0.10), (3652.5, 0.50), (3652.5, 2.0)],
    ids=["quarter", "year", "10-years", "10-years-50%", "10-years-200%"],
)
def test_continuous_discounting_matches_a_fine_reference(
    purchase_models, name, horizon_days, annual_rate
):
    """The quadrature equals a high-resolution integral within 1e-6 relative."""
    purchases = purchase_models[name]
    model = CLVModel(
        purchases=purchases, spend=None, time_unit="W", annual_discount_rate=annual_rate
    )
    horizon, delta = horizon_days / 7, math.log1p(annual_rate) * 7 / 365.25
    ours = model.discounted_purchases(horizon, *DISCOUNT_CUSTOMERS.values())
    reference = fine_discounted_purchases(purchases, horizon, delta, *DISCOUNT_CUSTOMERS.values())
    np.testing.assert_allclose(ours, reference, rtol=1e-6)
    undiscounted = purchases.expected_purchases(horizon, *DISCOUNT_CUSTOMERS.values())
    assert (ours < undiscounted).all()


def test_continuous_discounting_takes_few_model_evaluations(model, monkeypatch):
    """A year at 10 %: expected purchases at the horizon plus 6 quadrature nodes, not one
    evaluation per day (scoring a million customers costs about one second per 7); for a few
    customers the horizon and every node are one call."""
    calls = []
    evaluate = model.purchases.expected_purchases

    def counted(*args):
        calls.append(np.shape(args[0]))
        return evaluate(*args)

    monkeypatch.setattr(model.purchases, "expected_purchases", counted)
    model.predict(CUSTOMERS, horizon_days=365)
    assert calls == [(7, len(CUSTOMERS))]
    calls.clear()
    model.predict(CUSTOMERS, horizon_days=3652.5)  # long horizons take a few panels more
    [(rows, customers)] = calls
    assert 13 <= rows <= 25 and (rows - 1) % 6 == 0 and customers == len(CUSTOMERS)
    monkeypatch.setattr(clv_module, "_STACKED_CUSTOMERS", 1)
    calls.clear()
    model.predict(CUSTOMERS, horizon_days=365)
    assert calls == [()] + [(len(CUSTOMERS),)] * 6


@pytest.mark.parametrize("name", ["bgnbd", "mbgnbd", "pareto_nbd"])
def test_no_discount_means_clv_equals_expected_revenue(model, purchase_models, name):
    undiscounted = CLVModel.from_dict(
        {
            **model.to_dict(),
            "purchases": purchase_models[name].to_dict(),
            "annual_discount_rate": 0.0,
        }
    )
    out = undiscounted.predict(CUSTOMERS)
    np.testing.assert_array_equal(out["clv"], out["expected_revenue"])
    np.testing.assert_array_equal(
        undiscounted.discounted_purchases(52.0, *DISCOUNT_CUSTOMERS.values()),
        purchase_models[name].expected_purchases(52.0, *DISCOUNT_CUSTOMERS.values()),
    )


def test_longer_horizon_more_purchases_less_churn(model):
    short, long = model.predict(CUSTOMERS, 90), model.predict(CUSTOMERS, 720)
    assert (long["expected_purchases"] > short["expected_purchases"]).all()
    assert (long["p_churn"] < short["p_churn"]).all()
    np.testing.assert_allclose(long["p_alive"], short["p_alive"])


def test_count_only_model_has_no_spend(model):
    counts = CLVModel(purchases=model.purchases, spend=None, time_unit="W", name="bgnbd")
    out = counts.predict(CUSTOMERS.drop(columns="monetary_value"))
    assert out[["expected_spend", "expected_revenue", "clv"]].isna().all().all()
    assert out["expected_purchases"].notna().all()


def test_json_round_trip_predicts_identically(model, tmp_path):
    path = tmp_path / "clv_model.json"
    model.save(path)
    json.loads(path.read_text())
    again = CLVModel.load(path)
    pd.testing.assert_frame_equal(again.predict(CUSTOMERS), model.predict(CUSTOMERS))


def test_monthly_discounting_equals_lifetimes_customer_lifetime_value(model):
    from lifetimes import BetaGeoFitter, GammaGammaFitter

    monthly = CLVModel.from_dict({**model.to_dict(), "discounting": "monthly"})
    bgf, ggf = BetaGeoFitter(), GammaGammaFitter()
    bgf.params_ = model.purchases.params_.copy()
    ggf.params_ = model.spend.params_.copy()
    bgf.predict = bgf.conditional_expected_number_of_purchases_up_to_time  # as fit() does
    theirs = ggf.customer_lifetime_value(
        bgf,
        CUSTOMERS["frequency"],
        CUSTOMERS["recency"],
        CUSTOMERS["T"],
        CUSTOMERS["monetary_value"],
        time=12,
        discount_rate=1.1 ** (1 / 12) - 1,
        freq="W",
    )
    # 12 of lifetimes' months of 4.345 weeks.
    ours = monthly.predict(CUSTOMERS, horizon_days=12 * 4.345 * 7)
    np.testing.assert_allclose(ours["clv"], theirs, rtol=1e-10)
    continuous = model.predict(CUSTOMERS, horizon_days=12 * 4.345 * 7)["clv"]
    # Month-end discounting is a little harsher than discounting each purchase when it happens.
    assert (ours["clv"] < continuous).all()
    assert (ours["clv"] > 0.99 * continuous).all()


@pytest.mark.parametrize("name", ["bgnbd", "mbgnbd", "pareto_nbd"])
def test_predictions_per_distinct_frequency_and_age_equal_the_direct_ones(
    name, purchase_models, sample_models, monkeypatch
):
    """Large inputs are evaluated once per distinct (frequency, T) and scaled by P(alive):
    the same numbers as evaluating every customer."""
    import clvlab.models.clv as clv_module

    rng = np.random.default_rng(3)
    n = 30_000
    age = rng.integers(1, 60, n).astype(float)  # whole weeks: few distinct (x, T)
    frequency = np.minimum(rng.poisson(2.0, n), age).astype(float)
    recency = np.where(frequency > 0, np.floor(age * rng.uniform(0, 1, n)), 0.0)
    summary = pd.DataFrame(
        {"frequency": frequency, "recency": recency, "T": age, "monetary_value": 10.0}
    )
    for discounting in ("continuous", "monthly"):
        model = CLVModel(
            purchases=purchase_models[name],
            spend=sample_models[1],
            time_unit="W",
            discounting=discounting,
        )
        shared = model.predict(summary, horizon_days=365)
        with monkeypatch.context() as patch:
            patch.setattr(clv_module, "_DISTINCT_MIN_CUSTOMERS", n + 1)
            direct = model.predict(summary, horizon_days=365)
        pd.testing.assert_frame_equal(shared, direct, rtol=1e-12)
    pairs = len(np.unique(frequency + 1j * age))
    assert pairs < n / 10  # the shared path was taken
