import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clvlab import calibration_holdout, load_config
from clvlab.evaluation import metrics, plots
from clvlab.evaluation.backtest import backtest, choose_champions
from clvlab.evaluation.holdout import holdout_tracking
from clvlab.models.btyd import ParetoNBD
from clvlab.models.clv import CLVModel
from clvlab.training import backtest_settings

ROOT = Path(__file__).resolve().parents[2]
ONLINE_RETAIL = ROOT.parent / "shared" / "data" / "online_retail.parquet"


@pytest.fixture(scope="module")
def cdnow_backtest(cdnow_master):
    return backtest(cdnow_master, backtest_settings(load_config(ROOT / "configs" / "cdnow.yaml")))


def test_cdnow_holdout_metrics_are_the_known_ones(cdnow_backtest):
    table = cdnow_backtest.metrics
    assert list(table.index) == [
        "bgnbd_gamma_gamma",
        "mbgnbd_gamma_gamma",
        "pareto_nbd_gamma_gamma",
        "historical",
        "ensemble",
    ]
    # BG/NBD on the 39-week holdout: the values of the walking skeleton (equal to lifetimes).
    bgnbd = table.loc["bgnbd_gamma_gamma"]
    assert bgnbd["purchases_mae"] == pytest.approx(0.8187, abs=1e-4)
    assert bgnbd["churn_roc_auc"] == pytest.approx(0.7466, abs=1e-4)
    assert bgnbd["revenue_normalized_gini"] == pytest.approx(0.6721, abs=1e-4)
    assert table.loc["pareto_nbd_gamma_gamma", "purchases_mae"] == pytest.approx(0.7938, abs=1e-4)


def test_cdnow_champions_come_from_a_shortened_validation_window(cdnow_backtest):
    result = cdnow_backtest
    validation = result.windows["validation"]
    # 272 days precede the holdout: too few for a 273-day validation window.
    assert (validation.start.date().isoformat(), validation.days) == ("1997-05-17", 136)
    assert "shortened to 136 days" in result.notes[0]
    assert "gbm" in result.skipped and "273-day horizon" in result.skipped["gbm"]
    table = result.validation_metrics
    assert result.champions == {
        "purchases": table["purchases_mae"].idxmin(),
        "churn": table["churn_roc_auc"].idxmax(),
        "revenue": table["revenue_mae"].idxmin(),
    }
    # Pareto/NBD but for churn, where the blend of BG/NBD and the historical formula wins out
    # of fold (tests/evaluation/test_ensemble.py: the blend itself).
    assert result.champions == {
        "purchases": "pareto_nbd_gamma_gamma",
        "churn": "ensemble",
        "revenue": "pareto_nbd_gamma_gamma",
    }
    assert result.btyd_champions == dict.fromkeys(result.champions, "pareto_nbd_gamma_gamma")
    deciles = result.deciles["pareto_nbd_gamma_gamma"]
    assert deciles["customers"].sum() == 23_570
    assert deciles["share_of_actual"].sum() == pytest.approx(1.0)
    report = result.report()
    assert report["champions"] == result.champions and report["skipped"] == result.skipped
    assert report["ensemble_weights"] == result.blend.weights


def test_each_candidate_is_a_typed_result(cdnow_backtest, cdnow_master):
    result = cdnow_backtest
    assert set(result.candidates) == {"validation", "holdout"}
    holdout = result.candidates["holdout"]
    assert list(holdout) == list(result.metrics.index)
    pareto = holdout["pareto_nbd_gamma_gamma"]
    assert pareto.purchase_model == "pareto_nbd" and isinstance(pareto.model, CLVModel)
    assert isinstance(pareto.model.purchases, ParetoNBD)
    assert pareto.metrics == result.metrics.loc["pareto_nbd_gamma_gamma"].to_dict()
    assert len(pareto.predictions) == len(pareto.calibration) == 23_570
    historical = holdout["historical"]
    assert historical.model is None and historical.purchase_model is None
    assert result.btyd_candidates == {
        name: c.purchase_model for name, c in holdout.items() if c.purchase_model
    }
    # The figure is drawn from plain inputs: the predictions and the BTYD tracking curves.
    curves = result.tracking_curves(cdnow_master)
    assert set(curves) == set(result.btyd_candidates)
    window = result.windows["holdout"]
    figures = plots.backtest_figures(
        {name: c.predictions for name, c in holdout.items()},
        curves,
        start=window.start,
        end=window.end,
        time_unit="W",
        unit_days=7.0,
        run_name="cdnow",
    )
    assert set(figures) == {"backtest.png"}
    assert figures["backtest.png"].get_suptitle() == "cdnow: holdout 1997-09-30 to 1998-06-30"


