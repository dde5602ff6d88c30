"""A CLVModel whose targets come from different champions: GBM, BTYD and the historical
formula, and the BTYD stand-in when the GBM cannot answer."""

import dataclasses
import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

import clvlab
import simulators
from clvlab import BetaGeo, CLVModel, GammaGamma, ParetoNBD, rfm
from clvlab.features.windows import PurchaseDays, customer_covariates
from clvlab.models.clv import TargetSource
from clvlab.models.gbm import GBMPredictor
from clvlab.models.historical import historical_predictions
from clvlab.serving import export_model

HORIZON = 90
AS_OF = pd.Timestamp("2023-01-02") + pd.Timedelta(days=449)


@pytest.fixture(scope="module")
def simulated():
    transactions = simulators.simulate_transactions(np.random.default_rng(11), 1500)
    return transactions[transactions["date"] <= AS_OF].reset_index(drop=True)


@pytest.fixture(scope="module")
def inputs(simulated):
    summary = rfm(simulated, AS_OF, freq="D")
    return {
        "summary": summary,
        "history": PurchaseDays.from_transactions(simulated),
        "covariates": customer_covariates(simulated, ["segment"]),
    }


@pytest.fixture(scope="module")
def model(inputs):
    summary = inputs["summary"]
    # Small (a unit test): what is checked is where each target comes from, not how good the
    # GBM is (tests/models/test_gbm.py checks that).
    gbm = GBMPredictor(HORIZON, unit_days=1.0, n_estimators=100, max_origins=4)
    gbm.fit(inputs["history"], AS_OF, inputs["covariates"])
    bgnbd, pareto = BetaGeo().fit(summary), ParetoNBD().fit(summary)
    return CLVModel(
        purchases=bgnbd,
        spend=GammaGamma().fit(summary[summary["frequency"] > 0]),
        time_unit="D",
        horizon_days=HORIZON,
        name="bgnbd_gamma_gamma",
        sources={
            "purchases": TargetSource("gbm", bgnbd),
            "churn": TargetSource("gbm", pareto),
            "revenue": TargetSource("historical", bgnbd),
        },
        gbm=gbm,
        covariates=("segment",),
    )


def predict(model, inputs, horizon=HORIZON):
    return model.predict(
        inputs["summary"],
        horizon,
        history=inputs["history"],
        as_of=AS_OF,
        covariates=inputs["covariates"],
    )


def histories(summary):
    return (summary[c].to_numpy(dtype=float) for c in ("frequency", "recency", "T"))


def test_historical_formula_by_hand():
    summary = pd.DataFrame(
        {"frequency": [0.0, 3.0, 2.0], "T": [10.0, 100.0, 0.0], "monetary_value": [0, 20, 5]}
    )
    out = historical_predictions(summary, unit_days=1.0, horizon_days=90)
    # 3 repeat purchases in 100 days -> 2.7 in 90 days, at 20 each; an age of 0 counts as 1 day.
    np.testing.assert_allclose(out["expected_purchases"], [0.0, 2.7, 180.0])
    np.testing.assert_allclose(out["expected_revenue"], [0.0, 54.0, 900.0])
    np.testing.assert_allclose(out["p_churn"], np.exp(-np.array([0.0, 2.7, 180.0])))
    weekly = historical_predictions(summary.assign(T=summary["T"] / 7), 7.0, 90)
    np.testing.assert_allclose(weekly["expected_purchases"], out["expected_purchases"])
    assert (
        historical_predictions(summary[["frequency", "T"]], 1.0, 90)["expected_revenue"]
        .isna()
        .all()
    )


