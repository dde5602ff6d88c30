"""One tracking store wherever clvlab runs from; local exports only when asked; quiet output.

One model is trained once for the module by the ``clvlab`` command, in its own folder, with
clvlab's default store in a private ``CLVLAB_HOME`` (no ``MLFLOW_TRACKING_URI``), and
registered as ``st``. The other tests run the command from other folders against it, in this
process (its ``main``, as the console script calls it: the same command without two seconds
of imports per call).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

import clvlab
from clvlab import outputs
from clvlab.tracking import store

CLVLAB = str(Path(sys.executable).with_name("clvlab"))
CONFIG = {
    "name": "st",
    "data": {"source": "lifetimes:CDNOW_sample", "amount": "amount"},
    "split": {"calibration_end": "1997-09-30", "holdout_end": "1998-06-30"},
    "tracking": {"figures": False},
    "models": {"purchases": "bgnbd", "candidates": ["bgnbd"], "gbm": {"enabled": False}},
}
SCORE = ["--transactions", "lifetimes:CDNOW_sample", "--as-of", "1998-06-30"]


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CLVLAB, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Train and register ``st`` with ``clvlab train`` in folder ``a``; the default store is
    in ``home``. Returns the environment, folders, run id and the command's output."""
    root = tmp_path_factory.mktemp("store")
    trained_in = root / "a"
    trained_in.mkdir()
    (trained_in / "st.yaml").write_text(yaml.safe_dump(CONFIG))
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["CLVLAB_HOME"] = str(root / "home")
    done = _run(["train", "--config", "st.yaml", "--register", "st"], trained_in, env)
    assert done.returncode == 0, done.stderr
    run_id = next(line.split()[-1] for line in done.stdout.splitlines() if line.startswith("Run:"))
    return {"env": env, "root": root, "a": trained_in, "run_id": run_id, "train": done}


def test_the_default_store_is_in_clvlab_home_not_the_current_folder(home):
    database = home["root"] / "home" / "mlruns" / "mlflow.db"
    assert database.is_file()
    assert (home["root"] / "home" / "mlruns" / "artifacts" / "st").is_dir()
    assert not (home["a"] / "mlruns").exists()
    assert not (home["a"] / "mlflow.db").exists()
    assert f"sqlite:///{database}" in home["train"].stdout  # the printed `mlflow ui` command


def test_training_exports_nothing_unless_asked(home):
    assert "Local:" not in home["train"].stdout
    assert not (home["a"] / "models").exists()


def test_another_folder_finds_the_run_and_the_registered_model(home, cli, tmp_path):
    elsewhere = tmp_path / "b"
    elsewhere.mkdir()
    # (A run's model from another folder: test_export_writes_the_registry_model_...)
    done = cli(
        ["score", "--model", "models:/st@champion", *SCORE, "--output", "s.csv"],
        elsewhere,
        home["env"],
    )
    assert done.returncode == 0, done.stderr
    versions = pd.read_csv(elsewhere / "s.csv")["model_version"].unique()
    assert list(versions) == ["models:/st/1"]  # the registry version, not a run id
    listed = cli(["models", "st"], elsewhere, home["env"])
    assert listed.returncode == 0 and "champion" in listed.stdout
    assert not (elsewhere / "mlruns").exists()


def test_a_missing_model_names_the_store_searched(home, cli, tmp_path):
    done = cli(
        ["score", "--model", "runs:/0123456789abcdef/model", *SCORE, "--output", "s.csv"],
        tmp_path,
        home["env"],
    )
    assert done.returncode == 2
    assert str(home["root"] / "home" / "mlruns" / "mlflow.db") in done.stderr
    assert "MLFLOW_TRACKING_URI" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "s.csv").exists()


def test_looking_up_a_model_never_creates_a_store(home, cli, tmp_path):
    env = {**home["env"], "CLVLAB_HOME": str(tmp_path / "empty-home")}
    for args in (
        ["score", "--model", "models:/st@champion", *SCORE, "--output", "s.csv"],
        ["models", "st"],
        ["export", "st", "copy"],
    ):
        done = cli(args, tmp_path, env)
        assert done.returncode == 2, args
        assert "no MLflow tracking store at" in done.stderr
        assert str(tmp_path / "empty-home" / "mlruns" / "mlflow.db") in done.stderr
    assert not (tmp_path / "empty-home").exists()
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "mlflow.db").exists()


