"""Train and score on one machine and on Spark (local mode), on the same synthetic data.

Issue 16 ("When one machine is not enough: Spark"): the training job with ``engine: spark``
keeps what grows with the customers in Spark and brings only bounded tables to the Python
driver: the counted sufficient statistics of every customer (the BTYD and Gamma-Gamma fits)
and the transactions of a hash sample of ``spark.sample_customers`` customers (the backtest's
metrics, LightGBM, the segment cut points). The goals measured here, on 10M customers (about
55M transactions) by default:

- the Spark job completes with bounded driver memory: the Python driver's peak RSS
  (``VmHWM``) under :data:`DRIVER_PEAK_GOAL_MB`;
- the sufficient statistics that reach the driver are under :data:`STATISTICS_GOAL_MB`
  (``SufficientStatistics.transferred_bytes``: the Arrow bytes collected) at the holdout's
  start and end.

Two jobs, each in a fresh interpreter (its peak RSS its own), on the same Parquet file and
run config (``time_unit: W``, holdout 2025-10-01 .. 2025-12-31, segments on, GBM off unless
``--gbm``):

- ``local``: ``clvlab.train(config)`` (DuckDB and pandas on this machine), then
  ``clvlab.score_to_file`` of the trained model to Parquet;
- ``spark``: ``clvlab.spark.session("local[CORES]")``, ``clvlab.train`` with ``engine:
  spark``; then on the data read and cleaned by ``clvlab.spark.read_transactions``:
  ``clvlab.spark.rfm`` written to Parquet, ``sufficient_statistics`` of the weekly summary at
  the holdout's start and end, and ``clvlab.spark.score`` of the trained model written by
  ``clvlab.spark.output.write_scores``. In local mode the JVM is a child of the Python
  driver and Spark's Python workers are children of the JVM: the peak RSS of each is
  reported (the JVM's and the workers' from a sampler thread that reads their ``VmHWM``
  every 0.25 s, since idle workers exit), and the sampled peak of the whole process tree.

Then both runs are compared: champions, the fitted parameters (rtol 1e-9), the data report,
the holdout metrics when the Spark run's sample covers every customer (otherwise its metrics
are on the sample, and are not compared), and the two score tables customer by customer.

Usage::

    python benchmarks/bench_spark.py                          # 10M customers
    python benchmarks/bench_spark.py --customers 20000        # a quick end-to-end check
    python benchmarks/bench_spark.py --skip-local --cores 2 --driver-memory 6g
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import subprocess
import sys
import threading
import time
import traceback
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench_rfm import Outcome, exit_status, memory_mb
from synthetic import ensure_data

WORKDIR = Path("/tmp/clvlab-bench")
NAME = "bench_spark"
#: The split, inside the synthetic data's window (first purchases 2024-01-01 .. 2025-12-31).
CALIBRATION_END = "2025-09-30"
HOLDOUT_END = "2025-12-31"
TIME_UNIT, UNIT_DAYS = "W", 7.0
#: The Python driver's peak RSS in the Spark job, below (the JVM's heap is --driver-memory).
DRIVER_PEAK_GOAL_MB = 4096.0
#: SufficientStatistics.transferred_bytes (collected from Spark) at either date, below.
STATISTICS_GOAL_MB = 50.0
RTOL = 1e-9  # parameters and holdout metrics of the two runs
SCORE_RTOL = 1e-6  # score tables (Spark adds amounts in another order)
#: Rows of transactions per Spark shuffle partition by default (each partition is one pandas
#: table in one Python worker when cleaning and scoring).
ROWS_PER_PARTITION = 1_000_000
SAMPLE_EVERY_S = 0.25
JOBS = ("local", "spark")
#: Phases of the table: key, label ({start} and {end} are the holdout's dates).
PHASES = [
    ("session", "start the Spark session"),
    ("train", "clvlab.train (read, clean, backtest, refit, segments, MLflow)"),
    ("read", "read + clean on Spark (clvlab.spark.read_transactions)"),
    ("rfm", "clvlab.spark.rfm as of {end}, written to Parquet"),
    ("stats_start", "sufficient statistics as of {start} (holdout start)"),
    ("stats_end", "sufficient statistics as of {end} (holdout end)"),
    ("score", "score as of {end}, written to Parquet"),
]


# --------------------------------------------------------------------------------------------
# Processes: peak memory of this process's descendants (the JVM and Spark's Python workers).


def status_mb(pid: int, field: str) -> float | None:
    """``VmHWM`` or ``VmRSS`` of process ``pid`` in MB; None if it is gone (or a zombie)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return None