def test_each_target_comes_from_its_champion(model, inputs):
    out = predict(model, inputs)
    summary = inputs["summary"]
    x, t_x, age = histories(summary)
    gbm = model.gbm.predict(inputs["history"], AS_OF, inputs["covariates"]).reindex(summary.index)
    np.testing.assert_allclose(out["expected_purchases"], gbm["expected_purchases"])
    np.testing.assert_allclose(out["p_churn"], gbm["p_churn"])
    # P(alive) from the churn target's BTYD model (Pareto/NBD), spend from Gamma-Gamma.
    pareto = model.source("churn").btyd
    assert model.purchase_models() == {"bgnbd": model.purchases, "pareto_nbd": pareto}
    np.testing.assert_allclose(out["p_alive"], pareto.p_alive(x, t_x, age))
    np.testing.assert_allclose(
        out["expected_spend"], model.spend.expected_spend(x, summary["monetary_value"])
    )
    historical = historical_predictions(summary, 1.0, HORIZON)
    np.testing.assert_allclose(out["expected_revenue"], historical["expected_revenue"])
    # CLV: the champion's revenue, discounted as BG/NBD expects the purchases to come.
    expected = model.purchases.expected_purchases(HORIZON, x, t_x, age)
    discounted = model.discounted_purchases(HORIZON, x, t_x, age)
    np.testing.assert_allclose(out["clv"], out["expected_revenue"] * discounted / expected)
    assert (out["clv"] <= out["expected_revenue"]).all()
    assert model.label(HORIZON) == "purchases=gbm, churn=gbm, revenue=historical"


def test_another_horizon_uses_the_btyd_champions_and_says_so(model, inputs):
    out = predict(model, inputs, horizon=30)
    x, t_x, age = histories(inputs["summary"])
    np.testing.assert_allclose(
        out["expected_purchases"], model.purchases.expected_purchases(30, x, t_x, age)
    )
    np.testing.assert_allclose(out["p_churn"], model.source("churn").btyd.p_churn(30, x, t_x, age))
    historical = historical_predictions(inputs["summary"], 1.0, 30)
    np.testing.assert_allclose(out["expected_revenue"], historical["expected_revenue"])
    assert model.label(30) == (
        "purchases=bgnbd, churn=pareto_nbd, revenue=historical (BTYD champion in place of the "
        "GBM for purchases, churn: the GBM predicts 90-day horizons only)"
    )
    # Without the purchase history a GBM cannot answer either.
    no_history = model.predict(inputs["summary"], HORIZON)
    np.testing.assert_allclose(
        no_history["expected_purchases"], model.purchases.expected_purchases(HORIZON, x, t_x, age)
    )
    assert "no transaction history was given" in model.label(HORIZON, gbm_inputs=False)


def test_json_round_trip_predicts_the_same(model, inputs):
    state = json.loads(json.dumps(model.to_dict()))
    assert state["format"] == "clvlab.CLVModel/2"
    again = CLVModel.from_dict(state)
    pd.testing.assert_frame_equal(predict(again, inputs), predict(model, inputs))
    assert again.label(30) == model.label(30)
    assert again.source("churn").btyd_name == "pareto_nbd"
    assert again.source("revenue").btyd is again.purchases  # one fitted model per name


def test_sources_name_one_fitted_model_per_purchase_model(model):
    with pytest.raises(clvlab.ClvlabError, match="two fitted bgnbd models"):
        CLVModel(
            purchases=model.purchases,
            spend=None,
            sources={"churn": TargetSource("btyd", BetaGeo())},
        )
    with pytest.raises(clvlab.ClvlabError, match="not 'lightgbm'"):
        TargetSource("lightgbm", model.purchases)


def test_score_and_pyfunc_use_the_champions(model, simulated, tmp_path):
    scores = clvlab.score(model, simulated, as_of=AS_OF)
    assert len(scores) == simulated["customer_id"].nunique()
    assert (scores["model"] == "purchases=gbm, churn=gbm, revenue=historical").all()
    gbm = model.gbm.predict(
        PurchaseDays.from_transactions(simulated),
        AS_OF,
        customer_covariates(simulated, ["segment"]),
    )
    by_id = scores.set_index("customer_id")
    np.testing.assert_allclose(by_id["p_churn"], gbm["p_churn"].reindex(by_id.index))
    # The pyfunc model scores the same, with the covariate in its input schema.
    folder = export_model(model, tmp_path / "champions", simulated.head(5))
    pyfunc = mlflow.pyfunc.load_model(str(folder))
    assert "segment" in pyfunc.metadata.get_input_schema().input_names()
    served = pyfunc.predict(simulated, params={"as_of": str(AS_OF.date()), "horizon_days": 90.0})
    pd.testing.assert_frame_equal(served, scores)


