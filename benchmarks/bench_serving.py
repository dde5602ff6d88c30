"""Serving latency: ``clvlab serve`` answering one customer.

The goal (issue 7): the median latency of a single-customer request is under 50 ms on this
machine (2 cores). The script

1. trains a BG/NBD + Gamma-Gamma model on the CDNOW sample (calibration to 1997-09-30, holdout
   to 1998-06-30) in a fresh folder under ``--workdir`` with its own SQLite store and
   registers it as ``bench-serving`` (its first version: the champion), or takes a local
   model folder with ``--model``;
2. starts ``clvlab serve bench-serving`` (clvlab's server on ``models:/bench-serving@champion``:
   FastAPI on uvicorn, scoring in ``--workers`` worker processes), or ``clvlab serve
   <folder>``, on a free local port and waits for ``GET /ping``;
3. sends ``--warmup`` requests, then ``--requests`` timed ones over one keep-alive connection,
   each ``{"dataframe_split": ..., "params": {"as_of": "1998-06-30", "horizon_days": 365}}``
   with all the transactions (3 to 10 rows) of one CDNOW customer drawn at random (seeded);
   a latency is from sending the request to reading the whole answer (the payload is
   serialized before the clock starts);
4. prints the median, p90 and max in ms and PASS/FAIL against the goal, and stops the server
   (SIGTERM to it, which stops its workers; then its whole process group, in case) whatever
   happens.

With ``--breakdown`` it also times, in this process and on the same customers, what a worker
does for a request (:func:`clvlab.serving.invocations.answer`: the JSON body to a DataFrame,
``clvlab.score``, the answer's JSON), and inside ``clvlab.score`` the reading, the cleaning,
``rfm`` (DuckDB) and ``CLVModel.predict``.

The exit status is 1 if the goal is missed.

Usage::

    .venv/bin/python benchmarks/bench_serving.py
    .venv/bin/python benchmarks/bench_serving.py --requests 500 --breakdown
    .venv/bin/python benchmarks/bench_serving.py --model /path/to/model/folder
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

CLVLAB = Path(sys.executable).with_name("clvlab")
CONFIG = {
    "name": "bench-serving",
    "data": {"source": "lifetimes:CDNOW_sample", "amount": "amount"},
    "split": {"calibration_end": "1997-09-30", "holdout_end": "1998-06-30"},
    "models": {"purchases": "bgnbd"},
}
NAME = "bench-serving"
COLUMNS = ["customer_id", "date", "amount"]
GOAL_MS = 50.0
STARTUP_TIMEOUT_S = 120


def train(workdir: Path) -> tuple[Path, str]:
    """Train and register in a fresh folder with its own store; the folder and the store's
    URI."""
    import clvlab

    folder = Path(tempfile.mkdtemp(prefix="serving-", dir=workdir))
    store = f"sqlite:///{folder / 'mlflow.db'}"
    previous_cwd, previous_uri = Path.cwd(), os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = store
    os.chdir(folder)
    try:
        clvlab.train(CONFIG, register=NAME)
        return folder, store
    finally:
        os.chdir(previous_cwd)
        if previous_uri is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = previous_uri


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(
    model: str, store: str, port: int, log_path: Path, workers: int | None
) -> subprocess.Popen:
    """``clvlab serve MODEL`` in its own process group (its workers go with it)."""
    command = [str(CLVLAB), "serve", model, "--port", str(port)]
    if workers is not None:
        command += ["--workers", str(workers)]
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            command,
            cwd=log_path.parent,
            env={**os.environ, "MLFLOW_TRACKING_URI": store},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_until_up(
    process: subprocess.Popen, port: int, log_path: Path, path: str = "/ping"
) -> float:
    """Seconds until ``GET path`` answers 200; exits if the server dies or never answers."""
    start = time.monotonic()
    while time.monotonic() - start < STARTUP_TIMEOUT_S:
        if process.poll() is not None:
            sys.exit(f"the server exited ({process.returncode}):\n{tail(log_path)}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", path)
            if connection.getresponse().status == 200:
                connection.close()
                return time.monotonic() - start
        except OSError:
            pass
        time.sleep(0.2)
    sys.exit(f"no answer on {path} in {STARTUP_TIMEOUT_S} s:\n{tail(log_path)}")


def stop_server(process: subprocess.Popen) -> None:
    """SIGTERM to the server (it stops its workers and exits), then to anything left in its
    process group, then SIGKILL."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=15)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=15)
            return
        except subprocess.TimeoutExpired:
            continue


def tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:]


def customers(n: int, seed: int) -> list[pd.DataFrame]:
    """The transactions of ``n`` CDNOW-sample customers with 3 to 10 rows, drawn at random."""
    from clvlab import read_transactions

    tx = read_transactions("lifetimes:CDNOW_sample")[COLUMNS]
    groups = {cid: frame.reset_index(drop=True) for cid, frame in tx.groupby("customer_id")}
    eligible = sorted(cid for cid, frame in groups.items() if 3 <= len(frame) <= 10)
    chosen = np.random.default_rng(seed).choice(eligible, size=n, replace=len(eligible) < n)
    return [groups[cid] for cid in chosen]


def payload(frame: pd.DataFrame, params: dict) -> bytes:
    data = [[c, d.isoformat(), a] for c, d, a in frame[COLUMNS].itertuples(index=False)]
    body = {"dataframe_split": {"columns": COLUMNS, "data": data}, "params": params}
    return json.dumps(body).encode()


