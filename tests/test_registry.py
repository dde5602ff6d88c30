"""The model registry: register, promote only the better version, promote by hand; provenance
and reproducible runs; a model that loads without clvlab installed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

import clvlab
import simulators
import stores
from clvlab.data.fingerprint import fingerprint
from clvlab.evaluation.metrics import METRICS
from clvlab.tracking.registry import promote, versions

SAMPLE = {
    "data": {"source": "lifetimes:CDNOW_sample", "amount": "amount"},
    "split": {"calibration_end": "1997-09-30", "holdout_end": "1998-06-30"},
    "tracking": {"figures": False},
}


#: BG/NBD for every target, and the only candidate in the backtest (a quicker training). No
#: GBM candidate: nothing here checks it, and on the "other" window (181 days after 364 of
#: history) it would be trained twice, most of the module's time.
BGNBD_ONLY = {"purchases": "bgnbd", "candidates": ["bgnbd"], "gbm": {"enabled": False}}


def config(name: str, **overrides) -> dict:
    return {"name": name, **SAMPLE, **overrides}


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory):
    """Three trainings registered under one name in a private store: the champions, BG/NBD
    pinned, and a version evaluated on another holdout window."""
    folder = tmp_path_factory.mktemp("registry")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        patch.setenv("MLFLOW_TRACKING_URI", stores.new_store(folder / "mlflow.db"))
        first = clvlab.train(config("first"), register="clv")
        pinned = clvlab.train(config("pinned", models=BGNBD_ONLY), register="clv")
        other = clvlab.train(
            {
                **config("other", models=BGNBD_ONLY),
                "split": {"calibration_end": "1997-12-31", "holdout_end": "1998-06-30"},
            },
            register="clv",
        )
        yield {"first": first, "pinned": pinned, "other": other}


def test_first_version_becomes_champion_and_challenger(registry):
    decision = registry["first"].registry
    assert decision.version == "1" and decision.promoted and decision.previous_champion is None
    client = mlflow.MlflowClient()
    version = client.get_model_version("clv", "1")
    assert float(version.tags["holdout.purchases_mae"]) == pytest.approx(
        registry["first"].champion_metrics["purchases_mae"]
    )
    assert version.tags["clvlab.holdout_window"] == "1997-09-30..1998-06-30"
    assert (
        version.tags["clvlab.data_fingerprint"] == registry["first"].tags["clvlab.data_fingerprint"]
    )


def test_champion_moves_only_to_a_better_version(registry):
    decision = registry["pinned"].registry
    first, pinned = registry["first"].champion_metrics, registry["pinned"].champion_metrics
    # By hand: the default rule wants no metric worse and one better.
    verdicts = []
    for metric in ("purchases_mae", "churn_roc_auc"):
        sign = 1 if METRICS[metric].greater_is_better else -1
        difference = sign * (pinned[metric] - first[metric])
        verdicts.append("better" if difference > 0 else "worse" if difference < 0 else "equal")
        assert decision.comparison[metric]["verdict"] == verdicts[-1]
        assert decision.comparison[metric]["champion"] == pytest.approx(first[metric])
    assert decision.promoted == ("better" in verdicts and "worse" not in verdicts)
    assert decision.previous_champion == "1" and decision.version == "2"
    text = decision.to_text()
    assert "purchases_mae" in text and "churn_roc_auc" in text
    run = mlflow.MlflowClient().get_run(registry["pinned"].run_id)
    assert run.data.tags["clvlab.registry_decision"] == (
        "promoted" if decision.promoted else "kept"
    )


def test_another_holdout_window_is_not_comparable(registry):
    decision = registry["other"].registry
    assert not decision.promoted and "not comparable" in decision.reason
    assert "clvlab promote clv 3" in decision.reason
    client = mlflow.MlflowClient()
    assert str(client.get_model_version_by_alias("clv", "challenger").version) == "3"


def test_promote_by_hand_records_who_and_why_and_scores_by_alias(registry):
    before = versions("clv")
    champion = before.loc[before["aliases"].str.contains("champion"), "version"].item()
    previous = promote("clv", "3", reason="new holdout window reviewed", by="analyst")
    assert previous == str(champion)
    table = versions("clv")
    assert list(table["version"]) == [3, 2, 1]
    row = table.iloc[0]
    assert "champion" in row["aliases"] and "challenger" in row["aliases"]
    assert (row["promoted_by"], row["promotion_reason"]) == (
        "analyst",
        "new holdout window reviewed",
    )
    scores = clvlab.score("models:/clv@champion", "lifetimes:CDNOW_sample", as_of="1998-06-30")
    expected = clvlab.score(registry["other"].model, "lifetimes:CDNOW_sample", as_of="1998-06-30")
    assert set(scores["model_version"]) == {"models:/clv/3"}  # the registry version
    pd.testing.assert_frame_equal(
        scores.drop(columns="model_version"), expected.drop(columns="model_version")
    )
    with pytest.raises(clvlab.ClvlabError, match="has no version 9"):
        promote("clv", "9", reason="x")


def test_run_records_provenance_and_environment(registry):
    result = registry["first"]
    tags = mlflow.MlflowClient().get_run(result.run_id).data.tags
    for key in (
        "clvlab.version",
        "clvlab.git_commit",
        "clvlab.data_fingerprint",
        "clvlab.config_hash",
    ):
        assert tags[key] == result.tags[key]
    assert tags["clvlab.version"] == clvlab.__version__
    assert result.tags["clvlab.config_hash"] == clvlab.load_config(config("first")).fingerprint()
    environment = mlflow.artifacts.load_dict(f"runs:/{result.run_id}/environment.json")
    assert environment["lightgbm"] and environment["mlflow"] == mlflow.__version__
    model = mlflow.models.Model.load(result.model_uri)
    assert model.metadata["clvlab.data_fingerprint"] == result.tags["clvlab.data_fingerprint"]


def test_fingerprint_ignores_row_order_and_sees_every_value(cdnow_sample):
    shuffled = cdnow_sample.sample(frac=1.0, random_state=0)
    assert fingerprint(shuffled) == fingerprint(cdnow_sample)
    changed = cdnow_sample.copy()
    changed.loc[5, "amount"] += 0.01
    assert fingerprint(changed) != fingerprint(cdnow_sample)
    assert fingerprint(cdnow_sample.assign(extra=1)) == fingerprint(cdnow_sample)


def test_same_config_same_data_same_params_and_metrics(in_tmp):
    """With a GBM candidate trained (simulated data with a 60-day holdout), twice."""
    transactions = simulators.simulate_transactions(np.random.default_rng(3), 800)
    transactions.to_csv(in_tmp / "tx.csv", index=False)
    run_config = {
        "name": "twice",
        "data": {"source": str(in_tmp / "tx.csv"), "amount": "amount"},
        "split": {"calibration_end": "2024-04-25", "holdout_end": "2024-06-24"},
        "tracking": {"figures": False},
        "time_unit": "D",
        "models": {
            "candidates": ["bgnbd"],
            "gbm": {"static_columns": ["segment"], "n_estimators": 40, "max_origins": 3},
        },
        "scoring": {"horizon_days": 60},
    }
    first, second = clvlab.train(run_config), clvlab.train(run_config)
    assert "gbm" in first.metrics.index
    pd.testing.assert_frame_equal(first.metrics, second.metrics, check_exact=True)
    assert first.params == second.params
    assert first.tags == second.tags and first.model.label() == second.model.label()


def test_model_loads_without_clvlab_installed(in_tmp):
    """The model carries clvlab's source: a process that cannot import the installed clvlab
    still loads and scores it, with the copy inside the model."""
    result = clvlab.train(config("portable", models=BGNBD_ONLY), export="portable")
    expected = clvlab.score(result.model, "lifetimes:CDNOW_sample", as_of="1998-06-30")
    transactions = clvlab.read_transactions("lifetimes:CDNOW_sample")
    transactions.to_parquet(in_tmp / "tx.parquet")
    installed = str(Path(clvlab.__file__).resolve().parents[1])
    code = f"""
import sys
sys.path = [p for p in sys.path if p.rstrip("/") != {installed!r}]
import importlib.util
assert importlib.util.find_spec("clvlab") is None, "clvlab is still importable"
import mlflow, pandas as pd
model = mlflow.pyfunc.load_model({str(result.local_path)!r})
out = model.predict(pd.read_parquet("tx.parquet"), params={{"as_of": "1998-06-30"}})
import clvlab
print(clvlab.__file__)
out.to_parquet("scores.parquet")
"""
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=in_tmp, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert str(result.local_path) in done.stdout
    pd.testing.assert_frame_equal(pd.read_parquet(in_tmp / "scores.parquet"), expected)
    config_file = result.local_path / "artifacts" / "run_config.yaml"
    assert "portable" in config_file.read_text()
    assert json.loads(json.dumps(result.report()))["tags"] == result.tags
