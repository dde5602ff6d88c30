"""Time end-to-end batch scoring with clvlab and with lifetimes on the same data, in one run.

The goal: scoring 1M customers / 5.5M transactions end to end (read, RFM, predict, write) at
least 5x faster than the same job written with lifetimes, with a peak memory under 4 GB.

The same job:

- lifetimes: ``pandas.read_parquet``, ``summary_data_from_transaction_data``, then
  ``BetaGeoFitter.conditional_probability_alive`` and
  ``conditional_expected_number_of_purchases_up_to_time`` over the horizon,
  ``GammaGammaFitter.conditional_expected_average_profit`` and ``customer_lifetime_value``
  (12 months, monthly discounting), written with ``DataFrame.to_parquet``;
- clvlab: ``clvlab.score_to_file`` with the model registered in MLflow and loaded by
  ``models:/NAME@champion`` (loading is timed apart), with its defaults (hash partitions of
  5M rows, one worker per core). It writes more: ``p_churn``, expected revenue, the RFM
  columns, the model and a reason column.

Both use the same parameters: BG/NBD and Gamma-Gamma fitted by clvlab (untimed) on 100k of
the customers, set on lifetimes' fitters, and the model discounts monthly as lifetimes does,
so the outputs are compared value by value. Each job runs in a fresh interpreter so that its
peak RSS (``VmHWM``) is its own; the job's time runs from reading the data to the written
file, and the child's wall time (imports included) is shown too.

With ``--intervals LEVEL`` it also scores with intervals (``score_to_file(...,
intervals=LEVEL)``: 200 parameter draws per model, the purchase count's predictive interval)
and checks that this takes under 10x the time of point scoring, with the same point scores.

With ``--big ROWS`` it also scores a Parquet folder of about ROWS rows (generated once, as by
``bench_rfm.py --big``) with clvlab alone, reading it by glob, and checks one row per customer
and a peak RSS under 4 GB: the hash partitions keep memory bounded whatever the data's size.

Usage::

    python benchmarks/bench_score.py                 # 1M customers
    python benchmarks/bench_score.py --repeat 3      # best of 3 per job
    python benchmarks/bench_score.py --intervals 0.9 # and with 90 % intervals
    python benchmarks/bench_score.py --big 100000000 # and 100M rows with clvlab
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

import pandas as pd
from bench_rfm import Outcome, exit_status, memory_mb, summarizer
from synthetic import DEFAULT, customers_for_rows, ensure_data

WORKDIR = Path("/tmp/clvlab-bench")
SPEEDUP_GOAL = 5.0  # lifetimes seconds / clvlab seconds, at least
PEAK_GOAL_MB = 4096.0  # clvlab's peak RSS, below
HORIZON_DAYS = 365
ANNUAL_RATE = 0.10
MODEL_NAME = "bench-score"
RTOL = 1e-6
COMPARED = ["p_alive", "expected_purchases", "expected_spend", "clv"]
INTERVALS_GOAL = 10.0  # seconds with intervals / seconds without, below


# --------------------------------------------------------------------------------------------
# Children


def lifetimes_job(data: Path, as_of: str, params: dict, output: Path) -> dict:
    """lifetimes' summary and predictions of every customer, written to Parquet."""
    from lifetimes import BetaGeoFitter, GammaGammaFitter

    purchases = BetaGeoFitter()
    purchases.params_ = pd.Series(params["purchases"])
    purchases.predict = purchases.conditional_expected_number_of_purchases_up_to_time
    spend = GammaGammaFitter()
    spend.params_ = pd.Series(params["spend"])
    monthly_rate = (1 + ANNUAL_RATE) ** (1 / 12) - 1
    summarize = summarizer("lifetimes", as_of)  # summary_data_from_transaction_data, daily

    began = time.perf_counter()
    frame = pd.read_parquet(data)
    summary = summarize(frame)
    del frame
    x, t_x, age, value = (summary[c] for c in ("frequency", "recency", "T", "monetary_value"))
    scores = pd.DataFrame(index=summary.index)
    scores["p_alive"] = purchases.conditional_probability_alive(x, t_x, age)
    scores["expected_purchases"] = purchases.conditional_expected_number_of_purchases_up_to_time(
        HORIZON_DAYS, x, t_x, age
    )
    scores["expected_spend"] = spend.conditional_expected_average_profit(x, value)
    scores["clv"] = spend.customer_lifetime_value(
        purchases, x, t_x, age, value, time=12, discount_rate=monthly_rate, freq="D"
    )
    scores.reset_index().to_parquet(output)
    return {"seconds": time.perf_counter() - began, "customers": len(scores)}


