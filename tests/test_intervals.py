"""Score intervals (clvlab.intervals): parameter draws from the fit's covariance, the
bootstrap quantiles against a direct computation, the predictive interval of the purchase
count against its definition, and intervals through score, score_to_file and the CLI."""

from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pytest

import clvlab
from clvlab import ClvlabError, CLVModel, ConfigError, DataError, ParetoNBD, rfm, score
from clvlab.batch import score_to_file
from clvlab.intervals import (
    COUNT_DRAWS,
    DRAWS,
    INTERVAL_COLUMNS,
    parameter_draws,
    purchase_count_bounds,
    score_intervals,
)
from clvlab.models.clv import TargetSource
from clvlab.models.historical import HISTORICAL
from clvlab.scoring import NO_HISTORY, SCORE_COLUMNS

HORIZON_WEEKS = 39.0
LEVEL = 0.9


@pytest.fixture(scope="module")
def summary(cdnow_sample):
    return rfm(cdnow_sample, "1997-09-30", freq="D", freq_multiplier=7)


@pytest.fixture(scope="module")
def model(sample_models):
    purchases, spend = sample_models
    return CLVModel(purchases=purchases, spend=spend, time_unit="W", horizon_days=273)


def test_draws_follow_the_fits_covariance_in_log_parameters(sample_models):
    bgnbd, _ = sample_models
    draws = parameter_draws(bgnbd)
    assert len(draws) == DRAWS and all(type(d) is type(bgnbd) for d in draws)
    logs = np.log([d.params_.to_numpy() for d in draws])
    params = bgnbd.params_.to_numpy()
    log_cov = bgnbd.covariance_.to_numpy() / np.outer(params, params)
    # The covariance's diagonal is the square of the standard errors.
    np.testing.assert_allclose(np.sqrt(np.diag(bgnbd.covariance_)), bgnbd.stderr_, rtol=1e-12)
    # 200 normal draws: the mean within 4 standard errors of the mean, each variance within
    # 30 % and the correlations within 0.2 of the fit's.
    se_mean = np.sqrt(np.diag(log_cov) / DRAWS)
    assert np.all(np.abs(logs.mean(axis=0) - np.log(params)) < 4 * se_mean)
    sample = np.cov(logs, rowvar=False)
    np.testing.assert_allclose(np.diag(sample), np.diag(log_cov), rtol=0.3)
    corr = log_cov / np.sqrt(np.outer(np.diag(log_cov), np.diag(log_cov)))
    sample_corr = sample / np.sqrt(np.outer(np.diag(sample), np.diag(sample)))
    np.testing.assert_allclose(sample_corr, corr, atol=0.2)
    # The same draws on every call; the model itself is untouched.
    again = parameter_draws(bgnbd)
    assert all(a.params_.equals(b.params_) for a, b in zip(draws, again, strict=True))
    assert not any(d.params_ is bgnbd.params_ for d in draws)


def test_a_parameter_without_a_standard_error_is_not_drawn(sample_models):
    bgnbd = copy.copy(sample_models[0])
    cov = bgnbd.covariance_.copy()
    cov.loc["a", :] = np.nan
    cov.loc[:, "a"] = np.nan
    bgnbd.covariance_ = cov
    draws = parameter_draws(bgnbd, 50)
    assert {d.params_["a"] for d in draws} == {bgnbd.params_["a"]}
    assert len({d.params_["r"] for d in draws}) == 50


def test_bootstrap_bounds_are_the_quantiles_of_each_draws_predictions(model, summary):
    """Against the draws' predictions computed directly, customer by customer (no sharing of
    distinct histories): the 5 % and 95 % quantiles."""
    head = summary.iloc[:300]
    predictions = model.predict_columns(head)
    bounds = score_intervals(model, head, predictions, None, LEVEL)
    x, t_x, age = (head[c].to_numpy(float) for c in ("frequency", "recency", "T"))
    m = head["monetary_value"].to_numpy(float)
    purchase_draws = parameter_draws(model.purchases)
    spend_draws = parameter_draws(model.spend)
    alive = np.array([d.p_alive(x, t_x, age) for d in purchase_draws])
    expected = np.array([d.expected_purchases(HORIZON_WEEKS, x, t_x, age) for d in purchase_draws])
    spend = np.array([d.expected_spend(x, m) for d in spend_draws])
    for column, stack in {
        "p_alive": alive,
        "expected_purchases": expected,
        "expected_revenue": expected * spend,
    }.items():
        low, high = np.quantile(stack, [0.05, 0.95], axis=0)
        np.testing.assert_allclose(bounds[f"{column}_lower"], low, rtol=1e-9)
        np.testing.assert_allclose(bounds[f"{column}_upper"], high, rtol=1e-9)
        assert np.all(bounds[f"{column}_lower"] <= predictions[column] * (1 + 1e-9))
        assert np.all(predictions[column] <= bounds[f"{column}_upper"] * (1 + 1e-9))
    # CLV: the revenue interval times the customer's discount factor.
    factor = predictions["clv"] / predictions["expected_revenue"]
    np.testing.assert_allclose(bounds["clv_lower"], bounds["expected_revenue_lower"] * factor)
    assert np.all(bounds["clv_lower"] < bounds["clv_upper"])


