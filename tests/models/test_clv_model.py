import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import integrate

from clvlab import CLVModel


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
    assert ours[0] == pytest.approx(exact, rel=1e-5)


def test_no_discount_means_clv_equals_expected_revenue(model):
    undiscounted = CLVModel.from_dict({**model.to_dict(), "annual_discount_rate": 0.0})
    out = undiscounted.predict(CUSTOMERS)
    np.testing.assert_allclose(out["clv"], out["expected_revenue"], rtol=1e-12)


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
