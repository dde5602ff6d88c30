"""Profile service latency: ``clvlab profiles serve`` applying one event and answering its score.

The goal (issue 15): with 8 concurrent clients on loopback, a request that posts one event
(a purchase of a known customer) and gets the customer's new score back takes a median under
5 ms and a p99 under 20 ms. The script

1. builds a BG/NBD + Gamma-Gamma model by hand on the CDNOW sample (nothing trained or
   tracked; weeks, as the tests do) and saves it as ``clv_model.json``, then a profile store
   of ``--transactions`` (default: all of CDNOW, 23,570 customers) in a fresh folder under
   ``--workdir``;
2. starts ``clvlab profiles serve`` on it on a free local port and waits for ``GET /health``;
3. runs ``--clients`` threads, each with its own keep-alive connection, which together send
   ``--warmup`` untimed then ``--requests`` timed ``POST /events`` of one purchase each (a
   customer of the store drawn at random, seeded; a new event id; a date after the history);
   a latency is from sending the request to reading the whole answer, which must be 200 with
   one score row;
4. prints the median, p99 and max in ms, the throughput and PASS/FAIL against the goal, and
   stops the server (SIGTERM, then its process group) whatever happens;
5. times, in this process on the same store, ``ProfileStore.apply`` of one such event: the
   part of a request's latency the store takes (the service applies events one at a time).

The exit status is 1 if the goal is missed.

Usage::

    .venv/bin/python benchmarks/bench_profiles_service.py
    .venv/bin/python benchmarks/bench_profiles_service.py --clients 8 --requests 800
"""

from __future__ import annotations

import argparse
import http.client
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from bench_serving import free_port, stop_server, wait_until_up

CLVLAB = Path(sys.executable).with_name("clvlab")
GOAL_MEDIAN_MS, GOAL_P99_MS = 5.0, 20.0


def build(workdir: Path, transactions: str) -> tuple[Path, list[str], str]:
    """A model file and a profile store of ``transactions`` in a new folder: the store, its
    customers and a date after its history."""
    import clvlab
    from clvlab import BetaGeo, CLVModel, GammaGamma, ProfileStore

    folder = Path(tempfile.mkdtemp(prefix="profiles-", dir=workdir))
    sample = clvlab.read_transactions("lifetimes:CDNOW_sample")
    summary = clvlab.rfm(sample, "1997-09-30", freq="D", freq_multiplier=7)
    model = CLVModel(
        BetaGeo().fit(summary), GammaGamma().fit(summary[summary["frequency"] > 0]), time_unit="W"
    )
    model.save(folder / "clv_model.json")
    history = clvlab.read_transactions(transactions)
    path = folder / "profiles.db"
    ProfileStore.build(folder / "clv_model.json", history, path=path).close()
    after = (history["date"].max() + np.timedelta64(1, "D")).date().isoformat()
    return path, sorted(history["customer_id"].astype(str).unique()), after


def events(customers: list[str], n: int, date: str, seed: int, prefix: str) -> list[dict]:
    """``n`` one-purchase events of customers drawn at random."""
    rng = np.random.default_rng(seed)
    chosen = rng.choice(customers, size=n)
    amounts = np.round(rng.uniform(5, 100, size=n), 2)
    return [
        {"event_id": f"{prefix}{i}", "customer_id": str(c), "date": date, "amount": float(a)}
        for i, (c, a) in enumerate(zip(chosen, amounts, strict=True))
    ]


def post_all(port: int, bodies: list[bytes], clients: int) -> tuple[list[float], float]:
    """Send ``bodies`` from ``clients`` threads (one keep-alive connection each, taking the
    next body as they go): each latency in ms, and the seconds it all took."""
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    todo = iter(bodies)

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        headers = {"Content-Type": "application/json"}
        try:
            while True:
                with lock:
                    body = next(todo, None)
                if body is None or failures:
                    return
                start = time.perf_counter()
                connection.request("POST", "/events", body=body, headers=headers)
                response = connection.getresponse()
                answer = response.read()
                elapsed = (time.perf_counter() - start) * 1000
                if response.status != 200 or len(json.loads(answer)["scores"]) != 1:
                    failures.append(f"HTTP {response.status}: {answer[:2000]!r}")
                with lock:
                    latencies.append(elapsed)
        finally:
            connection.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        sys.exit(failures[0])
    return latencies, time.perf_counter() - start


def store_apply_ms(path: Path, batch: list[dict]) -> float:
    """Median ms of ``ProfileStore.apply`` of each event of ``batch`` alone, in this process."""
    from clvlab import ProfileStore

    times = []
    with ProfileStore.open(path) as store:
        for event in batch:
            start = time.perf_counter()
            store.apply([event])
            times.append((time.perf_counter() - start) * 1000)
    return float(np.median(times))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transactions", default="lifetimes:CDNOW_master")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/clvlab-bench"))
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--warmup", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    args.workdir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    store, customers, after = build(args.workdir, args.transactions)
    print(f"built a store of {len(customers):,} customers in {time.perf_counter() - start:.1f} s")
    batch = events(customers, args.warmup + args.requests, after, args.seed, "bench-")
    bodies = [json.dumps({"events": [event]}).encode() for event in batch]

    port = free_port()
    log_path = store.parent / f"server-{port}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [str(CLVLAB), "profiles", "serve", "--store", str(store), "--port", str(port)],
            cwd=store.parent,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        startup = wait_until_up(process, port, log_path, "/health")
        print(f"server up on port {port} in {startup:.1f} s (log: {log_path})")
        post_all(port, bodies[: args.warmup], args.clients)
        latencies, seconds = post_all(port, bodies[args.warmup :], args.clients)
    finally:
        stop_server(process)

    times = np.array(latencies)
    median, p99 = float(np.median(times)), float(np.percentile(times, 99))
    print(
        f"\n{len(times)} requests of one event each from {args.clients} concurrent clients "
        f"(after {args.warmup} warm-up), {len(times) / seconds:.0f} requests/s:"
    )
    print(f"  median {median:.1f} ms   p99 {p99:.1f} ms   max {times.max():.1f} ms")
    passed = median < GOAL_MEDIAN_MS and p99 < GOAL_P99_MS
    print(
        f"  goal median < {GOAL_MEDIAN_MS:g} ms and p99 < {GOAL_P99_MS:g} ms: "
        f"{'PASS' if passed else 'FAIL'}"
    )
    alone = store_apply_ms(store, events(customers, 100, after, args.seed + 1, "alone-"))
    print(f"\nProfileStore.apply of one event, in this process: median {alone:.1f} ms")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