def timed_requests(port: int, bodies: list[bytes]) -> list[float]:
    """Latency in ms of each request, over one keep-alive connection."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Content-Type": "application/json"}
    latencies = []
    try:
        for body in bodies:
            start = time.perf_counter()
            connection.request("POST", "/invocations", body=body, headers=headers)
            response = connection.getresponse()
            answer = response.read()
            latencies.append((time.perf_counter() - start) * 1000)
            if response.status != 200:
                sys.exit(f"HTTP {response.status}: {answer[:2000]!r}")
            if len(json.loads(answer)["predictions"]) != 1:
                sys.exit(f"expected one customer's scores, got {answer[:2000]!r}")
    finally:
        connection.close()
    return latencies


def median_ms(function, inputs: list) -> float:
    times = []
    for item in inputs:
        start = time.perf_counter()
        function(item)
        times.append((time.perf_counter() - start) * 1000)
    return float(np.median(times))


def breakdown(model, frames: list[pd.DataFrame], bodies: list[bytes], params: dict):
    """Median ms of each step of a request, run in this process on the same customers."""
    import dataclasses

    import clvlab
    from clvlab.data import CleaningPolicy, clean_transactions
    from clvlab.scoring import _read
    from clvlab.serving.invocations import answer, records_json

    read = [_read(frame, model)[0] for frame in frames]
    policy = dataclasses.replace(CleaningPolicy(**model.cleaning), cancellation_prefix=None)
    clean = [clean_transactions(frame, policy=policy)[0] for frame in read]
    summaries = [
        clvlab.rfm(frame, params["as_of"], freq="D", freq_multiplier=model.unit_days)
        for frame in clean
    ]
    horizon = params["horizon_days"]
    tables = [
        clvlab.score(model, frame, as_of=params["as_of"], horizon_days=horizon) for frame in frames
    ]
    steps = {
        "a worker's answer (JSON body in, JSON scores out)": (
            lambda body: answer(model, body),
            bodies,
        ),
        "  JSON body to DataFrame": (
            lambda body: pd.DataFrame(**json.loads(body)["dataframe_split"]),
            bodies,
        ),
        "  clvlab.score": (
            lambda frame: clvlab.score(model, frame, as_of=params["as_of"], horizon_days=horizon),
            frames,
        ),
        "    read_transactions (scoring._read)": (lambda frame: _read(frame, model), frames),
        "    clean_transactions": (lambda frame: clean_transactions(frame, policy=policy), read),
        "    rfm (DuckDB)": (
            lambda frame: clvlab.rfm(
                frame, params["as_of"], freq="D", freq_multiplier=model.unit_days
            ),
            clean,
        ),
        "    CLVModel.predict": (
            lambda summary: model.predict(summary, horizon_days=horizon),
            summaries,
        ),
        "  score table to JSON records": (records_json, tables),
    }
    for function, inputs in steps.values():  # warm-up
        for item in inputs[:5]:
            function(item)
    return {name: median_ms(function, inputs) for name, (function, inputs) in steps.items()}


def load(served: str, store: str):
    """The served model, loaded as ``clvlab serve`` loads it."""
    from clvlab.serving.served import load_served_model

    previous = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = store
    try:
        return load_served_model(served)[0]
    finally:
        if previous is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = previous


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="a local model folder (default: train one)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/clvlab-bench"))
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--as-of", default="1998-06-30")
    parser.add_argument("--horizon-days", type=float, default=365.0)
    parser.add_argument("--workers", type=int, help="the server's --workers (default: its own)")
    parser.add_argument("--breakdown", action="store_true", help="time each step in-process")
    args = parser.parse_args(argv)

    args.workdir.mkdir(parents=True, exist_ok=True)
    if args.model:
        if not (args.model / "MLmodel").is_file():
            sys.exit(f"{args.model} is not a model folder (no MLmodel file)")
        served = str(args.model.resolve())
        folder = args.workdir
        store = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{args.workdir / 'mlflow.db'}"
    else:
        start = time.perf_counter()
        folder, store = train(args.workdir)
        served = NAME
        print(f"trained and registered {NAME} in {time.perf_counter() - start:.1f} s")

    params = {"as_of": args.as_of, "horizon_days": args.horizon_days}
    frames = customers(args.warmup + args.requests, args.seed)
    bodies = [payload(frame, params) for frame in frames]
    rows = [len(frame) for frame in frames[args.warmup :]]

    port = free_port()
    log_path = folder / f"server-{port}.log"
    process = start_server(served, store, port, log_path, args.workers)
    try:
        startup = wait_until_up(process, port, log_path)
        print(f"server up on port {port} in {startup:.1f} s (log: {log_path})")
        timed_requests(port, bodies[: args.warmup])
        latencies = np.array(timed_requests(port, bodies[args.warmup :]))
    finally:
        stop_server(process)

    median, p90, worst = np.median(latencies), np.percentile(latencies, 90), latencies.max()
    print(
        f"\n{len(latencies)} single-customer requests ({min(rows)}-{max(rows)} rows each, "
        f"after {args.warmup} warm-up), one keep-alive connection:"
    )
    print(f"  median {median:.1f} ms   p90 {p90:.1f} ms   max {worst:.1f} ms", end="")
    print(f"   min {latencies.min():.1f} ms")
    passed = median < GOAL_MS
    print(f"  goal median < {GOAL_MS:g} ms: {'PASS' if passed else 'FAIL'}")

    if args.breakdown:
        n = min(len(frames) - args.warmup, 100)
        model = load(served, store)
        steps = breakdown(model, frames[args.warmup :][:n], bodies[args.warmup :][:n], params)
        print(f"\nin-process breakdown (median ms over {n} of the same customers):")
        for name, value in steps.items():
            print(f"  {name:<55} {value:7.1f}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
