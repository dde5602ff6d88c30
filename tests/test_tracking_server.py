"""Train, register and score against a real ``mlflow server`` (SQLite backend, local
artifacts, 127.0.0.1 on a free port); nothing reaches any other store."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import mlflow
import pandas as pd
import pytest

import clvlab
import servers
import stores
from clvlab.tracking.registry import LOCK_SUFFIX, Decision, register


@pytest.fixture(scope="module")
def tracking_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    folder = tmp_path_factory.mktemp("tracking-server")
    port = servers.free_port()
    command = [
        str(servers.MLFLOW),
        "server",
        "--backend-store-uri",
        stores.new_store(folder / "server.db"),
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
    # No GenAI job runner: by default the server also starts a job runner and seven huey
    # consumer processes (scorers, trace archival), about 2 s of CPU each and polling after;
    # runs and the registry do not use them.
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    with servers.running(
        command, url=f"http://127.0.0.1:{port}", health="/health", cwd=folder, env=env
    ) as url:
        yield url, folder


@pytest.fixture(scope="module")
def trained(tracking_server, tmp_path_factory: pytest.TempPathFactory):
    """A model trained in an empty folder, logged to the server and registered as
    ``remote_clv``."""
    url, _ = tracking_server
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path_factory.mktemp("remote-training"))
        patch.setenv("MLFLOW_TRACKING_URI", url)
        return clvlab.train(
            {
                "name": "remote",
                "data": {"source": "lifetimes:CDNOW_sample", "amount": "amount"},
                "split": {"calibration_end": "1997-09-30", "holdout_end": "1998-06-30"},
                "tracking": {"figures": False},
                # One candidate: what is tested here is the store, not the backtest.
                "models": {"purchases": "bgnbd", "candidates": ["bgnbd"]},
            },
            register="remote_clv",
        )


def test_train_register_load_and_score_through_the_server(
    tracking_server, trained, tmp_path, monkeypatch
):
    url, folder = tracking_server
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    result = trained
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
    assert not list(tmp_path.parent.glob("remote-training*/mlruns"))
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "mlflow.db").exists()
    assert any((folder / "artifacts").rglob("clv_model.json"))


@pytest.mark.parametrize("name", ["race-1", "race-2", "race-3"])
def test_registrations_at_once_move_the_aliases_one_at_a_time(
    tracking_server, trained, monkeypatch, name
):
    """Two registrations of one name started together (as two `clvlab train --register` would
    reach the registry): both versions are registered, exactly one becomes champion (the first
    decided: the other, with equal metrics, does not beat it), challenger ends on the newest,
    and each run's decision names the champion it was compared with."""
    url, _ = tracking_server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    client = mlflow.MlflowClient(tracking_uri=url)
    run_ids = [trained.run_id]
    with mlflow.start_run(experiment_id=trained.experiment_id, run_name=name) as second:
        run_ids.append(second.info.run_id)
    start = threading.Barrier(2)

    def register_one(run_id: str) -> Decision:
        start.wait(timeout=30)
        return register(
            trained.model_uri,
            name,
            run_id=run_id,
            config=trained.config,
            metrics=trained.champion_metrics,
            tags=trained.tags,
        )

    with ThreadPoolExecutor(2) as pool:
        decisions = list(pool.map(register_one, run_ids))
    assert sorted(d.version for d in decisions) == ["1", "2"]
    promoted = [d for d in decisions if d.promoted]
    assert len(promoted) == 1, [d.reason for d in decisions]
    champion = client.get_model_version_by_alias(name, "champion").version
    assert str(champion) == promoted[0].version
    kept = next(d for d in decisions if not d.promoted)
    assert kept.previous_champion == promoted[0].version
    assert {row["verdict"] for row in kept.comparison.values()} == {"equal"}
    assert str(client.get_model_version_by_alias(name, "challenger").version) == "2"
    for run_id, decision in zip(run_ids, decisions, strict=True):
        logged = client.get_run(run_id).data.tags["clvlab.registry_decision"]
        assert logged == ("promoted" if decision.promoted else "kept")
    assert not client.search_registered_models(f"name = '{name}{LOCK_SUFFIX}'")
