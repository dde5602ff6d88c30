"""`clvlab train` then `clvlab score`, as a user runs them, on a temporary MLflow store."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import clvlab
import readme
from clvlab.models.btyd import BTYDConvergenceWarning
from clvlab.scoring import ALL_EXCLUDED, NO_HISTORY
from clvlab.scoring import SCORE_COLUMNS as SCORE_COLUMNS_ALL
from clvlab.segments import SEGMENT_COLUMNS

ROOT = Path(__file__).resolve().parents[1]
VENV = Path(sys.executable).parents[1]
SCORE_COLUMNS = [
    "customer_id",
    "frequency",
    "recency",
    "T",
    "monetary_value",
    "p_alive",
    "p_churn",
    "expected_purchases",
    "expected_spend",
    "expected_revenue",
    "clv",
]
HOLDOUT_METRICS = {
    "purchases_mae",
    "purchases_rmse",
    "purchases_bias_pct",
    "churn_roc_auc",
    "revenue_normalized_gini",
}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh copy of the project as the README's "Use" section expects it: its configs and
    the venv that `make train` built (and CDNOW as a CSV file, for the tests below)."""
    folder = tmp_path_factory.mktemp("e2e") / "clvlab"
    shutil.copytree(ROOT / "configs", folder / "configs")
    (folder / ".venv").symlink_to(VENV)
    clvlab.read_transactions("lifetimes:CDNOW_master").to_csv(folder / "cdnow.csv", index=False)
    return folder


@pytest.fixture(scope="module")
def readme_use(workdir: Path) -> subprocess.CompletedProcess:
    """The commands of the README's "Use" section, in order, as one bash script that stops at
    the first failure: clvlab's default store in a private home, no MLFLOW_TRACKING_URI.
    They train and export the default CDNOW model the other tests of this module use."""
    if shutil.which("curl") is None:
        pytest.fail("the README's Use section calls curl, which is not installed")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["CLVLAB_HOME"] = str(workdir.parent / "home")
    script = "\n".join(readme.shell_blocks(readme.section("Use")))
    assert "clvlab train" in script and "clvlab serve" in script
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def env(workdir: Path) -> dict[str, str]:
    """The environment of the commands below: the store the README's commands trained in."""
    home = workdir.parent / "home"
    return {**os.environ, "CLVLAB_HOME": str(home), "MLFLOW_TRACKING_URI": store_uri(home)}


def store_uri(home: Path) -> str:
    return f"sqlite:///{home / 'mlruns' / 'mlflow.db'}"


@pytest.fixture(scope="module")
def trained(readme_use: subprocess.CompletedProcess, workdir: Path) -> dict:
    """The report of the README's first `clvlab train` (version 1 of ``cdnow``)."""
    assert re.search(r"MLflow UI: \S*mlflow ui --backend-store-uri sqlite:///", readme_use.stdout)
    assert "purchases_mae" in readme_use.stdout
    return json.loads((workdir / "report.json").read_text())


def test_the_readme_use_section_runs_as_written(readme_use, workdir):
    scores = pd.read_parquet(workdir / "scores.parquet")
    assert list(scores.columns) == SCORE_COLUMNS_ALL + SEGMENT_COLUMNS and len(scores) == 23_570
    assert set(scores["model_version"]) == {"models:/cdnow/1"}
    by_part = pd.read_parquet(workdir / "parts.parquet")
    assert len(list((workdir / "parts.parquet").glob("*.parquet"))) > 1
    pd.testing.assert_frame_equal(
        by_part.sort_values("customer_id").reset_index(drop=True), scores, check_dtype=False
    )
    assert "champion: moved to version 1" in readme_use.stdout
    assert "cdnow: champion -> version 2" in readme_use.stdout
    # The served answer is strict JSON for the one posted customer.
    assert '"customer_id":"7"' in readme_use.stdout.replace(" ", "")
    assert (workdir.parent / "home" / "mlruns" / "mlflow.db").is_file()
    assert not (workdir / "mlruns").exists()