def test_hourly_tracking_counts_purchase_hours_from_the_cutoffs_last_hour(sample_models):
    """For a model of time_unit H the tracking curve counts purchase hours, in hours from the
    cutoff's last hour (a date cutoff: 23:00), as the hourly calibration summary does."""
    tx = pd.DataFrame(
        {
            "customer_id": ["a", "a", "a", "a", "b", "b"],
            "date": pd.to_datetime(
                [
                    "2021-01-04 09:00",
                    "2021-01-05 02:10",
                    "2021-01-05 02:40",  # the same hour as 02:10: one purchase
                    "2021-01-05 13:00",
                    "2021-01-04 20:00",
                    "2021-01-05 05:59",
                ]
            ),
            "amount": 1.0,
        }
    )
    calibration = calibration_holdout(tx, "2021-01-04", "2021-01-05", freq="H")
    model = CLVModel(*sample_models, time_unit="H")
    after = tx[tx["date"] >= pd.Timestamp("2021-01-05")]
    curve = holdout_tracking(model, calibration, after, pd.Timestamp("2021-01-04"), points=4)
    assert curve["time"].tolist() == [6.0, 12.0, 18.0, 24.0]
    # Hours after 23:00: a's 02:00 (3) and 13:00 (14), b's 05:00 (6).
    assert curve["actual"].tolist() == [2, 2, 3, 3]
    history = [calibration[c].to_numpy() for c in ("frequency_cal", "recency_cal", "T_cal")]
    expected = [model.purchases.expected_purchases(t, *history).sum() for t in (6, 12, 18, 24)]
    np.testing.assert_allclose(curve["predicted"], expected, rtol=1e-9)


def test_choose_champions_by_rule():
    table = pd.DataFrame(
        {"purchases_mae": [0.9, 0.8, np.nan], "churn_roc_auc": [0.7, np.nan, 0.75]},
        index=["a", "b", "c"],
    )
    rule = {"purchases": "purchases_mae", "churn": "churn_roc_auc", "revenue": "revenue_mae"}
    # NaN never wins; a metric nobody has (count-only data: revenue) names no champion.
    assert choose_champions(table, rule) == {"purchases": "b", "churn": "c"}


def test_new_metrics_hand_computed():
    actual = np.array([10.0, 0, 0, 5, 0, 0, 0, 0, 0, 0])
    predicted = np.arange(10.0)[::-1]
    assert metrics.top_decile_capture(actual, predicted) == pytest.approx(10 / 15)
    assert metrics.brier([1, 0, 1], [0.5, 0.5, 1.0]) == pytest.approx((0.25 + 0.25) / 3)
    assert metrics.spearman([1, 2, 3], [10, 30, 20]) == pytest.approx(0.5)
    table = metrics.decile_table(actual, predicted)
    assert table["share_of_actual"].tolist()[:4] == pytest.approx([2 / 3, 0, 0, 1 / 3])
    curve = metrics.calibration_curve([1, 0, 1, 1], [0.05, 0.5, 0.55, 0.95])
    assert curve["observed"].tolist() == [1.0, 0.5, 1.0]


@pytest.mark.filterwarnings("ignore::UserWarning")  # 60 customers: the fits warn
def test_too_few_customers_for_the_ensemble_is_a_note(cdnow_master):
    few = cdnow_master[cdnow_master["customer_id"].isin(cdnow_master["customer_id"].unique()[:60])]
    result = backtest(few, backtest_settings(load_config(ROOT / "configs" / "cdnow.yaml")))
    assert "ensemble" not in result.metrics.index and result.blend is None
    assert any(note.startswith("ensemble skipped: 60 customers") for note in result.notes)


def test_a_selection_metric_must_judge_its_target():
    from clvlab.errors import ConfigError

    config = load_config(ROOT / "configs" / "cdnow.yaml")
    settings = backtest_settings(config)
    with pytest.raises(ConfigError, match="'churn_roc_auc' judges churn, not purchases"):
        dataclasses.replace(settings, selection={"purchases": "churn_roc_auc"})
    with pytest.raises(ConfigError, match="unknown target 'purchase'"):
        dataclasses.replace(settings, selection={"purchase": "purchases_mae"})
