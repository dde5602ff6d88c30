"""Shared fixtures. Every test runs against a temporary MLflow store, never the user's."""

from __future__ import annotations

import subprocess
import warnings
from pathlib import Path

import pytest

import stores

#: The test files that take longest (most CPU first; about 60 to 6 s each on 2 cores). `make
#: test` runs whole files on each core (``--dist loadfile``); these start first, so that the
#: many short files fill in at the end and both cores finish together. (By default xdist starts
#: files by their number of tests, which put a slow file with few tests last: a core then sat
#: idle for half a minute.) The order only affects the time taken.
SLOW_FILES = [
    "test_end_to_end.py",
    "test_spark.py",
    "test_properties.py",
    "test_notebooks.py",
    "test_serving.py",
    "test_purchase_models.py",
    "test_profiles_redis.py",
    "test_tracking_server.py",
    "test_profiles.py",
    "test_registry.py",
    "test_batch.py",
    "test_gbm.py",
    "test_pareto_nbd.py",
    "test_rfm.py",
    "test_tracking_store.py",
    "test_report.py",  # a training and Chromium (installed with apt-get on a new machine)
]


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config.option, "loadscopereorder"):  # pytest-xdist: keep the order below
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slow files first (in the order of :data:`SLOW_FILES`); tests keep their order
    within a file, and the other files theirs."""
    rank = {name: index for index, name in enumerate(SLOW_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(SLOW_FILES)))


@pytest.fixture(autouse=True, scope="session")
def _private_mlflow_store(tmp_path_factory: pytest.TempPathFactory):
    """Point MLflow at a throwaway store for the whole session, whatever the environment says."""
    stores.make_empty(tmp_path_factory.mktemp("mlflow-empty") / "mlflow.db")
    store = tmp_path_factory.mktemp("mlflow-session")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", stores.new_store(store / "mlflow.db"))
        # clvlab's default store (used when a test unsets MLFLOW_TRACKING_URI): never ~/.clvlab.
        patch.setenv("CLVLAB_HOME", str(store / "clvlab-home"))
        patch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        patch.setenv("DO_NOT_TRACK", "true")
        yield


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run the test in an empty folder with its own MLflow store."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", stores.new_store(tmp_path / "mlflow.db"))
    return tmp_path


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    """``cli(args, cwd, env)``: ``clvlab ARGS`` run by :func:`clvlab.cli.main` in this process,
    as the console script calls it, from folder ``cwd`` with ``env``'s ``CLVLAB_HOME`` and
    ``MLFLOW_TRACKING_URI`` (unset when ``env`` has none). The same command as a subprocess
    without its two seconds of imports; tests of a fresh process's output start the script."""
    from clvlab.cli import main

    def run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
        with monkeypatch.context() as patch:
            patch.chdir(cwd)
            patch.setattr(warnings, "formatwarning", warnings.formatwarning)  # main sets it
            for name in ("CLVLAB_HOME", "MLFLOW_TRACKING_URI"):
                if name in env:
                    patch.setenv(name, env[name])
                else:
                    patch.delenv(name, raising=False)
            capsys.readouterr()
            code = main(args)
            out, err = capsys.readouterr()
        return subprocess.CompletedProcess(["clvlab", *args], code, out, err)

    return run


@pytest.fixture(scope="session")
def cdnow_sample():
    from clvlab import read_transactions

    return read_transactions("lifetimes:CDNOW_sample")


@pytest.fixture(scope="session")
def cdnow_master():
    from clvlab import read_transactions

    return read_transactions("lifetimes:CDNOW_master")


@pytest.fixture(scope="session")
def sample_models(cdnow_sample):
    """BG/NBD and Gamma-Gamma fitted on the CDNOW sample's 39-week calibration, in weeks."""
    from clvlab import BetaGeo, GammaGamma, rfm

    summary = rfm(cdnow_sample, "1997-09-30", freq="D", freq_multiplier=7)
    return BetaGeo().fit(summary), GammaGamma().fit(summary[summary["frequency"] > 0])