def test_train_reports_every_holdout_metric(trained):
    metrics = trained["holdout_metrics"]["bgnbd_gamma_gamma"]
    assert set(metrics) >= HOLDOUT_METRICS
    # The purchase interval's coverage is checked for the model the scores' intervals come
    # from (Pareto/NBD here): 88.5 % of the holdout customers inside the 90 % interval.
    assert metrics.pop("interval_coverage") is None
    assert all(np.isfinite(value) for value in metrics.values())
    coverage = trained["holdout_metrics"]["pareto_nbd_gamma_gamma"]["interval_coverage"]
    assert coverage == pytest.approx(0.8845, abs=1e-4) and 0.85 < coverage < 0.95
    assert 0.5 < metrics["churn_roc_auc"] <= 1 and 0 < metrics["revenue_normalized_gini"] <= 1
    # On the validation window Pareto/NBD wins purchases and revenue, and for churn the blend
    # of BG/NBD (0.87) and the historical formula (0.13) beats every single candidate out of
    # fold (AUC 0.7071 against Pareto/NBD's 0.7058); on the holdout it has 0.7668 (0.7627).
    # The GBM cannot be trained for a 273-day horizon on 272 days of history, and the report
    # says so.
    assert trained["model"] == (
        "purchases=pareto_nbd, churn=ensemble(0.87 bgnbd + 0.13 historical), "
        "revenue=pareto_nbd_gamma_gamma"
    )
    assert trained["champions"] == {
        "purchases": "pareto_nbd_gamma_gamma",
        "churn": "ensemble",
        "revenue": "pareto_nbd_gamma_gamma",
    }
    weights = trained["ensemble_weights"]["churn"]
    assert list(weights) == ["bgnbd_gamma_gamma", "historical"]
    assert weights["bgnbd_gamma_gamma"] == pytest.approx(0.8747, abs=1e-3)
    assert trained["validation_metrics"]["ensemble"]["churn_roc_auc"] == pytest.approx(
        0.7071, abs=1e-4
    )
    assert "273-day horizon" in trained["skipped"]["gbm"]
    pareto, ensemble = (
        trained["holdout_metrics"][n] for n in ("pareto_nbd_gamma_gamma", "ensemble")
    )
    assert ensemble["churn_roc_auc"] == pytest.approx(0.7668, abs=1e-4)
    assert ensemble["churn_roc_auc"] > pareto["churn_roc_auc"] == pytest.approx(0.7627, abs=1e-4)
    for metric, value in trained["champion_metrics"].items():
        chosen = ensemble if metric.startswith("churn") else pareto
        assert value == chosen[metric], metric
    assert trained["data_report"]["customers"] == 23_570
    assert trained["data_report"]["rows_kept"] == 69_659


def test_train_logs_config_metrics_plot_and_model(trained, env):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    run_ = client.get_run(trained["run_id"])
    assert run_.data.params["split.calibration_end"] == "1997-09-30"
    assert run_.data.params["data.source"] == "lifetimes:CDNOW_master"
    assert run_.data.metrics["holdout.purchases_mae"] == pytest.approx(
        trained["champion_metrics"]["purchases_mae"]
    )
    assert run_.data.tags["clvlab.champion.churn"] == "ensemble"
    artifacts = {item.path for item in client.list_artifacts(trained["run_id"])}
    assert {"backtest.png", "data_report.json", "backtest_report.json", "model"} <= artifacts
    # One nested run per candidate, with its metrics on both windows.
    children = client.search_runs(
        [run_.info.experiment_id], f"tags.mlflow.parentRunId = '{trained['run_id']}'"
    )
    by_name = {child.info.run_name: child for child in children}
    assert set(by_name) == {
        "bgnbd_gamma_gamma",
        "mbgnbd_gamma_gamma",
        "pareto_nbd_gamma_gamma",
        "historical",
        "gbm",
        "ensemble",
    }
    bgnbd = by_name["bgnbd_gamma_gamma"].data.metrics
    assert bgnbd["holdout.purchases_mae"] == pytest.approx(
        trained["holdout_metrics"]["bgnbd_gamma_gamma"]["purchases_mae"]
    )
    assert bgnbd["validation.churn_roc_auc"] == pytest.approx(
        trained["validation_metrics"]["bgnbd_gamma_gamma"]["churn_roc_auc"]
    )
    assert by_name["pareto_nbd_gamma_gamma"].data.tags["clvlab.champion_for"] == (
        "purchases,revenue"
    )
    ensemble = by_name["ensemble"].data
    assert ensemble.tags["clvlab.champion_for"] == "churn"
    assert float(ensemble.params["weight.churn.historical"]) == pytest.approx(
        trained["ensemble_weights"]["churn"]["historical"], abs=1e-6
    )
    assert by_name["gbm"].data.tags["clvlab.skipped"] == trained["skipped"]["gbm"]
    model_files = {item.path for item in client.list_artifacts(trained["run_id"], "model")}
    assert "model/MLmodel" in model_files