def test_scoring_without_the_covariate_column_is_a_clear_error(model, simulated):
    with pytest.raises(clvlab.DataError, match=r"static covariate column\(s\) \['segment'\]"):
        clvlab.score(model, simulated.drop(columns="segment"), as_of=AS_OF)


#: A model saved by clvlab before TargetSource (format 2: the three maps champions,
#: btyd_champions and alternatives), with its predictions then, for a few customers whose
#: transactions are beside it: GBM, historical and BTYD sources, Pareto/NBD for churn.
SAVED = Path(__file__).with_name("data")


def test_a_model_saved_in_format_2_loads_and_predicts_as_then():
    document = json.loads((SAVED / "clv_model_v2.json").read_text())
    assert document["format"] == "clvlab.CLVModel/2"
    model = CLVModel.from_dict(document)
    assert model.source("purchases") == TargetSource("gbm", model.purchases)
    assert model.source("churn").kind == "gbm" and model.source("churn").btyd_name == "pareto_nbd"
    assert model.source("revenue") == TargetSource("historical", model.purchases)
    # Saved again, it is the same document, so older clvlab versions read it too.
    assert json.loads(json.dumps(model.to_dict())) == document

    transactions = pd.read_csv(
        SAVED / "clv_model_v2_transactions.csv", parse_dates=["date"], dtype={"customer_id": str}
    )
    expected = pd.read_csv(SAVED / "clv_model_v2_predictions.csv", dtype={"customer_id": str})
    as_of = pd.Timestamp("2023-01-02") + pd.Timedelta(days=449)
    summary = rfm(transactions, as_of, freq="D", freq_multiplier=7)
    inputs = {
        "history": PurchaseDays.from_transactions(transactions),
        "as_of": as_of,
        "covariates": customer_covariates(transactions, ["segment"]),
    }
    for (horizon, with_history), then in expected.groupby(
        ["horizon_days", "with_history"], sort=False
    ):
        now = model.predict(
            summary.loc[then["customer_id"]], horizon, **(inputs if with_history else {})
        )
        pd.testing.assert_frame_equal(
            now,
            then.set_index("customer_id")[now.columns],
            check_index_type=False,
            check_names=False,
            rtol=1e-12,
        )
        assert model.label(horizon, gbm_inputs=with_history) == then["label"].iloc[0]


# An ensemble champion (issue 17, item 7): each target the convex blend of its members.


@pytest.fixture(scope="module")
def blended(model):
    """``model`` with every target an ensemble: GBM, historical and BTYD members."""
    bgnbd, pareto = model.purchases, model.source("churn").btyd

    def ensemble(stand_in, *members):
        return TargetSource("ensemble", stand_in, tuple(members))

    return dataclasses.replace(
        model,
        name="blend",
        sources={
            "purchases": ensemble(
                bgnbd, (TargetSource("gbm", bgnbd), 0.6), (TargetSource("btyd", pareto), 0.4)
            ),
            "churn": ensemble(
                pareto,
                (TargetSource("btyd", bgnbd), 0.25),
                (TargetSource("historical", pareto), 0.75),
            ),
            "revenue": ensemble(
                bgnbd,
                (TargetSource("historical", bgnbd), 0.5),
                (TargetSource("btyd", bgnbd), 0.5),
            ),
        },
    )


