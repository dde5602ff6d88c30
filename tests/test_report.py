"""`clvlab report`: the self-contained HTML report of a training run, checked in a real
headless Chromium (Debian's, installed when missing; see tests/browser.py). A screenshot of
each rendered report is kept in tests/artifacts/ (git-ignored)."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import mlflow
import pandas as pd
import pytest

import browser
import clvlab
import stores
from clvlab.report import (
    REPORT_ARTIFACT,
    RunReport,
    ScoredCustomers,
    format_metric,
    render_report,
    top_customers,
)
from clvlab.tracking.logged import LoggedRun

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CONFIG = {
    "name": "report",
    "data": {"source": "sample.csv", "amount": "amount"},  # relative: see the unreadable test
    "split": {"calibration_end": "1997-09-30", "holdout_end": "1998-06-30"},
    "models": {"candidates": ["bgnbd", "pareto_nbd"]},
}
#: The issue's budget for writing the report of the CDNOW run (this run is of its sample).
REPORT_SECONDS = 5.0


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, cdnow_sample: pd.DataFrame):
    """One training of the CDNOW sample, from a CSV file in its own folder and store,
    registered as ``report`` (version 1, the champion): (result, folder, env)."""
    folder = tmp_path_factory.mktemp("report")
    cdnow_sample.to_csv(folder / "sample.csv", index=False)
    env = {"MLFLOW_TRACKING_URI": stores.new_store(folder / "mlflow.db")}
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        patch.setenv("MLFLOW_TRACKING_URI", env["MLFLOW_TRACKING_URI"])
        result = clvlab.train(CONFIG, register="report")
    assert result.registry is not None and result.registry.promoted
    return result, folder, env


@pytest.fixture(scope="module")
def chromium(tmp_path_factory: pytest.TempPathFactory):
    with browser.chromium(tmp_path_factory.mktemp("chromium")) as running:
        yield running


@pytest.fixture(scope="module")
def logged_run(trained):
    """The run as MLflow has it: what the report must show."""
    result, _, env = trained
    client = mlflow.MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    run = client.get_run(result.run_id)
    children = client.search_runs(
        [run.info.experiment_id], f"tags.mlflow.parentRunId = '{result.run_id}'"
    )
    return run, {child.info.run_name: child for child in children}, client


def _open(chromium: browser.Chromium, page: Path, name: str) -> browser.Page:
    """Render ``page``, keep its screenshot as tests/artifacts/``name``.png, and check that it
    loads cleanly: every image, no console error, no request but the file and its data."""
    shown = chromium.open(page)
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / f"{name}.png"
    screenshot.write_bytes(shown.screenshot)
    print(f"screenshot of {page}: {screenshot}")
    assert shown.images, "the report has no image"
    for image in shown.images:
        assert image["complete"] and image["width"] > 0 and image["height"] > 0, image
    assert shown.console_errors == []
    assert [url for url in shown.requests if not url.startswith(("file:", "data:"))] == []
    assert shown.requests[0] == page.resolve().as_uri()
    return shown


def _shows_the_run(text: str, logged_run) -> None:
    """The page text has the run's champions, model and metric values, as MLflow has them."""
    run, candidates, _ = logged_run
    tags, metrics = run.data.tags, run.data.metrics
    assert run.info.run_id in text
    assert tags["clvlab.model"] in text
    champions = {k.removeprefix("clvlab.champion."): v for k, v in tags.items() if "champion." in k}
    assert set(champions) == {"purchases", "churn", "revenue"}
    for target, champion in champions.items():
        assert f"{target}\t{champion}" in text  # the champions table
        for key, value in candidates[champion].data.metrics.items():
            assert format_metric(value) in text, (champion, key)
    holdout = {k: v for k, v in metrics.items() if k.startswith("holdout.")}
    for key, value in holdout.items():
        assert f"{key.removeprefix('holdout.')}\t{format_metric(value)}" in text
    coverage = [key for key in holdout if "interval_coverage" in key]
    assert ("Not computed: the run logged no holdout interval coverage" in text) != bool(coverage)


