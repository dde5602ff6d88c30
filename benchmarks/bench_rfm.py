"""Time lifetimes' summary and clvlab's ``rfm`` on the same synthetic data, in one run.

The goal (lifetimes = ``lifetimes.utils.summary_data_from_transaction_data``):

- on 1M customers (about 5.5M rows), ``clvlab.rfm`` at least 10x faster than lifetimes, with at
  most half its peak memory, and the same result (rtol 1e-9);
- ``clvlab.rfm`` over a 100M-row Parquet dataset completes with a peak RSS under 4 GB.

The data is generated once to Parquet under ``--workdir`` (reused by later runs). Each job runs
in a fresh child process that reads the data into a DataFrame (timed apart), then times the
summary of the in-memory DataFrame (best of ``--repeat``) and reports its peak RSS (``VmHWM``).
A baseline child only reads the data, so the memory a summary adds is visible. The out-of-core
job (``--big ROWS``) times ``clvlab.rfm`` over the Parquet glob, reading included.

Usage::

    python benchmarks/bench_rfm.py                          # 1M customers
    python benchmarks/bench_rfm.py --repeat 3 --big 100000000
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
from synthetic import DEFAULT, customers_for_rows, ensure_data

WORKDIR = Path("/tmp/clvlab-bench")
SPEEDUP_GOAL = 10.0  # lifetimes seconds / clvlab seconds, at least
MEMORY_GOAL = 0.5  # clvlab peak / lifetimes peak, at most
BIG_PEAK_GOAL_MB = 4096.0  # peak RSS of rfm over the big dataset, below
RTOL = 1e-9
JOBS = ("read-only", "lifetimes", "clvlab")


# --------------------------------------------------------------------------------------------
# Children: one job each, a JSON line on stdout.


def memory_mb(field: str) -> float:
    """``VmHWM`` (peak) or ``VmRSS`` (current) resident memory of this process, in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def summarizer(job: str, as_of: str) -> Callable[[pd.DataFrame], pd.DataFrame] | None:
    """The summary a child times, imported before the data is read; None for the baseline."""
    if job == "lifetimes":
        from lifetimes.utils import summary_data_from_transaction_data

        def lifetimes_summary(frame: pd.DataFrame) -> pd.DataFrame:
            return summary_data_from_transaction_data(
                frame,
                "customer_id",
                "date",
                monetary_value_col="amount",
                observation_period_end=as_of,
                freq="D",
            )

        return lifetimes_summary
    if job == "clvlab":
        from clvlab import rfm

        return lambda frame: rfm(frame, as_of, freq="D")
    return None


def run_in_memory_job(job: str, data: Path, as_of: str, repeat: int, result: Path | None) -> dict:
    """Read ``data``, time ``job``'s summary of it ``repeat`` times; write the result."""
    summarize = summarizer(job, as_of)
    imported_mb = memory_mb("VmRSS")
    began = time.perf_counter()
    frame = pd.read_parquet(data)
    read_s = time.perf_counter() - began
    read_mb = memory_mb("VmRSS")
    seconds: list[float] = []
    summary = None
    for _ in range(repeat if summarize else 0):
        summary = None  # free the previous result before the next run
        began = time.perf_counter()
        summary = summarize(frame)
        seconds.append(time.perf_counter() - began)
    report = {
        "job": job,
        "rows": len(frame),
        "read_s": read_s,
        "seconds": seconds,
        "imported_mb": imported_mb,
        "read_mb": read_mb,
        "peak_mb": memory_mb("VmHWM"),
    }
    if summary is not None and result is not None:
        summary.sort_index().to_parquet(result)
    return report


def run_big_job(data: Path, as_of: str, memory_limit: str | None) -> dict:
    """Time ``clvlab.rfm`` over the Parquet files in ``data`` (a glob), reading included."""
    from clvlab import rfm

    options = {}
    if memory_limit and "memory_limit" in inspect.signature(rfm).parameters:
        options["memory_limit"] = memory_limit
    source = str(data / "*.parquet")
    imported_mb = memory_mb("VmRSS")
    began = time.perf_counter()
    summary = rfm(source, as_of, freq="D", **options)
    seconds = time.perf_counter() - began
    return {
        "job": "big",
        "source": source,
        "options": options,
        "seconds": [seconds],
        "customers": len(summary),
        "repeat_purchases": float(summary["frequency"].sum()),
        "imported_mb": imported_mb,
        "peak_mb": memory_mb("VmHWM"),
    }


