"""Shared fixtures. Every test runs against a temporary MLflow store, never the user's."""

from __future__ import annotations

from pathlib import Path

import pytest

import stores


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