def clvlab_job(data: Path | str, as_of: str, output: Path, intervals: float | None = None) -> dict:
    """``clvlab.score_to_file`` with the registered champion (and ``intervals``)."""
    from clvlab import load_model, score_to_file

    began = time.perf_counter()
    model = load_model(f"models:/{MODEL_NAME}@champion")
    load_s = time.perf_counter() - began
    began = time.perf_counter()
    result = score_to_file(
        model,
        data,
        output,
        as_of=as_of,
        horizon_days=HORIZON_DAYS,
        progress=False,
        intervals=intervals,
    )
    return {
        "seconds": time.perf_counter() - began,
        "load_s": load_s,
        "customers": result.customers,
        "partitions": result.partitions,
    }


def child_main(args: argparse.Namespace) -> int:
    """Run one job and print its report as JSON (after the timed part)."""
    warnings.simplefilter("ignore")  # lifetimes' deprecation warnings under pandas 3
    output = args.workdir / f"scores_{args.child}.parquet"
    if args.child == "lifetimes":
        params = json.loads((args.workdir / "bench_score_params.json").read_text())
        report = lifetimes_job(args.data, args.as_of, params, output)
    elif args.child == "big":
        report = clvlab_job(str(args.data / "*.parquet"), args.as_of, output)
    elif args.child == "intervals":
        report = clvlab_job(args.data, args.as_of, output, intervals=args.intervals)
    else:
        report = clvlab_job(args.data, args.as_of, output)
    report.update(job=args.child, peak_mb=memory_mb("VmHWM"))
    print(json.dumps(report))
    return 0


# --------------------------------------------------------------------------------------------
# Parent


def register_model(data: Path, as_of: str, workdir: Path) -> dict:
    """Fit BG/NBD and Gamma-Gamma on 100k customers, register them as the champion of
    ``MODEL_NAME`` in a store under ``workdir``; the parameters for lifetimes."""
    import mlflow

    from clvlab import load_config, rfm
    from clvlab.models.clv import fit_clv_model
    from clvlab.serving import export_model
    from clvlab.training import model_settings

    frame = pd.read_parquet(data)
    ids = frame["customer_id"].drop_duplicates().sample(100_000, random_state=0)
    summary = rfm(frame[frame["customer_id"].isin(set(ids))], as_of, freq="D")
    config = load_config(
        {
            "name": "bench-score",
            "data": {"source": str(data)},
            "split": {"calibration_end": "2025-06-30", "holdout_end": as_of},
            "time_unit": "D",
            "scoring": {
                "horizon_days": HORIZON_DAYS,
                "annual_discount_rate": ANNUAL_RATE,
                "discounting": "monthly",
            },
        }
    )
    model, _ = fit_clv_model(summary, "bgnbd", **model_settings(config))
    folder = workdir / "bench_score_model"
    shutil.rmtree(folder, ignore_errors=True)
    export_model(model, folder, frame.head(20))
    client = mlflow.MlflowClient()
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(folder), "model")
    if not client.search_registered_models(f"name = '{MODEL_NAME}'"):
        client.create_registered_model(MODEL_NAME)
    version = client.create_model_version(MODEL_NAME, f"runs:/{run.info.run_id}/model")
    client.set_registered_model_alias(MODEL_NAME, "champion", version.version)
    return {
        "purchases": model.purchases.params_.to_dict(),
        "spend": model.spend.params_.to_dict(),
    }