def child_main(args: argparse.Namespace) -> int:
    """Entry point of a child process: run one job and print its report as JSON.

    A job that raises still reports, with ``error`` and its peak memory, and exits with 1.
    """
    warnings.simplefilter("ignore")  # lifetimes' deprecation warnings under pandas 3
    try:
        if args.child == "big":
            report = run_big_job(args.data, args.as_of, args.memory_limit)
        else:
            report = run_in_memory_job(args.child, args.data, args.as_of, args.repeat, args.result)
    except Exception as error:  # reported to the parent, which prints it
        message = str(error).strip().splitlines()[0] if str(error).strip() else ""
        report = {
            "job": args.child,
            "error": f"{type(error).__name__}: {message}",
            "peak_mb": memory_mb("VmHWM"),
        }
    print(json.dumps(report))
    return 1 if "error" in report else 0


# --------------------------------------------------------------------------------------------
# Parent: data, children, checks and the table.


@dataclass(frozen=True)
class Outcome:
    """One check against a goal."""

    name: str
    passed: bool

    def __str__(self) -> str:
        return "PASS" if self.passed else "FAIL"


def exit_status(outcomes: list[Outcome]) -> int:
    """Print which checks failed (or that all passed); the exit status, 1 if any failed."""
    failed = [outcome.name for outcome in outcomes if not outcome.passed]
    print(f"\n{'all checks PASS' if not failed else 'FAIL: ' + ', '.join(failed)}")
    return 1 if failed else 0


