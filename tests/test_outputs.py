"""Outputs appear whole or not at all, also when several writers publish the same target."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd

import clvlab
from clvlab.models.clv import CLVModel
from clvlab.outputs import publish

WRITERS, ROUNDS, FILES = 6, 15, 4


def _built(parent: Path, owner: str) -> Path:
    folder = parent / f".build-{owner}"
    folder.mkdir()
    for number in range(FILES):
        (folder / f"part-{number}.txt").write_text(owner)
    return folder


def test_writers_at_once_leave_one_whole_output(tmp_path: Path):
    target = tmp_path / "scores"
    start = threading.Barrier(WRITERS)

    def write(writer: int) -> None:
        start.wait(timeout=30)
        for turn in range(ROUNDS):
            publish(_built(tmp_path, f"{writer}-{turn}"), target)

    with ThreadPoolExecutor(WRITERS) as pool:
        for done in [pool.submit(write, w) for w in range(WRITERS)]:
            done.result()  # no writer failed
    owners = {path.read_text() for path in target.iterdir()}
    assert len(owners) == 1, owners  # every file from the same writer: never a mix
    assert sorted(p.name for p in target.iterdir()) == [f"part-{n}.txt" for n in range(FILES)]
    assert [p.name for p in tmp_path.iterdir()] == ["scores"]  # nothing staged or aside left


def test_two_batch_scorings_of_one_output_leave_one_of_them_whole(tmp_path, sample_models):
    """Two `score_to_file` runs (different horizons) writing one partitioned output at once:
    both finish, and the output is all of one of them, with its manifest."""
    purchases, spend = sample_models
    model = CLVModel(purchases=purchases, spend=spend, time_unit="W")
    source = tmp_path / "tx.parquet"
    clvlab.read_transactions("lifetimes:CDNOW_sample").to_parquet(source)
    target = tmp_path / "scores.parquet"
    start = threading.Barrier(2)
    expected = {
        horizon: clvlab.score(model, source, as_of="1998-06-30", horizon_days=horizon)
        for horizon in (30, 365)
    }

    def run(horizon: int) -> None:
        start.wait(timeout=30)
        clvlab.score_to_file(
            model,
            source,
            target,
            as_of="1998-06-30",
            horizon_days=horizon,
            partition_rows=2_000,
            progress=False,
        )

    with ThreadPoolExecutor(2) as pool:
        for done in [pool.submit(run, h) for h in expected]:
            done.result()
    written = pd.read_parquet(target).sort_values("customer_id").reset_index(drop=True)
    matches = [
        h
        for h, table in expected.items()
        if table["expected_purchases"].equals(written["expected_purchases"])
    ]
    assert len(matches) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.parquet", "tx.parquet"]