def run_child(job: str, data: Path, args: argparse.Namespace) -> dict:
    """Run ``job`` in a fresh interpreter in ``--workdir``."""
    command = [sys.executable, str(Path(__file__).resolve()), "--child", job]
    command += ["--data", str(data), "--as-of", args.as_of, "--workdir", str(args.workdir)]
    if args.intervals is not None:
        command += ["--intervals", str(args.intervals)]
    began = time.perf_counter()
    done = subprocess.run(command, cwd=args.workdir, capture_output=True, text=True, check=False)
    lines = done.stdout.strip().splitlines()
    if done.returncode or not lines:
        sys.stderr.write(done.stderr)
        raise RuntimeError(f"child {job!r} failed with exit status {done.returncode}")
    report = json.loads(lines[-1])
    report["wall_s"] = time.perf_counter() - began
    return report


def compare_outputs(workdir: Path) -> tuple[bool, str]:
    """Whether clvlab's scores equal lifetimes' (rtol 1e-6) for every customer."""
    ours = pd.read_parquet(workdir / "scores_clvlab.parquet").set_index("customer_id")
    theirs = pd.read_parquet(workdir / "scores_lifetimes.parquet").set_index("customer_id")
    ours = ours.loc[theirs.index.astype(str), COMPARED].reset_index(drop=True)
    theirs = theirs[COMPARED].reset_index(drop=True)
    try:
        pd.testing.assert_frame_equal(ours, theirs, rtol=RTOL, check_dtype=False)
    except AssertionError as error:
        return False, str(error).splitlines()[0]
    return True, f"{len(theirs):,} customers, columns {', '.join(COMPARED)}"


def intervals_outcomes(best: dict[str, dict], workdir: Path) -> list[Outcome]:
    """Scoring with intervals against point scoring: the time ratio, the same point scores,
    and each point within its bounds."""
    ratio = best["intervals"]["seconds"] / best["clvlab"]["seconds"]
    point = pd.read_parquet(workdir / "scores_clvlab.parquet")
    bounded = pd.read_parquet(workdir / "scores_intervals.parquet")
    same = bool(point[COMPARED].equals(bounded[COMPARED]))
    inside = {
        column: float(
            (
                (bounded[f"{column}_lower"] <= bounded[column] * (1 + 1e-9))
                & (bounded[column] <= bounded[f"{column}_upper"] * (1 + 1e-9))
            ).mean()
        )
        for column in ("p_alive", "expected_purchases", "expected_revenue", "clv")
    }
    outcomes = [
        Outcome("intervals time", ratio < INTERVALS_GOAL),
        Outcome("intervals keep the point scores", same),
    ]
    print(
        f"with intervals / without: {ratio:5.1f}x  (goal < {INTERVALS_GOAL:.0f}x)  "
        f"{outcomes[0]}\nsame point scores with intervals: {outcomes[1]}\n"
        "share of points within their bounds: "
        + ", ".join(f"{column} {share:.4f}" for column, share in inside.items())
    )
    return outcomes