def test_score_with_logged_model_uri(trained, workdir, env, cli):
    output = workdir / "run_scores.parquet"
    done = cli(
        [
            "score",
            "--model",
            trained["model_uri"],
            "--transactions",
            "cdnow.csv",
            "--as-of",
            "1998-06-30",
            "--horizon",
            "365",
            "--output",
            str(output),
        ],
        workdir,
        env,
    )
    assert done.returncode == 0, done.stderr
    scores = pd.read_parquet(output)
    assert list(scores.columns[: len(SCORE_COLUMNS)]) == SCORE_COLUMNS
    assert len(scores) == 23_570 and scores["customer_id"].is_unique
    assert not scores[SCORE_COLUMNS].isna().any().any()
    for column in ("p_alive", "p_churn"):
        assert scores[column].between(0, 1).all()
    assert (scores["expected_purchases"] >= 0).all() and (scores["expected_spend"] > 0).all()
    assert (scores["clv"] <= scores["expected_revenue"] + 1e-9).all()
    assert (scores["model_version"] == f"runs:/{trained['run_id']}/model").all()


def test_local_export_and_csv_output_score_the_same(trained, workdir, env, cli):
    done = cli(
        [
            "score",
            "--model",
            "models/cdnow",
            "--transactions",
            "cdnow.csv",
            "--as-of",
            "1998-06-30",
            "--horizon",
            "365",
            "--output",
            "run_scores.csv",
        ],
        workdir,
        env,
    )
    assert done.returncode == 0, done.stderr
    from_csv = pd.read_csv(workdir / "run_scores.csv", dtype={"customer_id": str})
    from_parquet = pd.read_parquet(workdir / "run_scores.parquet")
    for column in SCORE_COLUMNS[1:]:
        np.testing.assert_allclose(from_csv[column], from_parquet[column], rtol=1e-12)


def test_pyfunc_predict_equals_cli_scores(trained, workdir, env, monkeypatch):
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", env["MLFLOW_TRACKING_URI"])
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    transactions = clvlab.read_transactions(workdir / "cdnow.csv")
    pyfunc = mlflow.pyfunc.load_model(trained["model_uri"])
    predicted = pyfunc.predict(transactions, params={"as_of": "1998-06-30", "horizon_days": 365})
    written = pd.read_parquet(workdir / "run_scores.parquet")
    pd.testing.assert_frame_equal(predicted.reset_index(drop=True), written, check_dtype=False)