def test_the_report_command_writes_the_run_in_chromium(trained, logged_run, chromium, cli):
    result, folder, env = trained
    started = time.perf_counter()
    done = cli(["report", "models:/report@champion", "--output", "report.html"], folder, env)
    seconds = time.perf_counter() - started
    assert done.returncode == 0, done.stderr
    assert "-> report.html" in done.stdout
    assert seconds < REPORT_SECONDS
    shown = _open(chromium, folder / "report.html", "report-command")
    assert len(shown.images) == 2  # the backtest panels and the segment map
    assert shown.title == f"clvlab report - report: training run {result.run_id}"
    _shows_the_run(shown.text, logged_run)
    assert "models:/report/1 (" in shown.text and "Requested as\nmodels:/report@champion" in (
        shown.text
    )
    # The top customers: the model's scores of its training data as of the holdout end.
    scores = clvlab.score(result.model, folder / "sample.csv", as_of="1998-06-30")
    best = scores.sort_values("clv", ascending=False, kind="stable")["customer_id"].iloc[0]
    by_value = shown.text.split("By value:")[1].split("By churn risk:")[0]
    assert by_value.split("\n")[2].startswith(f"{best}\t")  # title, header, first row
    assert f"the {len(scores):,} customers of sample.csv" in shown.text


def test_training_logs_the_report_with_the_run(trained, logged_run, chromium, tmp_path):
    result, _, _ = trained
    _, _, client = logged_run
    assert REPORT_ARTIFACT in {item.path for item in client.list_artifacts(result.run_id)}
    page = Path(client.download_artifacts(result.run_id, REPORT_ARTIFACT, str(tmp_path)))
    shown = _open(chromium, page, "report-logged-by-train")
    _shows_the_run(shown.text, logged_run)
    # Logged after registering: the version and the registry's decision are in it.
    assert "models:/report/1 (" in shown.text and "Registry decision" in shown.text
    customers = result.data_report["customers"]
    assert f"the {customers:,} training customers of sample.csv" in shown.text


def test_data_that_cannot_be_read_from_here_is_said_not_failed(trained, tmp_path, cli):
    result, _, env = trained
    # The run's data.source is sample.csv, relative to where it trained: not here.
    done = cli(["report", result.run_id, "--output", "report.html"], tmp_path, env)
    assert done.returncode == 0, done.stderr
    page = (tmp_path / "report.html").read_text()
    assert "cannot be scored from here" in page and "sample.csv" in page
    done = cli(
        ["report", result.run_id, "--output", "skipped.html", "--no-customers"], tmp_path, env
    )
    assert done.returncode == 0, done.stderr
    assert "Not computed: scoring was skipped" in (tmp_path / "skipped.html").read_text()


@pytest.mark.parametrize(
    ("named", "says"),
    [
        ("0123456789abcdef0123456789abcdef", "no run 0123456789abcdef0123456789abcdef"),
        ("runs:/0123456789abcdef0123456789abcdef/model", "no run 0123456789abcdef"),
        ("runs:/model", "names no run"),
        ("models:/report/9", "Model Version (name=report, version=9) not found"),
        ("models:/report@nobody", "alias nobody not found"),
        ("models:/nothing@champion", "'models:/nothing@champion' is not in the tracking store"),
        ("report", "is not a run id"),
    ],
)
def test_a_run_that_is_not_there_exits_2_and_writes_nothing(trained, tmp_path, cli, named, says):
    _, _, env = trained
    kept = tmp_path / "kept.html"
    kept.write_text("an earlier report")
    for output in (tmp_path / "new.html", kept):
        done = cli(["report", named, "--output", str(output)], tmp_path, env)
        assert done.returncode == 2
        assert done.stderr.startswith("clvlab report: error: ") and says in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.html"]
    assert kept.read_text() == "an earlier report"


def test_a_run_without_a_model_exits_2(trained, logged_run, tmp_path, cli):
    result, _, env = trained
    _, candidates, client = logged_run
    bare = client.create_run(client.get_run(result.run_id).info.experiment_id).info.run_id
    client.set_terminated(bare)
    done = cli(["report", bare, "--output", "report.html"], tmp_path, env)
    assert done.returncode == 2
    assert f"run {bare} in " in done.stderr and "has no model (model/MLmodel)" in done.stderr
    # A candidate's nested run: the message names the training run to ask for.
    nested = candidates["bgnbd_gamma_gamma"].info.run_id
    done = cli(["report", nested, "--output", "report.html"], tmp_path, env)
    assert done.returncode == 2
    assert f"candidate 'bgnbd_gamma_gamma' of the training run {result.run_id}" in done.stderr
    assert not (tmp_path / "report.html").exists()