def process_name(pid: int) -> str:
    """The process's ``comm`` ('java', 'python', ...); '' if it is gone."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def descendants(root: int) -> list[int]:
    """Every process below ``root`` (children, grandchildren...): with psutil if installed,
    else from the parent pids in ``/proc/*/stat``."""
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        try:
            return [child.pid for child in psutil.Process(root).children(recursive=True)]
        except psutil.Error:
            return []
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])  # the field after the state
        children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


class TreeSampler(threading.Thread):
    """Reads the ``VmHWM`` of every process below ``root`` every :data:`SAMPLE_EVERY_S`
    seconds (a Python worker's peak is lost when it exits), and the sum of the tree's current
    RSS (``root`` included): a lower bound of the job's simultaneous peak."""

    def __init__(self, root: int) -> None:
        super().__init__(daemon=True, name="rss-sampler")
        self.root = root
        self.peaks: dict[int, float] = {}
        self.names: dict[int, str] = {}
        self.tree_peak_mb = 0.0
        self._done = threading.Event()  # not _stop: Thread has one

    def run(self) -> None:
        while not self._done.wait(SAMPLE_EVERY_S):
            self.sample()

    def sample(self) -> None:
        total = status_mb(self.root, "VmRSS") or 0.0
        for pid in descendants(self.root):
            peak, current = status_mb(pid, "VmHWM"), status_mb(pid, "VmRSS")
            if peak is None or current is None:
                continue
            self.names.setdefault(pid, process_name(pid))
            self.peaks[pid] = max(self.peaks.get(pid, 0.0), peak)
            total += current
        self.tree_peak_mb = max(self.tree_peak_mb, total)

    def stop(self) -> dict[str, Any]:
        """Stop sampling (after a last sample); the JVM's and the Python workers' peaks. In
        local mode the Python processes below the driver are Spark's (its daemon and
        workers, children of the JVM)."""
        self._done.set()
        self.join()
        self.sample()
        jvms = [pid for pid, name in self.names.items() if name == "java"]
        workers = [self.peaks[pid] for pid, name in self.names.items() if name.startswith("python")]
        return {
            "jvm_pid": jvms[0] if jvms else None,
            "jvm_peak_mb": self.peaks[jvms[0]] if jvms else None,
            "python_workers": len(workers),
            "python_worker_peak_mb": max(workers, default=None),
            "tree_peak_mb": self.tree_peak_mb,
        }


# --------------------------------------------------------------------------------------------
# Children: one job each; the report goes to a JSON file.


class StageLog(logging.Handler):
    """Keeps (and shows on standard error) the end line of each ``clvlab.progress`` stage."""

    def __init__(self, job: str) -> None:
        super().__init__(level=logging.INFO)
        self.job = job
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "clvlab_event", None) != "end":
            return
        line = record.getMessage()
        self.lines.append(line)
        print(f"  [{self.job}] {line}", file=sys.stderr, flush=True)


def watch_stages(job: str) -> StageLog:
    """Route the ``clvlab.progress`` log to a :class:`StageLog`."""
    handler = StageLog(job)
    logger = logging.getLogger("clvlab.progress")
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    logger.propagate = False
    return handler


class Phases:
    """Times named phases; each is announced on standard error."""

    def __init__(self, job: str) -> None:
        self.job = job
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, key: str):
        label = dict(PHASES)[key].format(start=CALIBRATION_END, end=HOLDOUT_END)
        print(f"[{self.job}] {label} ...", file=sys.stderr, flush=True)
        began = time.perf_counter()
        yield
        self.seconds[key] = time.perf_counter() - began
        print(f"[{self.job}] {label}: {self.seconds[key]:.1f} s", file=sys.stderr, flush=True)


def mlflow_store(workdir: Path, job: str) -> Path:
    """The folder of a job's MLflow store (SQLite database and artifacts), fresh each run."""
    return workdir / f"{NAME}_mlflow" / job


def spark_conf(args: argparse.Namespace) -> dict[str, str]:
    """The Spark settings of the session (and of the run config's ``spark.conf``)."""
    return {
        "spark.driver.memory": args.driver_memory,
        "spark.sql.shuffle.partitions": str(args.shuffle_partitions),
        "spark.local.dir": str(args.workdir / "spark-local"),
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.log.level": "ERROR",
    }


def run_config(args: argparse.Namespace, engine: str) -> dict[str, Any]:
    """The run config of both jobs; ``engine: spark`` adds the ``spark`` section."""
    database = mlflow_store(args.workdir, engine) / "mlflow.db"
    config: dict[str, Any] = {
        "name": NAME,
        "data": {"source": str(args.data), "amount": "amount"},
        "split": {"calibration_end": CALIBRATION_END, "holdout_end": HOLDOUT_END},
        "time_unit": TIME_UNIT,
        "models": {"gbm": {"enabled": bool(args.gbm)}},
        "tracking": {"uri": f"sqlite:///{database}"},
        "segments": {"enabled": True},
        "engine": engine,
    }
    if engine == "spark":
        config["spark"] = {"master": f"local[{args.cores}]", "conf": spark_conf(args)}
        if args.sample_customers is not None:
            config["spark"]["sample_customers"] = args.sample_customers
    return config


def _json_value(value: Any) -> Any:
    """NumPy scalars and timestamps as JSON values."""
    return value.item() if hasattr(value, "item") else str(value)


def table_nbytes(table: Any) -> int:
    """A table's size in the driver's memory, as ``SufficientStatistics.nbytes`` counts it
    (pandas' deep memory usage, index included); 0 for None."""
    return 0 if table is None else int(table.memory_usage(index=True, deep=True).sum())


def train_summary(result: Any) -> dict[str, Any]:
    """What the parent compares of a :class:`clvlab.TrainResult`."""
    return {
        "model": result.model.label(),
        "champions": dict(result.backtest.champions),
        "btyd_champions": dict(result.backtest.btyd_champions),
        "params": result.params,
        "metrics": result.metrics.to_dict(orient="index"),
        "champion_metrics": result.champion_metrics,
        "data_report": result.data_report,
        "notes": list(result.backtest.notes),
        "skipped": dict(result.backtest.skipped),
    }


def local_job(args: argparse.Namespace, report: dict[str, Any]) -> None:
    """``clvlab.train`` on this machine, then ``clvlab.score_to_file``."""
    import clvlab

    phases, stages = Phases("local"), watch_stages("local")
    report.update(phases=phases.seconds, stages=stages.lines)
    with phases("train"):
        result = clvlab.train(run_config(args, "local"))
    report["result"] = train_summary(result)
    with phases("score"):
        written = clvlab.score_to_file(
            result.model, args.data, args.output, as_of=HOLDOUT_END, progress=False
        )
    report.update(scored=written.customers, score_partitions=written.partitions)


def spark_job(args: argparse.Namespace, report: dict[str, Any]) -> None:
    """``clvlab.train`` with ``engine: spark``, then rfm, statistics and scoring on Spark."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # Python workers: this venv
    import clvlab
    import clvlab.spark
    from clvlab.spark.output import write_scores
    from clvlab.spark.statistics import sufficient_statistics

    phases, stages = Phases("spark"), watch_stages("spark")
    report.update(phases=phases.seconds, stages=stages.lines)
    with phases("session"):
        spark = clvlab.spark.session(f"local[{args.cores}]", app_name=NAME, conf=spark_conf(args))
    sampler = TreeSampler(os.getpid())
    sampler.start()
    try:
        with phases("train"):
            result = clvlab.train(run_config(args, "spark"))
        report["result"] = train_summary(result)
        with phases("read"):
            loaded = clvlab.spark.read_transactions(
                spark, str(args.data), amount="amount", until=HOLDOUT_END
            )
        frame = loaded.frame
        rfm_output = args.workdir / f"{NAME}_rfm_spark.parquet"
        with phases("rfm"):
            summary = clvlab.spark.rfm(frame, HOLDOUT_END, freq="D", freq_multiplier=UNIT_DAYS)
            summary.write.mode("overwrite").parquet(str(rfm_output))
        report["rfm_rows"] = spark.read.parquet(str(rfm_output)).count()
        statistics = {}
        for key, as_of in (("stats_start", CALIBRATION_END), ("stats_end", HOLDOUT_END)):
            with phases(key):
                counted = sufficient_statistics(frame, as_of, unit_days=UNIT_DAYS)
            statistics[as_of] = {
                "customers": counted.customers,
                "purchase_rows": len(counted.purchases),
                "spend_rows": 0 if counted.spend is None else len(counted.spend),
                "nonpositive_repeat_spend": counted.nonpositive_repeat_spend,
                "nbytes": counted.transferred_bytes,  # what the goal is on
                "purchase_memory_bytes": table_nbytes(counted.purchases),
                "spend_memory_bytes": table_nbytes(counted.spend),
            }
        report["statistics"] = statistics
        loaded.unpersist()
        with phases("score"):
            transactions = spark.read.parquet(str(args.data))
            scores = clvlab.spark.score(result.model, transactions, as_of=HOLDOUT_END)
            write_scores(scores, args.output)
        report["scored"] = spark.read.parquet(str(args.output)).count()
        report["spark"] = {
            "master": spark.sparkContext.master,
            "version": spark.version,
            **{key: spark.sparkContext.getConf().get(key) for key in spark_conf(args)},
        }
    finally:
        report.update(sampler.stop())
        report["peak_mb"] = memory_mb("VmHWM")  # before stopping Spark
        spark.stop()


def child_main(args: argparse.Namespace) -> int:
    """Run one job and write its report (also when it fails) to ``--report``."""
    warnings.simplefilter("ignore")  # pyspark on pandas 3, lifetimes, MLflow
    report: dict[str, Any] = {"job": args.child}
    began = time.perf_counter()
    status = 0
    try:
        (local_job if args.child == "local" else spark_job)(args, report)
    except Exception as error:  # reported to the parent, which prints it
        traceback.print_exc()
        lines = str(error).strip().splitlines()
        report["error"] = f"{type(error).__name__}: {lines[0] if lines else ''}"
        status = 1
    report.setdefault("peak_mb", memory_mb("VmHWM"))
    report["job_s"] = time.perf_counter() - began
    args.report.write_text(json.dumps(report, default=_json_value))
    return status


# --------------------------------------------------------------------------------------------
# Parent


def run_child(job: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run ``job`` in a fresh interpreter in ``--workdir``; its report (or why it has none)."""
    report_path = args.workdir / f"{NAME}_{job}.json"
    output = args.workdir / f"{NAME}_scores_{job}.parquet"
    for path in (report_path, output):
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    shutil.rmtree(mlflow_store(args.workdir, job), ignore_errors=True)  # both pay for a new store
    command = [sys.executable, str(Path(__file__).resolve()), "--child", job]
    command += ["--data", str(args.data), "--workdir", str(args.workdir)]
    command += ["--report", str(report_path), "--output", str(output)]
    command += ["--cores", str(args.cores), "--driver-memory", args.driver_memory]
    command += ["--shuffle-partitions", str(args.shuffle_partitions)]
    if args.gbm:
        command.append("--gbm")
    if args.sample_customers is not None:
        command += ["--sample-customers", str(args.sample_customers)]
    env = {key: value for key, value in os.environ.items() if key != "MLFLOW_TRACKING_URI"}
    print(f"\nrunning {job} ...", flush=True)
    began = time.perf_counter()
    done = subprocess.run(command, cwd=args.workdir, env=env, check=False)
    wall = time.perf_counter() - began
    if report_path.exists():
        report = json.loads(report_path.read_text())
    else:  # killed (out of memory?) or failed before reporting
        how = f"killed by signal {-done.returncode}" if done.returncode < 0 else "no report"
        report = {"job": job, "error": f"exit status {done.returncode} ({how})", "phases": {}}
    report.update(wall_s=wall, output=str(output))
    return report


def _cell(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def print_table(reports: dict[str, dict[str, Any]]) -> None:
    """Seconds per phase and peak RSS per process, a column per job."""
    jobs = list(reports)
    width = 64
    print(f"\n{'phase':<{width}}" + "".join(f"{job + ' s':>12}" for job in jobs))
    for key, label in PHASES:
        cells = [reports[job].get("phases", {}).get(key) for job in jobs]
        if all(cell is None for cell in cells):
            continue
        text = label.format(start=CALIBRATION_END, end=HOLDOUT_END)
        print(f"{text:<{width}}" + "".join(f"{_cell(cell):>12}" for cell in cells))
    print(
        f"{'child wall (imports, JVM start and stop included)':<{width}}"
        + "".join(f"{_cell(reports[job].get('wall_s')):>12}" for job in jobs)
    )
    print(f"\n{'peak RSS':<{width}}" + "".join(f"{job + ' MB':>12}" for job in jobs))
    rows = [
        ("Python process (the driver in the Spark job), VmHWM", "peak_mb"),
        ("JVM (Spark driver and executor, local mode), VmHWM", "jvm_peak_mb"),
        ("largest Spark Python worker, VmHWM", "python_worker_peak_mb"),
        (f"all processes together (sampled every {SAMPLE_EVERY_S} s)", "tree_peak_mb"),
    ]
    for label, key in rows:
        print(
            f"{label:<{width}}" + "".join(f"{_cell(reports[job].get(key), 0):>12}" for job in jobs)
        )
    for job in jobs:
        if reports[job].get("python_workers"):
            print(f"({job}: {reports[job]['python_workers']} Spark Python processes seen)")


def print_stages(reports: dict[str, dict[str, Any]]) -> None:
    """The training stages each job logged (``clvlab.progress``)."""
    for job, report in reports.items():
        if report.get("stages"):
            print(f"\n{job} training stages:")
            for line in report["stages"]:
                print(f"  {line}")


def check_statistics(report: dict[str, Any]) -> list[Outcome]:
    """The size of the statistics the Spark training collects, against the goal."""
    statistics = report.get("statistics")
    if not statistics:
        print("\nstatistics: not measured (the Spark job failed before)")
        return [Outcome("statistics < 50 MB", False)]
    written = report.get("rfm_rows", 0)
    print(f"\nclvlab.spark.rfm as of {HOLDOUT_END}: {written:,} customers written")
    for as_of, counted in statistics.items():
        print(
            f"sufficient statistics as of {as_of}: {counted['customers']:,} customers in "
            f"{counted['purchase_rows']:,} distinct (frequency, recency, T) and "
            f"{counted['spend_rows']:,} (frequency, monetary_value) rows: "
            f"{counted['nbytes'] / 1e6:.2f} MB collected (Arrow); in the driver's memory "
            f"{counted['purchase_memory_bytes'] / 1e6:.2f} MB + "
            f"{counted['spend_memory_bytes'] / 1e6:.2f} MB (histories + spends)"
        )
    largest = max(counted["nbytes"] for counted in statistics.values()) / 1e6
    outcome = Outcome("statistics < 50 MB", largest < STATISTICS_GOAL_MB)
    print(f"statistics < {STATISTICS_GOAL_MB:.0f} MB: {largest:.2f} MB  {outcome}")
    return [outcome]


def _relative(a: float, b: float) -> float:
    if a == b or (math.isnan(a) and math.isnan(b)):
        return 0.0
    if math.isnan(a) or math.isnan(b):
        return math.inf
    return abs(a - b) / max(abs(a), abs(b))


def _nested_agreement(
    local: dict[str, dict[str, Any]], spark: dict[str, dict[str, Any]], what: str
) -> tuple[bool, str]:
    """Whether every value of ``local`` (group -> name -> value) is in ``spark`` and agrees
    with it (rtol 1e-9); the detail counts the compared ``what``."""
    worst, mismatched, compared = 0.0, [], 0
    for group, values in local.items():
        theirs = spark.get(group, {})
        for key, value in values.items():
            if key not in theirs:
                mismatched.append(f"{group}.{key} (missing)")
                continue
            compared += 1
            difference = _relative(float(value), float(theirs[key]))
            worst = max(worst, difference)
            if difference > RTOL:
                mismatched.append(f"{group}.{key}: {value!r} vs {theirs[key]!r}")
    count = compared if what == "values" else len(local)
    detail = f"{count} {what}, largest relative difference {worst:.1e}"
    if mismatched:
        detail += "; differ: " + ", ".join(mismatched[:5])
    return not mismatched, detail


def compare_params(
    local: dict[str, dict[str, float]], spark: dict[str, dict[str, float]], sampled: bool
) -> tuple[bool, str]:
    """Whether the fitted parameters agree (rtol 1e-9); the GBM's trees only without
    sampling (on a sample the GBM learns from other customers)."""
    compared = {
        stage: {
            key: value
            for key, value in local.get(stage, {}).items()
            if not (sampled and key.startswith("gbm."))
        }
        for stage in ("calibration", "full")
    }
    return _nested_agreement(compared, spark, "values")


def compare_metrics(local: dict[str, dict], spark: dict[str, dict]) -> tuple[bool, str]:
    """Whether the holdout metrics of every candidate agree (rtol 1e-9)."""
    return _nested_agreement(local, spark, "candidates")


def _scores_source(path: Path) -> str:
    """A DuckDB Parquet source of a score output (a file, or a folder of part files)."""
    return str(path / "*.parquet") if path.is_dir() else str(path)


def compare_scores(local: Path, spark: Path, sampled: bool) -> tuple[bool, str]:
    """Whether the two score tables have the same customers and values (rtol 1e-6; the
    segment columns only without sampling: their cut points are fixed on the customers the
    driver has), joined by customer id in DuckDB."""
    import duckdb

    from clvlab.models.clv import PREDICTION_COLUMNS
    from clvlab.segments import SEGMENT_COLUMNS

    values = ["frequency", "recency", "T", "monetary_value", *PREDICTION_COLUMNS]

    connection = duckdb.connect()
    try:
        sources = {"a": _scores_source(local), "b": _scores_source(spark)}
        counts = {
            side: connection.execute("SELECT count(*) FROM read_parquet(?)", [source]).fetchone()[0]
            for side, source in sources.items()
        }
        tests = [
            f"sum(CASE WHEN a.{c} IS NOT DISTINCT FROM b.{c} OR abs(a.{c} - b.{c}) <= "
            f"{SCORE_RTOL} * abs(b.{c}) + 1e-12 THEN 0 ELSE 1 END)"
            for c in values
        ]
        columns = list(values)
        if not sampled:
            tests += [
                f"sum(CASE WHEN a.{c}::VARCHAR IS NOT DISTINCT FROM b.{c}::VARCHAR "
                "THEN 0 ELSE 1 END)"
                for c in SEGMENT_COLUMNS
            ]
            columns += SEGMENT_COLUMNS
        row = connection.execute(
            f"SELECT count(*), {', '.join(tests)} FROM read_parquet(?) a "
            "JOIN read_parquet(?) b USING (customer_id)",
            [sources["a"], sources["b"]],
        ).fetchone()
    finally:
        connection.close()
    joined, differing = row[0], dict(zip(columns, row[1:], strict=True))
    bad = {column: count for column, count in differing.items() if count}
    equal = counts["a"] == counts["b"] == joined and not bad
    detail = (
        f"{counts['a']:,} local rows, {counts['b']:,} Spark rows, {joined:,} joined by id; "
        f"columns {', '.join(columns)}"
    )
    if bad:
        detail += "; customers that differ: " + ", ".join(f"{c} {n:,}" for c, n in bad.items())
    return equal, detail


def compare_runs(local: dict[str, Any], spark: dict[str, Any]) -> list[Outcome]:
    """The two training runs and score tables against each other."""
    ours, theirs = local["result"], spark["result"]
    report = theirs["data_report"]
    sampled = report.get("spark.customers_sampled", 0) < report.get("customers", 0)
    outcomes = []
    print("\nlocal run against Spark run:")
    print(f"  model: local {ours['model']!r}, spark {theirs['model']!r}")
    same = ours["champions"] == theirs["champions"] and (
        ours["btyd_champions"] == theirs["btyd_champions"]
    )
    outcomes.append(Outcome("champions equal", same))
    print(
        f"  champions equal: {outcomes[-1]}  (local {ours['champions']}, "
        f"spark {theirs['champions']})"
    )
    equal, detail = compare_params(ours["params"], theirs["params"], sampled)
    outcomes.append(Outcome("parameters equal", equal))
    print(f"  parameters (calibration and full) equal, rtol {RTOL:g}: {outcomes[-1]}  ({detail})")
    local_report = dict(ours["data_report"])
    spark_report = {k: v for k, v in report.items() if k != "spark.customers_sampled"}
    outcomes.append(Outcome("data report equal", local_report == spark_report))
    differ = sorted(
        key
        for key in set(local_report) | set(spark_report)
        if local_report.get(key) != spark_report.get(key)
    )
    print(
        f"  data report equal: {outcomes[-1]}"
        + (f"  (differ: {', '.join(differ)})" if differ else "")
    )
    if sampled:
        print(
            f"  holdout metrics: not compared: the Spark run judges the candidates on its "
            f"sample of {report['spark.customers_sampled']:,} of {report['customers']:,} "
            "customers (spark.sample_customers)"
        )
    else:
        equal, detail = compare_metrics(ours["metrics"], theirs["metrics"])
        outcomes.append(Outcome("holdout metrics equal", equal))
        print(
            f"  holdout metrics equal (the sample is every customer), rtol {RTOL:g}: "
            f"{outcomes[-1]}  ({detail})"
        )
    if not same:
        print("  scores: not compared (the champions differ)")
    elif "scored" in local and "scored" in spark:
        equal, detail = compare_scores(Path(local["output"]), Path(spark["output"]), sampled)
        outcomes.append(Outcome("scores equal", equal))
        what = "" if not sampled else " (segments not compared: cut points from the sample)"
        print(f"  scores equal, rtol {SCORE_RTOL:g}{what}: {outcomes[-1]}  ({detail})")
    return outcomes


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (the ``--child`` ones are internal)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=10_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=WORKDIR, help="data, stores and results")
    parser.add_argument(
        "--cores", type=int, default=os.cpu_count() or 1, help="Spark's local[N]; all by default"
    )
    parser.add_argument("--skip-local", action="store_true", help="run the Spark job alone")
    parser.add_argument("--gbm", action="store_true", help="LightGBM candidates too")
    parser.add_argument(
        "--sample-customers",
        type=int,
        help="spark.sample_customers (the run config's default when not given)",
    )
    parser.add_argument(
        "--driver-memory", default="6g", help="spark.driver.memory: the JVM's heap (6g)"
    )
    parser.add_argument(
        "--shuffle-partitions",
        type=int,
        help=f"spark.sql.shuffle.partitions; by default one per {ROWS_PER_PARTITION:,} rows, "
        "at least 2 per core",
    )
    parser.add_argument("--child", choices=JOBS, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--report", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.workdir = args.workdir.resolve()
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit status 1 if a check fails."""
    args = parse_args(argv)
    if args.child:
        return child_main(args)
    from clvlab.config import SparkConfig

    args.workdir.mkdir(parents=True, exist_ok=True)
    args.data = args.workdir / f"tx_{args.customers}_seed{args.seed}.parquet"
    meta = ensure_data(args.data, args.customers, args.seed)
    if args.shuffle_partitions is None:
        args.shuffle_partitions = max(2 * args.cores, math.ceil(meta["rows"] / ROWS_PER_PARTITION))
    sample = args.sample_customers or SparkConfig.model_fields["sample_customers"].default
    print(
        f"benchmark: {meta['customers']:,} customers, {meta['rows']:,} rows; split "
        f"{CALIBRATION_END} / {HOLDOUT_END}, time unit {TIME_UNIT}, GBM "
        f"{'on' if args.gbm else 'off'}, segments on; Spark local[{args.cores}], driver memory "
        f"{args.driver_memory}, {args.shuffle_partitions} shuffle partitions, sample of "
        f"{sample:,} customers; this machine has {os.cpu_count()} cores",
        flush=True,
    )
    reports = {} if args.skip_local else {"local": run_child("local", args)}
    reports["spark"] = run_child("spark", args)

    print_table(reports)
    print_stages(reports)
    for job, report in reports.items():
        if "error" in report:
            print(f"\n{job} job FAILED: {report['error']}")
    spark = reports["spark"]
    outcomes = [
        Outcome(
            "spark job completes with bounded driver memory",
            "error" not in spark and spark["peak_mb"] < DRIVER_PEAK_GOAL_MB,
        )
    ]
    print(
        f"\nspark job completes with bounded driver memory: Python driver peak "
        f"{_cell(spark.get('peak_mb'), 0)} MB (goal < {DRIVER_PEAK_GOAL_MB:.0f} MB), "
        f"{spark.get('scored', 0):,} customers scored  {outcomes[0]}"
    )
    outcomes += check_statistics(spark)
    local = reports.get("local")
    if local is None:
        print("\nlocal run: skipped (--skip-local); nothing compared")
    elif "result" not in local or "result" not in spark:
        print("\nruns not compared: a job failed before its training finished")
    else:
        outcomes += compare_runs(local, spark)
    return exit_status(outcomes)


if __name__ == "__main__":
    sys.exit(main())