@pytest.mark.parametrize(
    ("csv", "message"),
    [
        ("customer_id,day,amount\n1,1997-01-01,3\n", r"missing date column 'date'"),
        (
            "customer_id,date,amount\n1,1997-01-01,3\n2,01/02/1997x,4\n",
            r"date column 'date'.*row 1: '01/02/1997x'",
        ),
        (
            "customer_id,date,amount\n1,1997-01-01,3\n2,1997-01-02,twelve\n",
            r"amount column 'amount'.*row 1: 'twelve'",
        ),
    ],
)
def test_bad_transactions_exit_2_with_clear_error_and_no_output(
    trained, workdir, env, csv, message, cli
):
    bad = workdir / "bad.csv"
    bad.write_text(csv)
    output = workdir / "bad_scores.parquet"
    done = cli(
        ["score", "--model", "models/cdnow", "--transactions", str(bad), "--output", str(output)],
        workdir,
        env,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert re.search(message, done.stderr), done.stderr
    assert not output.exists()


def test_bad_config_exits_2_naming_the_key(workdir, env, cli):
    config = workdir / "typo.yaml"
    config.write_text((ROOT / "configs" / "cdnow.yaml").read_text().replace("time_unit", "unit"))
    done = cli(["train", "--config", str(config)], workdir, env)
    assert done.returncode == 2
    assert "unit: unknown key" in done.stderr and "Traceback" not in done.stderr


def test_help_imports_no_heavy_library():
    code = (
        "import sys\nfrom clvlab.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('pandas', 'mlflow', 'duckdb', 'scipy') if m in sys.modules]\n"
        "print('HEAVY', heavy)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "train" in done.stdout and "score" in done.stdout
    assert "HEAVY []" in done.stdout


def test_python_api_reproduces_published_bgnbd_on_cdnow_sample(in_tmp):
    """Fader, Hardie & Lee (2005): r=0.243, alpha=4.414, a=0.793, b=2.426 (39 weeks)."""
    result = clvlab.train(
        {
            "name": "cdnow_sample",
            "data": {"source": "lifetimes:CDNOW_sample", "amount": "amount"},
            "split": {"calibration_end": "1997-09-30", "holdout_end": "1998-06-30"},
            "tracking": {"figures": False},
            "time_unit": "W",
            "models": {"candidates": ["bgnbd"]},
        }
    )
    fitted = result.params["calibration"]
    published = {"r": 0.2426, "alpha": 4.4136, "a": 0.7929, "b": 2.4259}
    for name, value in published.items():
        assert f"{fitted[f'bgnbd.{name}']:.3g}" == f"{value:.3g}", name
        assert fitted[f"bgnbd.{name}"] == pytest.approx(value, rel=2e-4), name
    assert fitted["bgnbd.log_likelihood"] == pytest.approx(-9582.43, abs=0.01)
    assert isinstance(result.metrics, pd.DataFrame)
    assert set(result.metrics.columns) >= HOLDOUT_METRICS
    assert result.model_uri == f"runs:/{result.run_id}/model"
    assert result.local_path is None and not (in_tmp / "models").exists()  # none asked for
    scores = clvlab.score(result.model_uri, "lifetimes:CDNOW_sample", horizon_days=52 * 7)
    assert len(scores) == 2_357
    same = clvlab.score(result.model, "lifetimes:CDNOW_sample", horizon_days=52 * 7)
    pd.testing.assert_frame_equal(scores, same)


def test_count_only_data_trains_and_scores_without_spend(in_tmp, cdnow_sample):
    visits = cdnow_sample[["customer_id", "date"]].rename(columns={"customer_id": "visitor"})
    visits.to_csv(in_tmp / "visits.csv", index=False)
    result = clvlab.train(
        {
            "name": "visits",
            "data": {"source": str(in_tmp / "visits.csv"), "customer_id": "visitor"},
            "split": {"calibration_end": "1997-09-30", "holdout_end": "1998-06-30"},
            "tracking": {"figures": False},
            "time_unit": "D",
            # Pinned: BG/NBD scores every target (and is the only candidate backtested).
            "models": {"purchases": "bgnbd", "candidates": ["bgnbd"]},
        },
        export=in_tmp / "visits-model",
    )
    assert result.model.spend is None and result.model.name == "bgnbd"
    assert result.model.label() == "bgnbd"
    assert set(result.metrics.columns) == {  # count-only: no revenue metric
        "purchases_mae",
        "purchases_rmse",
        "purchases_bias_pct",
        "purchases_spearman",
        "interval_coverage",
        "churn_roc_auc",
        "churn_brier",
    }
    assert 0.85 < result.champion_metrics["interval_coverage"] < 0.95
    # Daily units: alpha is FHL's weekly alpha times 7, the other parameters are unchanged.
    fitted = result.params["calibration"]
    assert fitted["bgnbd.alpha"] == pytest.approx(4.4136 * 7, rel=1e-3)
    assert fitted["bgnbd.r"] == pytest.approx(0.2426, rel=1e-3)
    scores = clvlab.score(result.local_path, in_tmp / "visits.csv", horizon_days=90)
    assert len(scores) == 2_357
    assert scores[["expected_spend", "expected_revenue", "clv"]].isna().all().all()
    assert scores[["p_alive", "p_churn", "expected_purchases"]].notna().all().all()


def test_an_hourly_time_unit_trains_and_scores_in_hours(in_tmp, cdnow_sample):
    """time_unit: H: the BTYD models are fitted on hourly summaries (lifetimes' freq="h"),
    the GBM candidate is skipped with the reason, and the saved model scores in hours."""
    from lifetimes.utils import calibration_and_holdout_data, summary_data_from_transaction_data

    from clvlab.evaluation.backtest import HOURLY_GBM

    minutes = np.random.default_rng(0).integers(0, 24 * 60, len(cdnow_sample))
    timed = cdnow_sample[["customer_id", "date", "amount"]].assign(
        date=lambda f: f["date"] + pd.to_timedelta(minutes, unit="min")
    )
    # x: two purchases in one hour, a third that day, the last on the as-of day below; y's
    # only purchase is later that day.
    x_and_y = pd.DataFrame(
        {
            "customer_id": ["x", "x", "x", "x", "y"],
            "date": pd.to_datetime(
                [
                    "1997-01-05 10:10",
                    "1997-01-05 10:50",
                    "1997-01-05 15:00",
                    "1998-06-30 09:20",
                    "1998-06-30 18:00",
                ]
            ),
            "amount": [10.0, 5.0, 20.0, 40.0, 8.0],
        }
    )
    pd.concat([timed, x_and_y]).to_csv(in_tmp / "timed.csv", index=False)
    result = clvlab.train(
        {
            "name": "hourly",
            "data": {"source": str(in_tmp / "timed.csv"), "amount": "amount"},
            "split": {"calibration_end": "1997-09-30", "holdout_end": "1998-06-30"},
            "tracking": {"figures": False},
            "time_unit": "H",
            "models": {"purchases": "bgnbd", "candidates": ["bgnbd"]},
        }
    )
    assert result.model.time_unit == "H"
    assert result.backtest.skipped == {"gbm": HOURLY_GBM}
    tx = clvlab.read_transactions(in_tmp / "timed.csv", amount="amount")
    # Calibration: BG/NBD on lifetimes' hourly summary to the end of 1997-09-30 (a date).
    split = calibration_and_holdout_data(
        tx,
        "customer_id",
        "date",
        "1997-09-30 23:59:59.999999",
        "1998-06-30 23:59:59.999999",
        monetary_value_col="amount",
        freq="h",
    ).sort_index()
    expected = clvlab.BetaGeo().fit(split.rename(columns=lambda c: c.removesuffix("_cal")))
    fitted = result.params["calibration"]
    for name, value in expected.params_.items():
        assert fitted[f"bgnbd.{name}"] == pytest.approx(value, rel=1e-6), name
    # Scores at 12:30 of the last day: that day's purchases up to its 12:00 hour count.
    scores = clvlab.score(
        result.model_uri, in_tmp / "timed.csv", as_of="1998-06-30T12:30", horizon_days=30
    ).set_index("customer_id")
    assert scores.loc["y", "reason"] == NO_HISTORY
    scores = scores.drop(index="y")
    theirs = summary_data_from_transaction_data(
        tx, "customer_id", "date", observation_period_end="1998-06-30 12:30", freq="h"
    )
    pd.testing.assert_frame_equal(
        scores[["frequency", "recency", "T"]],
        theirs.loc[scores.index],
        check_index_type=False,
        check_names=False,
    )
    hours = (pd.Timestamp("1998-06-30 09:00") - pd.Timestamp("1997-01-05 10:00")) / pd.Timedelta(
        hours=1
    )
    assert scores.loc["x", ["frequency", "recency", "T"]].tolist() == [2.0, hours, hours + 3]
    assert scores.attrs["data_report"]["excluded.after_as_of"] == int(
        (tx["date"] >= pd.Timestamp("1998-06-30 13:00")).sum()
    )
    horizon_hours = 30 * 24
    np.testing.assert_allclose(
        scores["expected_purchases"],
        result.model.purchases.expected_purchases(
            horizon_hours, *(scores[c].to_numpy() for c in ("frequency", "recency", "T"))
        ),
        rtol=1e-12,
    )


def test_identity_links_merge_customers_in_training_and_scoring(in_tmp, cdnow_sample):
    # Customers 1, 2 and 3 are one person (a chain); 4 and 5 another.
    links = pd.DataFrame({"id_a": ["1", "2", "4"], "id_b": ["2", "3", "5"]})
    links.to_csv(in_tmp / "links.csv", index=False)
    result = clvlab.train(
        {
            "name": "linked",
            "data": {
                "source": "lifetimes:CDNOW_sample",
                "amount": "amount",
                "identity_links": str(in_tmp / "links.csv"),
            },
            "split": {"calibration_end": "1997-09-30", "holdout_end": "1998-06-30"},
            "tracking": {"figures": False},
            "models": {"candidates": ["bgnbd"]},
        }
    )
    report = result.data_report
    assert report["identity.groups"] == 2 and report["identity.customers_after"] == 2_354
    assert report["customers"] == 2_354
    scores = clvlab.score(result.model, cdnow_sample, identity_links=in_tmp / "links.csv")
    assert len(scores) == 2_354
    merged = cdnow_sample[cdnow_sample["customer_id"].isin(["1", "2", "3"])]
    person = scores.set_index("customer_id").loc["1"]  # the earliest buyer's id is kept
    assert person["frequency"] == merged["date"].dt.normalize().nunique() - 1


def test_online_retail_config_trains_on_the_real_data(in_tmp):
    data_file = ROOT.parent / "shared" / "data" / "online_retail.parquet"
    if not data_file.exists():
        pytest.skip(f"shared data not found at {data_file}")
    config = clvlab.load_config(ROOT / "configs" / "online_retail.yaml")
    # The config as shipped but for two costs that change nothing checked here: no figures,
    # and boosters of at most 500 trees (the churn GBM's early stopping runs to 1,972 of the
    # 2,000 allowed, a third of the run's time). benchmarks/bench_models.py runs it as shipped.
    gbm = config.models.gbm.model_copy(update={"n_estimators": 500})
    config = config.model_copy(
        update={
            "data": config.data.model_copy(update={"source": str(data_file)}),
            "models": config.models.model_copy(update={"gbm": gbm}),
            "tracking": config.tracking.model_copy(update={"figures": False}),
        }
    )
    # No dropout is identifiable here: the fit ends on the boundary and says so.
    with pytest.warns(BTYDConvergenceWarning, match="BetaGeo"):
        result = clvlab.train(config)
    report = result.data_report
    assert report["rows_read"] == 541_909 and report["customers"] == 4_324
    assert report["rows_read"] == report["rows_kept"] + sum(
        value for key, value in report.items() if key.startswith("excluded.")
    )
    table = result.metrics
    assert "gbm" in table.index and not result.backtest.skipped
    assert table.loc["bgnbd_gamma_gamma"].drop("interval_coverage").notna().all()
    # lifetimes' BG/NBD on the same split (issue 6): MAE 0.938, ROC-AUC 0.73. The config as
    # shipped: GBM MAE 0.908 against 0.935 for every BTYD model (which all fall back to NBD
    # here), ROC-AUC 0.737 against 0.733; the validation window picks the historical formula
    # for purchases and revenue, the GBM for churn.
    assert table.loc["bgnbd_gamma_gamma", "purchases_mae"] < 1.0
    assert table.loc["gbm", "purchases_mae"] < table.loc["bgnbd_gamma_gamma", "purchases_mae"]
    assert table.loc["gbm", "churn_roc_auc"] > table.loc["bgnbd_gamma_gamma", "churn_roc_auc"]
    assert result.backtest.champions["churn"] == "gbm"
    assert result.model.source("churn").kind == "gbm"
    assert result.model.covariates == ("Country",)
    assert result.champion_metrics["churn_roc_auc"] == table.loc["gbm", "churn_roc_auc"]
    # The holdout GBM's feature importance is logged with the run, by target, largest first.
    import mlflow

    importance = mlflow.artifacts.load_dict(f"runs:/{result.run_id}/gbm_feature_importance.json")
    assert set(importance) == {"purchases", "churn", "revenue"}
    gains = list(importance["churn"].values())
    assert gains == sorted(gains, reverse=True) and gains[0] > 0
    assert "days_since_last" in importance["churn"] and "Country" in importance["churn"]
    with pytest.warns(UserWarning, match="135080 transaction rows have no customer id"):
        scores = clvlab.score(result.model, data_file)
    # One row per customer id in the file, always: 48 have nothing but cancellations or
    # purchases cancelled in full, and say so.
    assert len(scores) == 4_372 and scores["customer_id"].is_unique
    unscored = scores[scores["reason"].notna()]
    assert len(unscored) == 4_372 - 4_324
    assert (unscored["reason"] == ALL_EXCLUDED).all() and unscored["clv"].isna().all()
    scored = scores[scores["reason"].isna()]
    assert scored["p_churn"].between(0, 1).all() and (scored["clv"] >= 0).all()
    assert "churn=gbm" in scores["model"].iloc[0]
    # A year ahead the GBM (trained for 91 days) gives way to the BTYD champion, and the
    # score table's model column says so.
    assert "in place of the GBM for churn" in result.model.label(horizon_days=365)


def test_mbgnbd_fitted_by_lifetimes_trains_saves_and_scores(in_tmp):
    result = clvlab.train(
        {
            "name": "mbg",
            "data": {"source": "lifetimes:CDNOW_sample", "amount": "amount"},
            "split": {"calibration_end": "1997-09-30", "holdout_end": "1998-06-30"},
            "tracking": {"figures": False},
            "models": {"purchases": "mbgnbd", "engine": "lifetimes", "candidates": ["mbgnbd"]},
            "scoring": {"discounting": "monthly"},
        }
    )
    fitted = result.params["calibration"]
    # Batislam et al. (2007) / lifetimes on the FHL sample: r=0.525, alpha=6.183, a=0.891, b=1.614.
    for name, value in {"r": 0.525, "alpha": 6.183, "a": 0.891, "b": 1.614}.items():
        assert fitted[f"mbgnbd.{name}"] == pytest.approx(value, rel=2e-3), name
    assert result.model.name == "mbgnbd_gamma_gamma"
    reloaded = clvlab.load_model(result.model_uri)
    assert type(reloaded.purchases).__name__ == "ModifiedBetaGeo"
    assert reloaded.discounting == "monthly"
    scores = clvlab.score(result.model_uri, "lifetimes:CDNOW_sample")
    assert len(scores) == 2_357 and (scores["p_alive"] < 1).all()  # MBG: dropout at time 0


def test_pareto_nbd_trains_saves_and_scores(in_tmp):
    result = clvlab.train(
        {
            "name": "pnbd",
            "data": {"source": "lifetimes:CDNOW_sample", "amount": "amount"},
            "split": {"calibration_end": "1997-09-30", "holdout_end": "1998-06-30"},
            "tracking": {"figures": False},
            "models": {"purchases": "pareto_nbd", "candidates": ["pareto_nbd"]},
        }
    )
    fitted = result.params["calibration"]
    # Fader, Hardie & Lee (2005) on the FHL sample: r=0.553, alpha=10.58, s=0.606, beta=11.67.
    expected = {"r": 0.5532, "alpha": 10.5763, "s": 0.6062, "beta": 11.6715}
    for name, value in expected.items():
        assert fitted[f"pareto_nbd.{name}"] == pytest.approx(value, rel=2e-3), name
    assert result.model.name == "pareto_nbd_gamma_gamma"
    assert result.metrics.iloc[0].notna().all()
    # tracking.figures: false: no figure drawn, none logged.
    import mlflow

    logged = {artifact.path for artifact in mlflow.MlflowClient().list_artifacts(result.run_id)}
    assert result.figure is None and "data_report.json" in logged
    assert not logged & {"backtest.png", "segment_map.png"}
    reloaded = clvlab.load_model(result.model_uri)
    assert type(reloaded.purchases).__name__ == "ParetoNBD"
    scores = clvlab.score(result.model_uri, "lifetimes:CDNOW_sample")
    assert len(scores) == 2_357 and scores[SCORE_COLUMNS].notna().all().all()
    assert scores["p_alive"].between(0, 1).all() and scores["p_churn"].between(0, 1).all()
    pd.testing.assert_frame_equal(scores, clvlab.score(reloaded, "lifetimes:CDNOW_sample"))


@pytest.mark.parametrize("store", ["mlruns-folder", "file:///tmp/mlruns-folder"])
def test_file_store_uri_is_a_clear_config_error(in_tmp, monkeypatch, store):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    with pytest.raises(clvlab.ConfigError, match="is a folder, and MLflow no longer accepts"):
        clvlab.train(ROOT / "configs" / "cdnow.yaml")