def test_a_store_that_does_not_exist_exits_2(tmp_path, cli):
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'missing' / 'mlflow.db'}"}
    done = cli(["report", "0123456789abcdef0123456789abcdef", "--output", "r.html"], tmp_path, env)
    assert done.returncode == 2 and "no MLflow tracking store" in done.stderr
    assert not (tmp_path / "missing").exists() and not (tmp_path / "r.html").exists()


# --- the page itself, without MLflow --------------------------------------------------------


def _report(metrics: dict[str, float], customers: ScoredCustomers | None = None) -> RunReport:
    run = LoggedRun(
        run_id="0" * 32,
        name="unit",
        experiment="unit",
        started=dt.datetime(2024, 1, 2, 3, 4, tzinfo=dt.UTC),
        status="FINISHED",
        artifact_uri="file:///nowhere",
        params={"time_unit": "W"},
        metrics=metrics,
        tags={"clvlab.model": "purchases=<bgnbd>"},
        artifacts={},
        versions=(),
        requested="0" * 32,
    )
    backtest = {
        "windows": {"holdout": {"fit_until": "1997-09-30", "until": "1998-06-30"}},
        "champions": {"purchases": "<b>bold</b>"},
        "notes": ["a <script>alert(1)</script> note"],
        "holdout_metrics": {"<b>bold</b>": {"purchases_mae": 0.5}},
    }
    return RunReport(run, backtest, {"rows_read": 3, "rows_kept": 3}, customers, "none here")


def test_every_text_from_the_run_is_escaped():
    scores = pd.DataFrame(
        {
            "customer_id": ["<img src=x>", "b"],
            "frequency": [3.0, 1.0],
            "p_churn": [0.9, 0.1],
            "monetary_value": [10.0, 5.0],
            "clv": [1.0, 2.0],
        }
    )
    customers = ScoredCustomers(scores, pd.Timestamp("1998-06-30"), "<i>two</i> customers")
    page = render_report(_report({}, customers))
    for raw in ("<img src=x>", "<b>bold</b>", "<script>", "<bgnbd>", "<i>two</i>"):
        assert raw not in page
    for escaped in ("&lt;img src=x&gt;", "&lt;b&gt;bold&lt;/b&gt;", "&lt;script&gt;", "&lt;i&gt;"):
        assert escaped in page
    assert "http://" not in page and "https://" not in page and "<script" not in page


def test_interval_coverage_is_shown_when_logged():
    assert "Not computed: the run logged no holdout interval coverage" in render_report(
        _report({"holdout.purchases_mae": 0.5})
    )
    page = render_report(_report({"holdout.interval_coverage": 0.91234}))
    assert "holdout.interval_coverage</td>" in page and ">0.9123</td>" in page
    assert "Not computed: the run logged no" not in page
    assert "None here" in page  # the note in place of the top customers


def test_top_customers_by_value_and_by_churn_risk():
    scores = pd.DataFrame(
        {
            "customer_id": ["a", "b", "c", "d", "e", "f"],
            "frequency": [0.0, 5.0, 2.0, 9.0, 2.0, None],
            "monetary_value": [0.0, 10.0, 40.0, 1.0, 40.0, None],
            "p_churn": [0.89, 0.75, 0.95, 0.2, 0.8, None],  # f: not scored
            "clv": [1.0, 30.0, 2.0, 80.0, 3.0, None],
        }
    )
    by_value, by_churn = top_customers(scores, high_churn=0.7, count=3)
    assert by_value["customer_id"].tolist() == ["d", "b", "e"]
    # Above 0.7: a, b, c, e; the most spent on repeat purchases first (c and e tie at 80:
    # the higher p_churn first), the one-time buyer last.
    by_churn_all = top_customers(scores, high_churn=0.7, count=10)[1]
    assert by_churn_all["customer_id"].tolist() == ["c", "e", "b", "a"]
    assert by_churn["customer_id"].tolist() == ["c", "e", "b"]
    assert top_customers(scores, high_churn=0.99)[1].empty