def test_the_count_interval_follows_its_definition(model, summary):
    """P(X = n) averaged over the first 10 draws, summed by hand: the lower bound is the
    first n whose cumulative probability exceeds 5 %, the upper the first n with
    P(lower <= X <= upper) >= 90 %."""
    rows = pd.concat([summary.iloc[::40], summary.nlargest(10, "frequency")])  # and the best
    x, t_x, age = (rows[c].to_numpy(float) for c in ("frequency", "recency", "T"))
    lower, upper = purchase_count_bounds(model.purchases, x, t_x, age, HORIZON_WEEKS, LEVEL)
    draws = parameter_draws(model.purchases)[:COUNT_DRAWS]
    counts = np.arange(200.0)[:, None]
    pmf = np.mean([d.p_purchases(counts, HORIZON_WEEKS, x, t_x, age) for d in draws], axis=0)
    cdf = np.cumsum(pmf, axis=0)
    assert np.all(cdf[-1] > 1 - 1e-9)
    expected_lower = np.argmax(cdf > 0.05, axis=0)
    below = np.where(expected_lower > 0, cdf[np.maximum(expected_lower - 1, 0), range(len(x))], 0)
    expected_upper = np.argmax(cdf >= below + LEVEL - 1e-12, axis=0)
    np.testing.assert_array_equal(lower, expected_lower)
    np.testing.assert_array_equal(upper, expected_upper)
    assert np.all(lower <= upper) and upper.max() > 2 and lower.max() > 0


def test_pareto_nbd_count_interval_shares_distinct_histories_exactly(summary):
    """Customers who share a distinct (frequency, T) history with others (evaluated once,
    scaled by P(alive)) get the bounds they get alone."""
    pareto = ParetoNBD().fit(summary)
    x, t_x, age = (summary[c].to_numpy(float) for c in ("frequency", "recency", "T"))
    shared = purchase_count_bounds(pareto, x, t_x, age, HORIZON_WEEKS, LEVEL)
    for i in range(0, len(x), 120):
        alone = purchase_count_bounds(pareto, x[i : i + 1], t_x[i : i + 1], age[i : i + 1],
                                      HORIZON_WEEKS, LEVEL)  # fmt: skip
        assert (shared[0][i], shared[1][i]) == (alone[0][0], alone[1][0])
    assert len(np.unique(x + 1j * age)) < len(x) / 2


def test_a_historical_source_is_scaled_by_its_btyd_models_relative_interval(model, summary):
    head = summary.iloc[:200]
    historical = dataclasses_replace_source(model, "purchases", HISTORICAL)
    predictions = historical.predict_columns(head)
    bounds = score_intervals(historical, head, predictions, None, LEVEL)
    btyd = score_intervals(model, head, model.predict_columns(head), None, LEVEL)
    btyd_point = model.predict_columns(head)["expected_purchases"]
    ratio = btyd["expected_purchases_upper"] / btyd_point
    np.testing.assert_allclose(
        bounds["expected_purchases_upper"], predictions["expected_purchases"] * ratio, rtol=1e-9
    )
    # p_alive and the count come from the BTYD models whatever the purchases' source.
    np.testing.assert_array_equal(bounds["p_alive_lower"], btyd["p_alive_lower"])
    np.testing.assert_array_equal(bounds["purchases_upper"], btyd["purchases_upper"])


def dataclasses_replace_source(model: CLVModel, target: str, kind: str) -> CLVModel:
    clone = copy.copy(model)
    clone.sources = {**model.sources, target: TargetSource(kind, model.purchases)}
    return clone


TRANSACTIONS = pd.DataFrame(
    {
        "customer_id": [7, 7, 7, 8, 9],
        "date": ["1997-01-01", "1997-02-01", "1997-03-01", "1997-01-15", "1997-08-01"],
        "amount": [10.0, 20.0, 30.0, 5.0, 7.0],
    }
)