def big(args: argparse.Namespace) -> list[Outcome]:
    """Score the big Parquet folder by glob with clvlab; check rows and peak memory."""
    n_customers = customers_for_rows(args.big)
    data = args.workdir / f"big_{args.big}_seed{args.seed}"
    meta = ensure_data(data, n_customers, args.seed)
    print(f"\nrunning clvlab on {data}/*.parquet ({meta['rows']:,} rows) ...", flush=True)
    report = run_child("big", data, args)
    outcomes = [
        Outcome("big one row per customer", report["customers"] == meta["customers"]),
        Outcome("big peak", report["peak_mb"] < PEAK_GOAL_MB),
    ]
    print(
        f"big: {meta['rows']:,} rows -> {report['customers']:,} rows written (expected "
        f"{meta['customers']:,}: {outcomes[0]}) in {report['partitions']} partitions, "
        f"{report['seconds']:.1f} s (child wall {report['wall_s']:.1f} s), peak RSS "
        f"{report['peak_mb']:.0f} MB (goal < {PEAK_GOAL_MB:.0f} MB)  {outcomes[1]}"
    )
    return outcomes


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit status 1 if a check fails."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=1, help="best of N runs per job")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--as-of", default=str(DEFAULT.end.date()))
    parser.add_argument("--workdir", type=Path, default=WORKDIR, help="data, store and results")
    parser.add_argument(
        "--big", type=int, metavar="ROWS", help="also score ~ROWS rows with clvlab alone"
    )
    parser.add_argument(
        "--intervals", type=float, metavar="LEVEL", help="also score with intervals at LEVEL"
    )
    parser.add_argument(
        "--child", choices=["lifetimes", "clvlab", "big", "intervals"], help=argparse.SUPPRESS
    )
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.workdir = args.workdir.resolve()
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{args.workdir / 'bench_score_mlflow.db'}"
    if args.child:
        return child_main(args)

    args.workdir.mkdir(parents=True, exist_ok=True)
    data = args.workdir / f"tx_{args.customers}_seed{args.seed}.parquet"
    meta = ensure_data(data, args.customers, args.seed)
    print("fitting and registering the model (untimed) ...", flush=True)
    params = register_model(data, args.as_of, args.workdir)
    (args.workdir / "bench_score_params.json").write_text(json.dumps(params))
    print(
        f"benchmark: {meta['customers']:,} customers, {meta['rows']:,} rows, as of "
        f"{args.as_of}, horizon {HORIZON_DAYS} days, best of {args.repeat}, "
        f"{os.cpu_count()} cores",
        flush=True,
    )
    reports: dict[str, list[dict]] = {"lifetimes": [], "clvlab": []}
    if args.intervals is not None:
        reports["intervals"] = []
    for _ in range(args.repeat):
        for job in reports:  # alternate, so that the machine's load falls on both
            print(f"running {job} ...", flush=True)
            reports[job].append(run_child(job, data, args))
    best = {job: min(runs, key=lambda r: r["seconds"]) for job, runs in reports.items()}

    print(f"\n{'job':<10} {'read->write s':>14} {'child wall s':>13} {'peak MB':>8}  notes")
    for job, report in best.items():
        notes = ""
        if job in ("clvlab", "intervals"):
            notes = (
                f"model load {report['load_s']:.2f} s (untimed), {report['partitions']} partitions"
            )
        print(
            f"{job:<10} {report['seconds']:>14.2f} {report['wall_s']:>13.2f} "
            f"{report['peak_mb']:>8.0f}  {notes}"
        )
    speedup = best["lifetimes"]["seconds"] / best["clvlab"]["seconds"]
    equal, detail = compare_outputs(args.workdir)
    complete = best["clvlab"]["customers"] == meta["customers"]
    outcomes = [
        Outcome("speed", speedup >= SPEEDUP_GOAL),
        Outcome("peak", best["clvlab"]["peak_mb"] < PEAK_GOAL_MB),
        Outcome("equal", equal),
        Outcome("one row per customer", complete),
    ]
    verdict = {outcome.name: outcome for outcome in outcomes}
    print(
        f"\nlifetimes / clvlab time: {speedup:5.1f}x  (goal >= {SPEEDUP_GOAL:.0f}x)  "
        f"{verdict['speed']}\n"
        f"clvlab peak RSS: {best['clvlab']['peak_mb']:.0f} MB  (goal < {PEAK_GOAL_MB:.0f} MB)  "
        f"{verdict['peak']}\n"
        f"scores equal (rtol {RTOL:g}): {verdict['equal']}  ({detail})\n"
        f"one row per customer: {verdict['one row per customer']}  "
        f"({best['clvlab']['customers']:,} rows)"
    )
    if args.intervals is not None:
        outcomes += intervals_outcomes(best, args.workdir)
    if args.big:
        outcomes += big(args)
    return exit_status(outcomes)


if __name__ == "__main__":
    sys.exit(main())
