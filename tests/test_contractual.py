"""``setting: contractual``: subscriptions trained on, backtested, logged, registered, scored
and served through the same MLflow model as transactions (issue 17, item 4)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import clvlab
from clvlab import ConfigError, DataError
from clvlab.data.subscriptions import subscriber_periods
from clvlab.models.contractual import ShiftedBetaGeometric
from clvlab.models.contractual.model import (
    CONTRACTUAL_SCORE_COLUMNS,
    ENDED,
    ContractualModel,
)
from clvlab.models.contractual.subscribers import ALL
from clvlab.scoring_contractual import NOT_STARTED
from clvlab.training_contractual import BY_COHORT, POOLED, churn_in_window

#: The churn probability per month is Beta(ALPHA, BETA) across subscribers.
ALPHA, BETA = 0.8, 1.6
END = pd.Timestamp("2024-12-31")


def simulated(per_cohort: int = 100, seed: int = 0) -> pd.DataFrame:
    """Monthly subscriptions started in 2022-01 .. 2024-06, each lost after a geometric
    number of months with its own churn probability; those running past END are active."""
    rng = np.random.default_rng(seed)
    rows = []
    for k, month in enumerate(pd.date_range("2022-01-01", "2024-06-01", freq="MS")):
        theta = rng.beta(ALPHA, BETA, per_cohort)
        for i in range(per_cohort):
            start = month + pd.Timedelta(days=int(rng.integers(0, 27)))
            months = min(int(rng.geometric(theta[i])), 600)
            end = start + pd.DateOffset(months=months)
            rows.append((f"s{k:02d}{i:03d}", start, end if end <= END else pd.NaT, 10.0 + i % 3))
    return pd.DataFrame(rows, columns=["subscriber", "began", "cancelled", "fee"])


CONFIG = {
    "name": "subscriptions",
    "setting": "contractual",
    "data": {"source": "subscriptions.csv", "customer_id": "subscriber"},
    "subscriptions": {"start": "began", "end": "cancelled", "price": "fee"},
    "split": {"calibration_end": "2024-06-30", "holdout_end": "2024-12-31"},
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("contractual")
    table = simulated()
    table.to_csv(folder / "subscriptions.csv", index=False)
    config = {**CONFIG, "data": {**CONFIG["data"], "source": str(folder / "subscriptions.csv")}}
    result = clvlab.train(config, register="subscriptions", export=folder / "model")
    return result, table, folder


def test_training_recovers_the_churn_distribution_and_judges_both_candidates(trained):
    result, table, _ = trained
    model = result.model
    assert result.champion in (BY_COHORT, POOLED) and model.period == "M"
    # Fitted on the subscriptions at the holdout end: the pooled model's parameters within
    # three standard errors of the simulated ones.
    pooled = model.models[ALL]
    for name, truth in {"alpha": ALPHA, "beta": BETA}.items():
        assert abs(pooled.params_[name] - truth) < 3 * pooled.stderr_[name], name
    for window in (result.validation_metrics, result.metrics):
        assert set(window.index) == {BY_COHORT, POOLED}
        assert set(window.columns) == {"churn_roc_auc", "churn_brier"}
        assert (window["churn_roc_auc"] > 0.6).all() and (window["churn_brier"] < 0.25).all()
    best = result.validation_metrics["churn_roc_auc"].idxmax()
    assert result.champion == best
    assert result.champion_metrics == result.metrics.loc[best].to_dict()
    report = result.data_report
    excluded = sum(v for k, v in report.items() if k.startswith("excluded."))
    assert report["rows_read"] == report["rows_kept"] + excluded
    assert report["rows_read"] == len(table) == report["rows_kept"]
    assert report["active"] == int(table["cancelled"].isna().sum())


def test_the_run_is_logged_registered_and_exported(trained):
    import mlflow

    result, _, folder = trained
    run = mlflow.get_run(result.run_id)
    assert run.data.metrics["holdout.churn_roc_auc"] == result.champion_metrics["churn_roc_auc"]
    assert run.data.tags["clvlab.champion.churn"] == result.champion
    assert run.data.params["setting"] == "contractual"
    assert result.registry is not None and result.registry.version == "1"
    assert result.local_path == (folder / "model").resolve()
    report = mlflow.artifacts.load_dict(f"runs:/{result.run_id}/backtest_report.json")
    assert report["champions"] == {"churn": result.champion}
    # The run's HTML report, with the subscriptions at risk.
    page = mlflow.artifacts.load_text(f"runs:/{result.run_id}/report.html")
    assert "Subscriptions likely to be cancelled" in page and result.champion in page


def test_predictions_are_the_sbg_formulas(trained):
    """p_renew = (beta + n) / (alpha + beta + n); P(churn within h) = 1 - the product of
    the h retention rates ahead; DERL and value as the sBG model gives them."""
    model = ContractualModel({ALL: trained[0].model.models[ALL]}, horizon_periods=3)
    alpha, beta = model.models[ALL].params_
    periods = pd.DataFrame(
        {"cohort": ["2023-01"] * 3, "periods": [0, 5, 5], "churned": [False, False, True]}
    ).assign(price=[10.0, 20.0, 20.0])
    scored = model.predict(periods)
    n = np.array([0.0, 5.0])
    renew = (beta + n) / (alpha + beta + n)
    np.testing.assert_allclose(scored["p_renew"].iloc[:2], renew, rtol=1e-12)
    kept = np.prod([(beta + n + j) / (alpha + beta + n + j) for j in range(3)], axis=0)
    np.testing.assert_allclose(scored["p_churn"].iloc[:2], 1 - kept, rtol=1e-12)
    derl = model.models[ALL].expected_residual_lifetime(model.discount_rate, n)
    np.testing.assert_allclose(scored["clv"].iloc[:2], [10 * derl[0], 20 * derl[1]], rtol=1e-12)
    assert scored.iloc[2].isna().all()  # churned: nothing to predict
    assert model.discount_rate == pytest.approx(1.1 ** (1 / 12) - 1)


def test_a_window_judges_who_was_active_at_its_start():
    """Three subscriptions at 2024-01-01: one ended before (not judged), one lost in the
    window, one still active at its end; the probability is 1 - S(n + k | n) with k the
    renewals due in the window."""
    sbg = ShiftedBetaGeometric().fit(  # FH07's regular segment
        pd.DataFrame({"periods": [1, 2, 3, 3], "churned": [True, True, False, True]}),
        at={"alpha": 0.704, "beta": 1.182},
    )
    model = ContractualModel({ALL: sbg})
    subscriptions = pd.DataFrame(
        {
            "customer_id": ["gone", "lost", "kept"],
            "start": pd.to_datetime(["2023-01-15", "2023-06-15", "2023-10-15"]),
            "end": pd.to_datetime(["2023-12-01", "2024-03-20", None]),
        }
    )
    judged = churn_in_window(model, subscriptions, pd.Timestamp("2024-01-01"), END)
    assert judged["actual_churn"].tolist() == [True, False]
    # At 2024-01-01 "lost" had completed 6 months and "kept" 2; by END, active, they would
    # have 18 and 14: 12 more renewals each.
    expected = 1 - sbg.survival(12, np.array([6, 2]))
    np.testing.assert_allclose(judged["p_churn"], expected, rtol=1e-12)


def test_scoring_gives_every_subscription_a_row(trained, cli):
    result, table, folder = trained
    as_of = "2024-03-31"
    scores = clvlab.score(result.model_uri, folder / "subscriptions.csv", as_of=as_of)
    assert list(scores.columns) == CONTRACTUAL_SCORE_COLUMNS and len(scores) == len(table)
    started = table["began"] <= as_of
    ended = table["cancelled"].notna() & (table["cancelled"] <= as_of)
    assert (scores["reason"] == NOT_STARTED).sum() == (~started).sum()
    assert (scores["reason"] == ENDED).sum() == (started & ended).sum()
    active = scores[scores["reason"].isna()]
    assert len(active) == (started & ~ended).sum()
    assert active[["p_renew", "p_churn", "derl", "clv"]].notna().all().all()
    assert active["p_renew"].between(0, 1).all() and (active["clv"] > 0).all()
    read, _ = clvlab.read_subscriptions(
        table, customer_id="subscriber", start="began", end="cancelled", price="fee"
    )
    periods = subscriber_periods(read, as_of)
    assert active["periods"].sum() == periods.loc[~periods["churned"], "periods"].sum()
    # The registered champion, the exported folder, the command line and the MLflow pyfunc
    # give the same table.
    for model in ("models:/subscriptions@champion", str(folder / "model")):
        again = clvlab.score(model, folder / "subscriptions.csv", as_of=as_of)
        pd.testing.assert_frame_equal(
            again.drop(columns="model_version"), scores.drop(columns="model_version")
        )
    done = cli(
        ["score", "--model", str(folder / "model"), "--transactions",
         str(folder / "subscriptions.csv"), "--as-of", as_of, "--output", "scores.parquet"],
        folder, {},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    written = pd.read_parquet(folder / "scores.parquet")
    np.testing.assert_allclose(written["clv"], scores["clv"], rtol=1e-12)
    import mlflow

    as_sent = table.assign(  # as JSON has them: dates as text, an empty end while active
        began=table["began"].dt.strftime("%Y-%m-%d"),
        cancelled=table["cancelled"].dt.strftime("%Y-%m-%d").fillna(""),
    )
    served = mlflow.pyfunc.load_model(str(folder / "model")).predict(
        as_sent, params={"as_of": as_of}
    )
    np.testing.assert_allclose(served["p_churn"], scores["p_churn"], rtol=1e-12)


def test_arguments_of_transactions_are_refused_for_subscriptions(trained, cli):
    result, _, folder = trained
    with pytest.raises(DataError, match="horizon_days: not for a contractual model"):
        clvlab.score(result.model, folder / "subscriptions.csv", horizon_days=30)
    done = cli(
        ["score", "--model", str(folder / "model"), "--transactions",
         str(folder / "subscriptions.csv"), "--intervals", "0.9", "--output", "bad.parquet"],
        folder, {},
    )  # fmt: skip
    assert done.returncode == 2 and "intervals: not for a contractual model" in done.stderr
    assert not (folder / "bad.parquet").exists()


def test_config_checks():
    with pytest.raises(ConfigError, match="remove engine: spark"):
        clvlab.load_config({**CONFIG, "engine": "spark"})
    with pytest.raises(ConfigError, match="predicts churn only"):
        clvlab.load_config({**CONFIG, "registry": {"metrics": ["purchases_mae"]}})
    config = clvlab.load_config(CONFIG)
    assert config.promotion_metrics == ("churn_roc_auc", "churn_brier")
    assert clvlab.load_config({**CONFIG, "setting": "non_contractual"}).promotion_metrics == (
        "purchases_mae",
        "churn_roc_auc",
    )


def test_clvlab_serve_answers_subscriptions(trained):
    """``clvlab serve``'s answer to a request of subscriptions (as JSON has them) is the
    score table, as of params.as_of or, by default, the request date; transaction params
    are a 400."""
    import json

    from clvlab.serving.invocations import answer
    from clvlab.serving.served import load_served_model
    from clvlab.serving.workers import warm_up

    _, table, folder = trained
    model, described = load_served_model(str(folder / "model"))
    assert isinstance(model, ContractualModel) and described.startswith(str(folder / "model"))
    warm_up(model)  # what each worker does first, with a made-up subscription
    rows = table.head(40)
    records = [
        {
            "subscriber": subscriber,
            "began": f"{began:%Y-%m-%d}",
            "cancelled": "" if pd.isna(cancelled) else f"{cancelled:%Y-%m-%d}",
            "fee": fee,
        }
        for subscriber, began, cancelled, fee in rows.itertuples(index=False)
    ]
    body = {"dataframe_records": records, "params": {"as_of": "2022-06-30"}}
    reply = answer(model, json.dumps(body).encode())
    assert reply.status == 200, reply.body
    sent = json.loads(reply.body)
    assert sent["as_of"] == "2022-06-30" and sent["horizon_periods"] == 12
    expected = clvlab.score(model, rows, as_of="2022-06-30")
    got = pd.DataFrame(sent["predictions"])
    assert got["customer_id"].tolist() == expected["customer_id"].tolist()
    np.testing.assert_allclose(got["clv"].astype(float), expected["clv"], rtol=1e-12)
    assert got["start"].iloc[0] == f"{rows['began'].iloc[0]:%Y-%m-%d}"
    today = json.loads(answer(model, json.dumps({"dataframe_records": records}).encode()).body)
    assert today["as_of_source"].startswith("request date")
    bad = answer(model, json.dumps({**body, "params": {"horizon_days": 30}}).encode())
    assert bad.status == 400 and "takes as_of only" in json.loads(bad.body)["message"]