def test_score_adds_the_intervals_after_the_other_columns(model):
    table = score(model, TRANSACTIONS, as_of="1997-06-30", intervals=0.8)
    assert list(table.columns) == SCORE_COLUMNS + INTERVAL_COLUMNS
    assert table["customer_id"].tolist() == [7, 8, 9]
    assert str(table["purchases_lower"].dtype) == "Int64"
    scored = table.iloc[:2]
    for column in ("p_alive", "expected_purchases", "expected_revenue", "clv"):
        assert (scored[f"{column}_lower"] <= scored[column]).all()  # P(alive) 1 after one
        assert (scored[column] <= scored[f"{column}_upper"]).all()  # purchase, in BG/NBD
        assert (scored[f"{column}_lower"] < scored[f"{column}_upper"]).iloc[0]
    assert (scored["purchases_lower"] <= scored["purchases_upper"]).all()
    unscored = table.iloc[2]
    assert unscored["reason"] == NO_HISTORY
    assert pd.isna(unscored["clv_upper"]) and pd.isna(unscored["purchases_upper"])
    # Without intervals, the table is as before; a wider level, wider intervals.
    plain = score(model, TRANSACTIONS, as_of="1997-06-30")
    assert list(plain.columns) == SCORE_COLUMNS
    wide = score(model, TRANSACTIONS, as_of="1997-06-30", intervals=0.99)
    assert (wide["clv_upper"].iloc[:2] > table["clv_upper"].iloc[:2]).all()


def test_a_model_trained_with_intervals_scores_with_them(model, tmp_path):
    trained = copy.copy(model)
    trained.interval_level = 0.9
    path = tmp_path / "model.json"
    trained.save(path)
    assert json.loads(path.read_text())["format"] == "clvlab.CLVModel/5"
    loaded = CLVModel.load(path)
    assert loaded.interval_level == 0.9
    pd.testing.assert_frame_equal(loaded.purchases.covariance_, model.purchases.covariance_)
    table = score(loaded, TRANSACTIONS, as_of="1997-06-30")
    assert list(table.columns) == SCORE_COLUMNS + INTERVAL_COLUMNS
    # Without a level the model is saved as before, for older clvlab versions to read.
    assert model.to_dict()["format"] == "clvlab.CLVModel/2"


def test_a_model_saved_without_covariance_says_to_train_again(model):
    state = model.to_dict()
    del state["purchases"]["covariance"]
    old = CLVModel.from_dict(state)
    with pytest.raises(ClvlabError, match=r"saved without the covariance.*train the model again"):
        score(old, TRANSACTIONS, as_of="1997-06-30", intervals=0.9)


@pytest.mark.parametrize("level", [0, 1, 1.5, -0.1, True, "0.9", float("nan")])
def test_a_level_outside_zero_to_one_is_a_data_error(model, level):
    with pytest.raises(DataError, match="strictly between 0 and 1"):
        score(model, TRANSACTIONS, intervals=level)


def test_a_config_level_outside_zero_to_one_is_a_config_error():
    with pytest.raises(ConfigError, match="intervals"):
        clvlab.load_config({"data": {"source": "x.csv"}, "scoring": {"intervals": 1.0}})


def test_batch_and_command_line_write_the_intervals(model, tmp_path, cli):
    model_file = tmp_path / "model.json"
    model.save(model_file)
    data = tmp_path / "tx.csv"
    TRANSACTIONS.to_csv(data, index=False)
    expected = score(model, TRANSACTIONS, as_of="1997-06-30", intervals=0.9)
    result = score_to_file(model, data, tmp_path / "scores.csv", as_of="1997-06-30", intervals=0.9)
    written = pd.read_csv(result.output)
    assert list(written.columns) == list(expected.columns)
    np.testing.assert_allclose(written["clv_upper"], expected["clv_upper"], rtol=1e-12)
    done = cli(
        ["score", "--model", str(model_file), "--transactions", str(data), "--as-of",
         "1997-06-30", "--intervals", "0.9", "--output", str(tmp_path / "cli.parquet")],
        tmp_path, {},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    written = pd.read_parquet(tmp_path / "cli.parquet")
    assert list(written.columns) == list(expected.columns)
    np.testing.assert_array_equal(written["purchases_upper"], expected["purchases_upper"])
    np.testing.assert_allclose(written["p_alive_lower"], expected["p_alive_lower"], rtol=1e-12)
    bad = cli(
        ["score", "--model", str(model_file), "--transactions", str(data),
         "--intervals", "90", "--output", str(tmp_path / "bad.parquet")],
        tmp_path, {},
    )  # fmt: skip
    assert bad.returncode == 2 and "strictly between 0 and 1" in bad.stderr
    assert not (tmp_path / "bad.parquet").exists()
