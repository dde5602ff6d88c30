"""Segments: quintile RFM scores and named segments, value and churn tiers, with cut points
fixed at training and kept with the model, in every score table."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pandas as pd
import pytest

import clvlab
import stores
from clvlab import CLVModel
from clvlab.batch import score_to_file
from clvlab.scoring import SCORE_COLUMNS
from clvlab.segments import (
    SEGMENT_COLUMNS,
    SegmentRules,
    add_segments,
    fit_segment_rules,
)
from clvlab.serving.invocations import records_json

AS_OF = "1998-06-30"
#: Ten customers, the i-th with i repeat purchases, 10 * (9 - i) days since the last one,
#: spending 10 * i per repeat purchase, clv i and p_churn falling with i.
TEN = pd.DataFrame(
    {
        "customer_id": [f"c{i}" for i in range(10)],
        "frequency": np.arange(10.0),
        "recency": 100.0 - 10.0 * (9 - np.arange(10)),
        "T": np.full(10, 100.0),
        "monetary_value": 10.0 * np.arange(10),
        "expected_purchases": np.arange(10.0) / 10,
        "clv": np.arange(10.0),
        "p_churn": [0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1],
    }
)


def fit(table: pd.DataFrame) -> SegmentRules:
    return fit_segment_rules(table, unit_days=1.0, horizon_days=365.0)


def segments_of(table: pd.DataFrame, rules: SegmentRules, horizon_days: float = 365.0):
    return add_segments(table, rules, unit_days=1.0, horizon_days=horizon_days)


def test_quintiles_segments_and_tiers_by_hand():
    rules = fit(TEN)
    # np.quantile of 0, 1, ..., 9 at 20 % is 1.8 (linear interpolation, as pandas.qcut).
    assert rules.frequency == pytest.approx((1.8, 3.6, 5.4, 7.2))
    assert rules.recency_days == pytest.approx((18, 36, 54, 72))
    assert rules.monetary_value == pytest.approx((18, 36, 54, 72))
    assert rules.value_column == "clv" and rules.value == pytest.approx((4.5, 7.2, 8.55))
    assert rules.churn == (0.3, 0.7)
    table = segments_of(TEN, rules)
    assert list(table.columns) == [*TEN.columns, *SEGMENT_COLUMNS]
    pairs = [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert table["r_score"].tolist() == pairs  # the most recent fifth scores 5
    assert table["f_score"].tolist() == pairs
    assert table["f_score"].tolist() == (pd.qcut(TEN["frequency"], 5, labels=False) + 1).tolist()
    assert table["m_score"].tolist() == pairs
    assert table["rfm_segment"].tolist() == [
        *["hibernating"] * 4,
        *["need_attention"] * 2,
        *["loyal_customers"] * 2,
        *["champions"] * 2,
    ]
    assert table["value_tier"].tolist() == [*["low"] * 5, *["medium"] * 3, "high", "top"]
    # A p_churn equal to a threshold goes with the tier below it.
    assert table["churn_tier"].tolist() == [*["high"] * 3, *["medium"] * 4, *["low"] * 3]


def test_fm_is_the_mean_of_f_and_m_rounded_half_up_and_cut_points_go_below():
    rules = SegmentRules(
        recency_days=(10, 20, 30, 40),
        frequency=(0, 1, 2, 3),
        monetary_value=(10, 20, 30, 40),
        value_column="clv",
        value=(1, 2, 3),
        churn=(0.3, 0.7),
        horizon_days=365.0,
    )
    table = pd.DataFrame(
        {
            "frequency": [3.0, 0.0, 5.0, np.nan],
            "recency": [0.0, 0.0, 0.0, np.nan],
            "T": [10.0, 25.0, 41.0, np.nan],
            "monetary_value": [45.0, 15.0, 5.0, np.nan],
            "clv": [3.0, 0.5, 9.0, np.nan],
            "p_churn": [0.1, 0.5, 0.9, np.nan],
        }
    )
    segmented = segments_of(table, rules)
    scores = segmented[["r_score", "f_score", "m_score"]].astype(object).values.tolist()
    assert scores[:3] == [[5, 4, 5], [3, 1, 2], [1, 5, 1]]
    # FM: (4 + 5) / 2 -> 5; (1 + 2) / 2 -> 2; (5 + 1) / 2 = 3.
    assert segmented["rfm_segment"].tolist()[:3] == ["champions", "about_to_sleep", "at_risk"]
    assert segmented["value_tier"].tolist()[:3] == ["high", "low", "top"]
    assert segmented[SEGMENT_COLUMNS].iloc[3].isna().all()  # a customer without scores
    assert segmented["r_score"].dtype == "Int64" and segmented["rfm_segment"].dtype == "string"
    # At another horizon the value and churn cut points do not hold: no tiers.
    elsewhere = segments_of(table, rules, horizon_days=90.0)
    assert elsewhere[["value_tier", "churn_tier"]].isna().all().all()
    assert elsewhere["rfm_segment"].tolist()[:3] == segmented["rfm_segment"].tolist()[:3]


def test_count_only_segments_from_r_and_f_and_value_from_expected_purchases():
    count_only = TEN.assign(monetary_value=np.nan, clv=np.nan)
    rules = fit(count_only)
    assert rules.monetary_value is None and rules.value_column == "expected_purchases"
    assert rules.value == pytest.approx((0.45, 0.72, 0.855))
    table = segments_of(count_only, rules)
    assert table["m_score"].isna().all()
    assert table["rfm_segment"].tolist() == segments_of(TEN, fit(TEN))["rfm_segment"].tolist()
    assert table["value_tier"].tolist() == [*["low"] * 5, *["medium"] * 3, "high", "top"]
    assert SegmentRules.from_dict(json.loads(json.dumps(rules.to_dict()))) == rules


def test_rules_must_cover_the_grid_and_name_every_tier():
    with pytest.raises(clvlab.ClvlabError, match="5 x 5 R x FM grid"):
        SegmentRules(
            recency_days=(1, 2, 3, 4),
            frequency=(1, 2, 3, 4),
            monetary_value=None,
            value_column="clv",
            value=(1, 2),
            churn=(0.5,),
            horizon_days=365.0,
        )


def test_segments_config_defaults_and_checks():
    base = {
        "name": "x",
        "data": {"source": "x.csv"},
        "split": {"calibration_end": "2020-01-01", "holdout_end": "2020-06-01"},
    }
    segments = clvlab.load_config(base).segments
    assert segments.enabled and segments.value_tiers == (0.5, 0.8, 0.95)
    assert segments.churn_tiers == (0.3, 0.7)
    with pytest.raises(clvlab.ConfigError, match="value_tiers must increase strictly"):
        clvlab.load_config({**base, "segments": {"value_tiers": [0.5, 0.4, 0.9]}})


def test_a_model_with_rules_round_trips_through_json(sample_models, cdnow_sample):
    purchases, spend = sample_models
    plain = CLVModel(purchases=purchases, spend=spend, time_unit="W")
    scores = clvlab.score(plain, cdnow_sample, as_of=AS_OF)
    rules = fit_segment_rules(scores, unit_days=7, horizon_days=365)
    model = CLVModel(purchases=purchases, spend=spend, time_unit="W", segments=rules)
    state = json.loads(json.dumps(model.to_dict()))
    assert state["format"] == "clvlab.CLVModel/3"
    again = CLVModel.from_dict(state)
    assert again.segments == rules
    assert again.to_dict() == state
    pd.testing.assert_frame_equal(
        clvlab.score(again, cdnow_sample, as_of=AS_OF),
        add_segments(scores, rules, unit_days=7, horizon_days=365),
    )
    # Without rules: format 2, as before (older clvlab versions read it), loaded with None.
    old = json.loads(json.dumps(plain.to_dict()))
    assert old["format"] == "clvlab.CLVModel/2" and "segments" not in old
    assert CLVModel.from_dict(old).segments is None


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    """One BG/NBD training on the CDNOW sample in a private store: the result, the run's
    artifacts, the segment rules it logged and the store."""
    folder = tmp_path_factory.mktemp("segments")
    store = stores.new_store(folder / "mlflow.db")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        patch.setenv("MLFLOW_TRACKING_URI", store)
        result = clvlab.train(
            {
                "name": "segments",
                "data": {"source": "lifetimes:CDNOW_sample", "amount": "amount"},
                "split": {"calibration_end": "1997-09-30", "holdout_end": "1998-06-30"},
                "models": {"purchases": "bgnbd", "candidates": ["bgnbd"]},
            }
        )
        artifacts = {item.path for item in mlflow.MlflowClient().list_artifacts(result.run_id)}
        logged = mlflow.artifacts.load_dict(f"runs:/{result.run_id}/segment_rules.json")
    return result, artifacts, logged, store


@pytest.fixture(scope="module")
def scores(trained, cdnow_sample) -> pd.DataFrame:
    return clvlab.score(trained[0].model, cdnow_sample, as_of=AS_OF)


def test_training_fits_the_rules_and_logs_them_with_the_segment_map(trained, scores):
    result, artifacts, logged, _ = trained
    rules = result.model.segments
    assert rules is not None and rules.value_column == "clv"
    assert {"segment_map.png", "segment_rules.json", "backtest.png"} <= artifacts
    assert logged == rules.to_dict()
    assert list(scores.columns) == SCORE_COLUMNS + SEGMENT_COLUMNS
    assert scores[SEGMENT_COLUMNS].notna().all().all()
    assert set(scores["r_score"]) <= {1, 2, 3, 4, 5}
    # The cut points are the training customers' (scored at the end of the data): their own
    # value tiers split them at the configured quantiles.
    shares = scores["value_tier"].value_counts(normalize=True)
    assert shares["low"] == pytest.approx(0.5, abs=0.01)
    assert shares["top"] == pytest.approx(0.05, abs=0.01)


def test_a_customers_segment_does_not_move_when_others_do(trained, scores, cdnow_sample):
    model = trained[0].model
    ids = cdnow_sample["customer_id"].drop_duplicates()
    kept, others = ids.iloc[:100], ids.iloc[100:1000]
    # The others all bought again on the last day, and the rest of the customers are gone.
    changed = pd.concat(
        [
            cdnow_sample[cdnow_sample["customer_id"].isin(ids.iloc[:1000])],
            pd.DataFrame(
                {"customer_id": others.to_numpy(), "date": pd.Timestamp(AS_OF), "amount": 100.0}
            ),
        ]
    )
    rescored = clvlab.score(model, changed, as_of=AS_OF).set_index("customer_id")
    before = scores.set_index("customer_id")
    pd.testing.assert_frame_equal(
        rescored.loc[kept, SEGMENT_COLUMNS], before.loc[kept, SEGMENT_COLUMNS]
    )
    assert (rescored.loc[others, "r_score"] == 5).all()
    # Cut points fitted afresh on the changed population would have moved.
    refitted = fit_segment_rules(rescored, unit_days=7, horizon_days=365)
    assert refitted.recency_days != model.segments.recency_days


def test_batch_parts_pyfunc_and_served_json_have_the_segments(
    trained, scores, cdnow_sample, tmp_path
):
    result, _, _, store = trained
    batch = score_to_file(
        result.model, cdnow_sample, tmp_path / "parts.parquet", as_of=AS_OF, partition_rows=2_000
    )
    assert batch.partitions > 1
    parts = pd.read_parquet(tmp_path / "parts.parquet").sort_values("customer_id")
    pd.testing.assert_frame_equal(parts.reset_index(drop=True), scores, check_dtype=False)
    score_to_file(
        result.model, cdnow_sample, tmp_path / "scores.csv", as_of=AS_OF, partition_rows=2_000
    )
    from_csv = pd.read_csv(tmp_path / "scores.csv", dtype={"customer_id": str})
    assert list(from_csv.columns) == SCORE_COLUMNS + SEGMENT_COLUMNS
    by_id = from_csv.set_index("customer_id").loc[scores["customer_id"]]  # parts in hash order
    assert by_id["rfm_segment"].tolist() == scores["rfm_segment"].tolist()

    one = cdnow_sample[cdnow_sample["customer_id"] == "1"]
    expected = scores[scores["customer_id"] == "1"].reset_index(drop=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", store)
        pyfunc = mlflow.pyfunc.load_model(result.model_uri)
        predicted = pyfunc.predict(one, params={"as_of": AS_OF, "horizon_days": 365.0})
    pd.testing.assert_frame_equal(predicted, expected)

    # What clvlab serve answers: customer 1, and one who bought only after as_of.
    later = pd.DataFrame({"customer_id": ["z"], "date": [pd.Timestamp("1998-07-01")]})
    table = clvlab.score(result.model, pd.concat([one, later.assign(amount=1.0)]), as_of=AS_OF)
    first, unscored = json.loads(records_json(table))
    assert list(first) == SCORE_COLUMNS + SEGMENT_COLUMNS
    assert first["r_score"] == expected["r_score"].iloc[0] and type(first["r_score"]) is int
    assert first["rfm_segment"] == expected["rfm_segment"].iloc[0]
    assert unscored["reason"] and all(unscored[column] is None for column in SEGMENT_COLUMNS)
