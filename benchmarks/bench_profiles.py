"""Profile stores against batch scoring, measured in one run (issue 15's goals).

On synthetic transactions (``synthetic.py``: 1M customers, about 5.5M rows by default):

- build: ``ProfileStore.build`` from the Parquet file against ``clvlab.score`` of the same
  file, each in a fresh interpreter (its peak RSS is its own); goals: within 2x the batch
  time, peak under 2 GB, the store under 1 GB on disk;
- one event at a time: ``store.apply([event])`` (committed, the customer's new score
  returned as a table, and as dicts with ``as_frame=False``) against the naive way,
  ``clvlab.score`` of the customer's whole history with the event; goal: 200x faster;
- batches of 10,000 events: goal 50,000 events/s.

Both sides use the same BG/NBD and Gamma-Gamma, fitted (untimed) on 100k customers.

Usage::

    python benchmarks/bench_profiles.py                      # 1M customers
    python benchmarks/bench_profiles.py --customers 100000   # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from bench_rfm import Outcome, exit_status, memory_mb
from synthetic import DEFAULT, ensure_data

WORKDIR = Path("/tmp/clvlab-bench-profiles")
BUILD_RATIO_GOAL = 2.0  # build seconds / batch seconds, at most
PEAK_GOAL_MB = 2048.0
DISK_GOAL_MB = 1024.0
EVENT_SPEEDUP_GOAL = 200.0  # naive seconds / store seconds per event, at least
BATCH_RATE_GOAL = 50_000.0  # events per second in batches of BATCH_EVENTS, at least
BATCH_EVENTS = 10_000


def child(job: str, workdir: Path) -> dict:
    """Time one job in this (fresh) interpreter; its report."""
    from clvlab import CLVModel, ProfileStore, score

    model = CLVModel.load(workdir / "model.json")
    data = workdir / "transactions.parquet"
    began = time.perf_counter()
    if job == "batch":
        customers = len(score(model, data))
    else:
        with ProfileStore.build(model, data, path=workdir / "profiles.db") as store:
            customers = store.customers()
    return {"seconds": time.perf_counter() - began, "customers": customers}


def run_child(job: str, workdir: Path) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--child", job, "--workdir", str(workdir)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        sys.exit(f"{job} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def fit_model(data: Path, workdir: Path) -> None:
    """BG/NBD and Gamma-Gamma on the first 100k customers, saved as JSON (untimed)."""
    from clvlab import BetaGeo, CLVModel, GammaGamma, rfm

    frame = pd.read_parquet(data)
    sample = frame[frame["customer_id"].isin(frame["customer_id"].unique()[:100_000])]
    summary = rfm(sample, frame["date"].max(), freq="D", freq_multiplier=7)
    repeat = summary[(summary["frequency"] > 0) & (summary["monetary_value"] > 0)]
    model = CLVModel(BetaGeo().fit(summary), GammaGamma().fit(repeat), time_unit="W")
    model.save(workdir / "model.json")


def events(frame: pd.DataFrame, n: int, seed: int, prefix: str) -> list[dict]:
    """``n`` purchases of existing customers on the day after the data."""
    rng = np.random.default_rng(seed)
    day = (frame["date"].max() + pd.Timedelta(days=1)).date().isoformat()
    customers = frame["customer_id"].unique()
    return [
        {
            "event_id": f"{prefix}{i}",
            "customer_id": str(customer),
            "date": day,
            "amount": round(float(amount), 2),
        }
        for i, (customer, amount) in enumerate(
            zip(rng.choice(customers, n), rng.gamma(2.0, 20.0, n), strict=True)
        )
    ]


def per_event(
    workdir: Path, frame: pd.DataFrame, n_store: int, n_naive: int
) -> tuple[float, float, float]:
    """Seconds per event: the store, one event a time, answering a table and answering
    dicts (``as_frame=False``, as the service does); the naive rescoring of history."""
    from clvlab import CLVModel, ProfileStore, score

    model = CLVModel.load(workdir / "model.json")
    stream = events(frame, 2 * n_store, seed=1, prefix="one-")
    seconds = []
    with ProfileStore.open(workdir / "profiles.db") as store:
        for as_frame, part in ((True, stream[:n_store]), (False, stream[n_store:])):
            for event in part[:50]:  # warm up
                store.apply([event], as_frame=as_frame)
            began = time.perf_counter()
            for event in part[50:]:
                store.apply([event], as_frame=as_frame)
            seconds.append((time.perf_counter() - began) / (n_store - 50))
    table_s, dicts_s = seconds
    by_customer = frame.groupby("customer_id", sort=False)
    naive = events(frame, n_naive, seed=2, prefix="naive-")
    began = time.perf_counter()
    for event in naive:
        history = by_customer.get_group(event["customer_id"])
        row = pd.DataFrame([event]).drop(columns="event_id").astype({"date": "datetime64[us]"})
        score(model, pd.concat([history, row]), as_of=event["date"])
    naive_s = (time.perf_counter() - began) / n_naive
    return table_s, dicts_s, naive_s


def batch_rate(workdir: Path, frame: pd.DataFrame, batches: int) -> float:
    """Events per second applied in batches of BATCH_EVENTS (a DataFrame each)."""
    from clvlab import ProfileStore

    stream = pd.DataFrame(events(frame, BATCH_EVENTS * batches, seed=3, prefix="batch-"))
    with ProfileStore.open(workdir / "profiles.db") as store:
        began = time.perf_counter()
        for start in range(0, len(stream), BATCH_EVENTS):
            store.apply(stream.iloc[start : start + BATCH_EVENTS])
        return len(stream) / (time.perf_counter() - began)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--workdir", type=Path, default=WORKDIR)
    parser.add_argument("--child", choices=["batch", "build"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    if args.child:
        report = child(args.child, args.workdir)
        report["peak_mb"] = memory_mb("VmHWM")
        print(json.dumps(report))
        return 0

    args.workdir.mkdir(parents=True, exist_ok=True)
    data = args.workdir / "transactions.parquet"
    meta = ensure_data(args.workdir / f"tx_{args.customers}.parquet", args.customers, seed=0)
    shutil.copyfile(args.workdir / f"tx_{args.customers}.parquet", data)
    print(f"{meta['rows']:,} transactions of {meta['customers']:,} customers ({DEFAULT})")
    fit_model(data, args.workdir)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{args.workdir / 'profiles.db'}{suffix}").unlink(missing_ok=True)

    batch = run_child("batch", args.workdir)
    build = run_child("build", args.workdir)
    disk_mb = os.path.getsize(args.workdir / "profiles.db") / 2**20
    frame = pd.read_parquet(data)
    store_s, dicts_s, naive_s = per_event(args.workdir, frame, n_store=2_050, n_naive=100)
    rate = batch_rate(args.workdir, frame, batches=3)

    ratio = build["seconds"] / batch["seconds"]
    outcomes = [
        Outcome("build time", ratio <= BUILD_RATIO_GOAL),
        Outcome("build memory", build["peak_mb"] < PEAK_GOAL_MB),
        Outcome("store size", disk_mb < DISK_GOAL_MB),
        Outcome("one event", naive_s / min(store_s, dicts_s) >= EVENT_SPEEDUP_GOAL),
        Outcome("batches", rate >= BATCH_RATE_GOAL),
    ]
    rows = [
        ("batch clvlab.score", f"{batch['seconds']:.2f} s, peak {batch['peak_mb']:,.0f} MB", ""),
        (
            "ProfileStore.build",
            f"{build['seconds']:.2f} s ({ratio:.2f}x batch), peak {build['peak_mb']:,.0f} MB, "
            f"{disk_mb:,.0f} MB on disk",
            f"{outcomes[0]} {outcomes[1]} {outcomes[2]}",
        ),
        (
            "one event, applied and scored",
            f"{store_s * 1e6:,.0f} us (table), {dicts_s * 1e6:,.0f} us (dicts) vs naive "
            f"{naive_s * 1e3:.1f} ms ({naive_s / store_s:.0f}x, {naive_s / dicts_s:.0f}x; "
            f"goal {EVENT_SPEEDUP_GOAL:.0f}x)",
            str(outcomes[3]),
        ),
        (
            f"batches of {BATCH_EVENTS:,}",
            f"{rate:,.0f} events/s (goal {BATCH_RATE_GOAL:,.0f})",
            str(outcomes[4]),
        ),
    ]
    for name, figures, verdict in rows:
        print(f"{name:32s} {figures:70s} {verdict}")
    return exit_status(outcomes)


if __name__ == "__main__":
    sys.exit(main())