def test_an_ensemble_predicts_the_weighted_sum_of_its_members(blended, model, inputs):
    out = predict(blended, inputs)
    summary = inputs["summary"]
    x, t_x, age = histories(summary)
    bgnbd, pareto = model.purchases, model.source("churn").btyd
    gbm = model.gbm.predict(inputs["history"], AS_OF, inputs["covariates"]).reindex(summary.index)
    historical = historical_predictions(summary, 1.0, HORIZON)
    np.testing.assert_allclose(
        out["expected_purchases"],
        0.6 * gbm["expected_purchases"] + 0.4 * pareto.expected_purchases(HORIZON, x, t_x, age),
    )
    np.testing.assert_allclose(
        out["p_churn"],
        0.25 * bgnbd.p_churn(HORIZON, x, t_x, age) + 0.75 * historical["p_churn"],
    )
    expected = bgnbd.expected_purchases(HORIZON, x, t_x, age)
    spend = model.spend.expected_spend(x, summary["monetary_value"])
    np.testing.assert_allclose(
        out["expected_revenue"], 0.5 * historical["expected_revenue"] + 0.5 * expected * spend
    )
    # P(alive) from the churn stand-in; CLV discounted as the revenue stand-in expects.
    np.testing.assert_allclose(out["p_alive"], pareto.p_alive(x, t_x, age))
    discounted = blended.discounted_purchases(HORIZON, x, t_x, age)
    np.testing.assert_allclose(out["clv"], out["expected_revenue"] * discounted / expected)
    assert blended.label(HORIZON) == (
        "purchases=ensemble(0.60 gbm + 0.40 pareto_nbd), "
        "churn=ensemble(0.25 bgnbd + 0.75 historical), "
        "revenue=ensemble(0.50 historical + 0.50 bgnbd_gamma_gamma)"
    )


def test_an_ensemble_with_a_gbm_gives_way_where_the_gbm_cannot_answer(blended, model, inputs):
    x, t_x, age = histories(inputs["summary"])
    out = predict(blended, inputs, horizon=30)
    np.testing.assert_allclose(
        out["expected_purchases"], model.purchases.expected_purchases(30, x, t_x, age)
    )
    assert blended.label(30).startswith("purchases=bgnbd, churn=ensemble(")
    assert "in place of the GBM or its ensemble for purchases" in blended.label(30)


def test_an_ensemble_survives_a_json_round_trip(blended, inputs):
    state = json.loads(json.dumps(blended.to_dict()))
    assert state["format"] == "clvlab.CLVModel/4"
    assert state["ensembles"]["purchases"] == [
        {"kind": "gbm", "btyd": "bgnbd", "weight": 0.6},
        {"kind": "btyd", "btyd": "pareto_nbd", "weight": 0.4},
    ]
    again = CLVModel.from_dict(state)
    pd.testing.assert_frame_equal(predict(again, inputs), predict(blended, inputs))
    assert again.sources == {
        target: TargetSource(
            source.kind,
            again.purchase_models()[source.btyd_name],
            tuple(
                (TargetSource(m.kind, again.purchase_models()[m.btyd_name]), w)
                for m, w in source.members
            ),
        )
        for target, source in blended.sources.items()
    }


def test_ensemble_members_are_checked(model):
    bgnbd = model.purchases
    member = TargetSource("btyd", bgnbd)
    with pytest.raises(clvlab.ClvlabError, match="only an ensemble source, has members"):
        TargetSource("ensemble", bgnbd)
    with pytest.raises(clvlab.ClvlabError, match="only an ensemble source, has members"):
        TargetSource("btyd", bgnbd, ((member, 1.0),))
    with pytest.raises(clvlab.ClvlabError, match="sum to 1"):
        TargetSource("ensemble", bgnbd, ((member, 0.5), (TargetSource("gbm", bgnbd), 0.4)))
    with pytest.raises(clvlab.ClvlabError, match="two fitted bgnbd models"):
        CLVModel(
            purchases=bgnbd,
            spend=None,
            sources={
                "churn": TargetSource("ensemble", bgnbd, ((TargetSource("btyd", BetaGeo()), 1.0),))
            },
        )
