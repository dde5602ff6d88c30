"""Train, register and score against a real ``mlflow server`` (SQLite backend, local
artifacts, 127.0.0.1 on a free port); nothing reaches any other store."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pandas as pd
import pytest

import clvlab
import servers


@pytest.fixture(scope="module")
def tracking_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    folder = tmp_path_factory.mktemp("tracking-server")
    port = servers.free_port()
    command = [
        str(servers.MLFLOW),
        "server",
        "--backend-store-uri",
        f"sqlite:///{folder / 'server.db'}",
        "--artifacts-destination",
        str(folder / "artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    with servers.running(
        command, url=f"http://127.0.0.1:{port}", health="/health", cwd=folder, env=env
    ) as url:
        yield url, folder


def test_train_register_load_and_score_through_the_server(tracking_server, tmp_path, monkeypatch):
    url, folder = tracking_server
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    result = clvlab.train(
        {
            "name": "remote",
            "data": {"source": "lifetimes:CDNOW_sample", "amount": "amount"},
            "split": {"calibration_end": "1997-09-30", "holdout_end": "1998-06-30"},
        },
        register="remote_clv",
    )
    assert result.registry.promoted and result.registry.version == "1"
    client = mlflow.MlflowClient(tracking_uri=url)
    assert client.get_run(result.run_id).data.tags["clvlab.registry_decision"] == "promoted"
    scores = clvlab.score("models:/remote_clv@champion", "lifetimes:CDNOW_sample")
    assert set(scores["model_version"]) == {"models:/remote_clv/1"}
    expected = clvlab.score(result.model, "lifetimes:CDNOW_sample")
    pd.testing.assert_frame_equal(
        scores.drop(columns="model_version"), expected.drop(columns="model_version")
    )
    # Everything went to the server's store and artifact folder, nothing to a local one.
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "mlflow.db").exists()
    assert any((folder / "artifacts").rglob("clv_model.json"))