def run_child(job: str, data: Path, args: argparse.Namespace, result: Path | None = None) -> dict:
    """Run ``job`` in a fresh interpreter, in ``--workdir`` (nothing lands in the repo)."""
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        job,
        "--data",
        str(data),
        "--as-of",
        args.as_of,
        "--repeat",
        str(args.repeat),
    ]
    if result is not None:
        command += ["--result", str(result)]
    command += ["--memory-limit", args.memory_limit or ""]  # "" (none) must reach the child
    began = time.perf_counter()
    done = subprocess.run(command, cwd=args.workdir, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - began
    lines = done.stdout.strip().splitlines()
    if not lines:  # killed, or failed before reporting
        sys.stderr.write(done.stderr)
        raise RuntimeError(f"child {job!r} died with exit status {done.returncode}")
    report = json.loads(lines[-1])
    report["wall_s"] = wall
    if "error" in report and job != "big":
        raise RuntimeError(f"child {job!r} failed: {report['error']}")
    return report


def results_equal(clvlab_path: Path, lifetimes_path: Path) -> tuple[bool, str]:
    """Whether the two summaries are equal (rtol 1e-9, rows sorted by customer id)."""
    ours = pd.read_parquet(clvlab_path).sort_index()
    theirs = pd.read_parquet(lifetimes_path).sort_index()
    for frame in (ours, theirs):
        frame.index = frame.index.astype(str).rename("customer_id")
    try:
        pd.testing.assert_frame_equal(ours, theirs, rtol=RTOL, check_index_type=False)
    except AssertionError as error:
        return False, str(error).splitlines()[0]
    return True, f"{len(ours):,} customers"


def print_table(reports: dict[str, dict]) -> None:
    """Seconds and peak memory of each job."""
    base = reports["read-only"]["peak_mb"]
    print(
        f"\n{'job':<10} {'read s':>7} {'summary s':>10} {'RSS after read MB':>18} "
        f"{'peak MB':>8} {'peak over read-only MB':>23}"
    )
    for job in JOBS:
        report = reports[job]
        best = f"{min(report['seconds']):.2f}" if report["seconds"] else "-"
        extra = f"{report['peak_mb'] - base:.0f}" if job != "read-only" else "-"
        print(
            f"{job:<10} {report['read_s']:>7.2f} {best:>10} {report['read_mb']:>18.0f} "
            f"{report['peak_mb']:>8.0f} {extra:>23}"
        )


def compare(args: argparse.Namespace) -> list[Outcome]:
    """Generate (or reuse) the data, run the three jobs, check and print the comparison."""
    data = args.workdir / f"tx_{args.customers}_seed{args.seed}.parquet"
    meta = ensure_data(data, args.customers, args.seed)
    print(
        f"benchmark: {meta['customers']:,} customers, {meta['rows']:,} rows, freq D, "
        f"as of {args.as_of}, best of {args.repeat}, {os.cpu_count()} cores",
        flush=True,
    )
    results = {job: args.workdir / f"result_{job}.parquet" for job in JOBS[1:]}
    reports = {}
    for job in JOBS:
        print(f"running {job} ...", flush=True)
        reports[job] = run_child(job, data, args, results.get(job))
    print_table(reports)

    lifetimes, clvlab = reports["lifetimes"], reports["clvlab"]
    base = reports["read-only"]["peak_mb"]
    speedup = min(lifetimes["seconds"]) / min(clvlab["seconds"])
    memory = clvlab["peak_mb"] / lifetimes["peak_mb"]
    extra = (clvlab["peak_mb"] - base) / (lifetimes["peak_mb"] - base)
    equal, detail = results_equal(results["clvlab"], results["lifetimes"])
    outcomes = [
        Outcome("speed", speedup >= SPEEDUP_GOAL),
        Outcome("memory", memory <= MEMORY_GOAL),
        Outcome("memory over read-only", extra <= MEMORY_GOAL),
        Outcome("equal", equal),
    ]
    verdict = {outcome.name: outcome for outcome in outcomes}
    print(
        f"\nlifetimes / clvlab time:  {speedup:6.1f}x   (goal >= {SPEEDUP_GOAL:.0f}x)  "
        f"{verdict['speed']}\n"
        f"lifetimes / clvlab peak:  {1 / memory:6.1f}x   (clvlab at {memory:.2f}x of lifetimes; "
        f"goal <= {MEMORY_GOAL}x)  {verdict['memory']}\n"
        f"  same, over read-only:   {1 / extra:6.1f}x   (clvlab at {extra:.2f}x)  "
        f"{verdict['memory over read-only']}\n"
        f"results equal (rtol {RTOL:g}):  {verdict['equal']}  ({detail})"
    )
    return outcomes


def big(args: argparse.Namespace) -> list[Outcome]:
    """Generate (or reuse) the big Parquet folder and run ``clvlab.rfm`` over it."""
    n_customers = customers_for_rows(args.big)
    data = args.workdir / f"big_{args.big}_seed{args.seed}"
    meta = ensure_data(data, n_customers, args.seed)
    size_gb = sum(part.stat().st_size for part in data.glob("*.parquet")) / 1e9
    rows = sum(pq.ParquetFile(part).metadata.num_rows for part in data.glob("*.parquet"))
    print(f"running clvlab.rfm over {data}/*.parquet ({rows:,} rows, {size_gb:.2f} GB) ...")
    report = run_child("big", data, args)
    if "error" in report:
        print(
            f"\nout of core: FAILED after {report['wall_s']:.1f} s, peak RSS "
            f"{report['peak_mb']:.0f} MB, memory_limit {args.memory_limit or 'none'}:\n"
            f"  {report['error']}"
        )
        return [Outcome("big run", False)]
    complete = report["customers"] == meta["customers"]
    outcomes = [
        Outcome("big peak", report["peak_mb"] < BIG_PEAK_GOAL_MB),
        Outcome("big customers", complete),
    ]
    print(
        f"\nout of core: {rows:,} rows -> {report['customers']:,} customers "
        f"(expected {meta['customers']:,}: {outcomes[1]}), options {report['options'] or 'none'}\n"
        f"  rfm {report['seconds'][0]:.1f} s (child wall {report['wall_s']:.1f} s), "
        f"peak RSS {report['peak_mb']:.0f} MB (goal < {BIG_PEAK_GOAL_MB:.0f} MB)  {outcomes[0]}"
    )
    return outcomes


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (the ``--child`` ones are internal)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=1, help="best of N timings per job")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--as-of", default=str(DEFAULT.end.date()))
    parser.add_argument(
        "--big", type=int, metavar="ROWS", help="also run rfm out of core on ~ROWS rows"
    )
    parser.add_argument("--only-big", action="store_true", help="skip the 1M-customer comparison")
    parser.add_argument(
        "--memory-limit",
        default="3GB",
        help="memory_limit of clvlab.rfm in the --big run (if rfm has it); '' for none",
    )
    parser.add_argument("--workdir", type=Path, default=WORKDIR, help="data and results")
    parser.add_argument("--child", choices=[*JOBS, "big"], help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit status 1 if a check fails."""
    args = parse_args(argv)
    if args.child:
        return child_main(args)
    args.workdir.mkdir(parents=True, exist_ok=True)
    outcomes = [] if args.only_big else compare(args)
    if args.big:
        outcomes += big(args)
    return exit_status(outcomes)


if __name__ == "__main__":
    sys.exit(main())