def test_export_writes_the_registry_model_and_scores_name_its_version(home, cli, tmp_path):
    done = cli(["export", "st@champion", "models/st"], tmp_path, home["env"])
    assert done.returncode == 0, done.stderr
    assert "models:/st/1" in done.stdout
    folder = tmp_path / "models" / "st"
    assert (folder / "MLmodel").is_file()
    model = clvlab.load_model(folder)  # offline: a folder needs no store
    assert model.version == "models:/st/1"
    by_run = clvlab.load_model(folder / "artifacts" / "clv_model.json")
    assert by_run.version == f"runs:/{home['run_id']}/model"  # the run it was logged in
    # A run's model is copied from the same store, not from one MLflow makes in this folder.
    done = cli(["export", f"runs:/{home['run_id']}/model", "by-run"], tmp_path, home["env"])
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "by-run" / "MLmodel").is_file()
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "mlflow.db").exists()


def test_an_export_that_fails_halfway_keeps_the_previous_model(home, tmp_path, monkeypatch):
    folder = tmp_path / "st"
    monkeypatch.setenv("CLVLAB_HOME", home["env"]["CLVLAB_HOME"])
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    clvlab.tracking.export_registered("st", folder)
    before = sorted(p.relative_to(folder) for p in folder.rglob("*"))
    (folder / "marker").write_text("the previous export")

    real_replace = os.replace
    moved_aside = []

    def failing_second_rename(src, dst):
        if Path(src) == folder:
            moved_aside.append(dst)  # the first rename: the old model goes aside
        elif Path(dst) == folder and moved_aside and Path(src) != Path(moved_aside[0]):
            raise OSError("disk full")  # the second: the new model into place
        return real_replace(src, dst)

    monkeypatch.setattr(outputs.os, "replace", failing_second_rename)
    with pytest.raises(OSError, match="disk full"):
        clvlab.tracking.export_registered("st", folder)
    monkeypatch.setattr(outputs.os, "replace", real_replace)
    assert moved_aside, "the old model was never moved aside"
    assert (folder / "marker").read_text() == "the previous export"
    assert sorted(p.relative_to(folder) for p in folder.rglob("*") if p.name != "marker") == before
    assert [p.name for p in tmp_path.iterdir()] == ["st"]  # no staging or aside folder left


def test_the_store_comes_from_the_environment_then_the_config_then_the_default(
    monkeypatch, tmp_path
):
    monkeypatch.setenv("CLVLAB_HOME", str(tmp_path / "h"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert store.tracking_uri() == f"sqlite:///{tmp_path / 'h' / 'mlruns' / 'mlflow.db'}"
    assert store.tracking_uri("http://team:5000") == "http://team:5000"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////elsewhere/mlflow.db")
    assert store.tracking_uri("http://team:5000") == "sqlite:////elsewhere/mlflow.db"
    assert "MLFLOW_TRACKING_URI" in store.describe_store(store.tracking_uri())
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    # The printed `mlflow ui` command opens the store the run went to.
    command = clvlab.tracking.ui_command("1", "abc", "sqlite:////team/mlflow.db")
    assert "--backend-store-uri sqlite:////team/mlflow.db " in command


def test_train_shows_its_steps_and_no_mlflow_noise(home):
    err = home["train"].stderr
    for step in ("read:", "clean:", "backtest on the holdout window: bgnbd", "refit", "log the"):
        assert any(line.startswith(step) for line in err.splitlines()), step
    assert "Downloading artifacts" not in err + home["train"].stdout
    assert " INFO mlflow" not in err
    assert "\r" not in err  # not a terminal: one finished line per step, no redrawn line
    for line in err.splitlines():
        if "warning" in line.lower():
            assert line.startswith("clvlab: warning: "), line


def test_version():
    done = subprocess.run([CLVLAB, "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert done.stdout.strip() == f"clvlab {clvlab.__version__}"
