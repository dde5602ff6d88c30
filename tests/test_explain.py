"""Why this score (issue 18, item 3): reasons in plain words from the GBM's feature
contributions, and the RFM position for the other sources."""

import numpy as np
import pandas as pd
import pytest

import clvlab
import simulators
from clvlab import BetaGeo, CLVModel, GammaGamma, rfm
from clvlab.cli import main
from clvlab.explain import REASON_COLUMNS, feature_phrase, gbm_reasons, rfm_reasons
from clvlab.features.windows import PurchaseDays, customer_covariates
from clvlab.models.clv import TargetSource
from clvlab.models.gbm import GBMPredictor

HORIZON = 90
AS_OF = pd.Timestamp("2023-01-02") + pd.Timedelta(days=449)


@pytest.fixture(scope="module")
def simulated():
    transactions = simulators.simulate_transactions(np.random.default_rng(11), 800)
    return transactions[transactions["date"] <= AS_OF].reset_index(drop=True)


@pytest.fixture(scope="module")
def model(simulated):
    """BG/NBD for purchases and revenue, a small GBM (with a covariate) for churn."""
    summary = rfm(simulated, AS_OF, freq="D")
    gbm = GBMPredictor(HORIZON, unit_days=1.0, n_estimators=60, max_origins=3)
    gbm.fit(
        PurchaseDays.from_transactions(simulated),
        AS_OF,
        customer_covariates(simulated, ["segment"]),
    )
    bgnbd = BetaGeo().fit(summary)
    return CLVModel(
        purchases=bgnbd,
        spend=GammaGamma().fit(summary[summary["frequency"] > 0]),
        time_unit="D",
        horizon_days=HORIZON,
        sources={"churn": TargetSource("gbm", bgnbd)},
        gbm=gbm,
        covariates=("segment",),
    )


@pytest.mark.parametrize(
    ("feature", "value", "words"),
    [
        ("days_since_last", 120.0, "no purchase in the last 120 days"),
        ("purchases_90d", 3.0, "3 purchases in the last 90 days"),
        ("revenue_365d", 1234.5, "spent 1,234 in the last 365 days"),
        ("spend_trend", 0.8, "spend trend down (0.80x the mean)"),
        ("spend_trend", 1.25, "spend trend up (1.25x the mean)"),
        ("gap_mean_days", 30.0, "buys every 30 days on average"),
        ("gap_mean_days", float("nan"), "one purchase only"),
        ("overdue_ratio", 4.0, "4.0x the usual gap since the last purchase"),
        ("segment", "B", "segment = B"),
    ],
)
def test_features_are_said_in_plain_words(feature, value, words):
    assert feature_phrase(feature, value) == words


def test_rfm_position_by_hand():
    summary = pd.DataFrame(
        {"frequency": [0.0, 2.0, 4.0], "recency": [0.0, 4.0, 16.0], "T": [10.0, 20.0, 18.0]}
    )
    assert list(rfm_reasons(summary, unit_days=7.0)) == [
        "one purchase only, 70 days ago",
        # every 14 days (4 weeks over 2 repeat purchases), the last 112 days ago
        "long gap since the last purchase (112 days) for a buyer every 14 days (3 purchases)",
        "buys every 28 days (5 purchases), the last 14 days ago",
    ]


def test_gbm_reasons_are_its_largest_contributions(model, simulated):
    history = PurchaseDays.from_transactions(simulated)
    covariates = customer_covariates(simulated, ["segment"])
    reasons = gbm_reasons(model.gbm, history, AS_OF, covariates, targets=("churn",))
    _, matrix = model.gbm.feature_matrix(history, AS_OF, covariates)
    contributions = model.gbm.boosters_["churn"].predict(matrix, pred_contrib=True)[:, :-1]
    for row in (0, 17, 250):
        said = reasons[REASON_COLUMNS["churn"]].iloc[row].split("; ")
        assert len(said) == 3
        top = np.argsort(-np.abs(contributions[row]))[:3]
        for words, column in zip(said, top, strict=True):
            name = model.gbm.feature_names_[column]
            direction = "raises" if contributions[row, column] > 0 else "lowers"
            value = matrix.iloc[row, column]
            assert words == f"{feature_phrase(name, value)} ({direction} churn)"


def test_score_explains_each_target_by_its_source(model, simulated):
    scores = clvlab.score(model, simulated, as_of=AS_OF, explain=True)
    plain = clvlab.score(model, simulated, as_of=AS_OF)
    assert list(scores.columns) == [*plain.columns, *REASON_COLUMNS.values()]
    pd.testing.assert_frame_equal(scores[plain.columns], plain)
    # Churn from the GBM: three contributions; purchases and revenue from BG/NBD: the RFM
    # position, the same words for both.
    churn = scores["reasons_churn"].str.split("; ")
    assert (churn.str.len() == 3).all() and churn.str[0].str.endswith("churn)").all()
    assert (scores["reasons_purchases"] == scores["reasons_revenue"]).all()
    summary = rfm(simulated, AS_OF, freq="D")
    expected = pd.Series(rfm_reasons(summary, 1.0), index=summary.index)
    by_id = scores.set_index("customer_id")
    assert (by_id["reasons_purchases"] == expected.reindex(by_id.index)).all()
    # Scored for another horizon the GBM gives way, and so do its reasons.
    other = clvlab.score(model, simulated, as_of=AS_OF, horizon_days=30, explain=True)
    assert (other["reasons_churn"] == other["reasons_purchases"]).all()


def test_the_command_line_explains_and_refuses_spark(model, simulated, tmp_path, capsys):
    model.save(tmp_path / "model.json")
    transactions = simulated.copy()
    transactions.attrs.clear()  # the simulator's truth, not for Parquet's metadata
    transactions.to_parquet(tmp_path / "tx.parquet")
    args = ["score", "--model", str(tmp_path / "model.json"), "--transactions"]
    args += [str(tmp_path / "tx.parquet"), "--as-of", str(AS_OF.date()), "--output"]
    assert main([*args, str(tmp_path / "s.csv"), "--explain"]) == 0
    written = pd.read_csv(tmp_path / "s.csv")
    assert written["reasons_churn"].str.contains("churn\\)").all()
    assert main([*args, str(tmp_path / "t.parquet"), "--explain", "--engine", "spark"]) == 2
    assert "--explain scores on one machine only" in capsys.readouterr().err
    assert not (tmp_path / "t.parquet").exists()
