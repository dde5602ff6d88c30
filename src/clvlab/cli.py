"""The ``clvlab`` command: thin; parses arguments, calls the library, prints.

Heavy libraries are imported inside the commands so that ``clvlab --help`` answers at once.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clvlab import __version__
from clvlab.errors import ClvlabError, ConfigError

if TYPE_CHECKING:
    import pandas as pd

    from clvlab.training import TrainResult
    from clvlab.training_contractual import ContractualTrainResult

#: Keep in step with clvlab.batch.DEFAULT_PARTITION_ROWS (not imported: --help stays fast).
DEFAULT_PARTITION_ROWS = 5_000_000
DEFAULT_CONFIG = Path("configs") / "cdnow.yaml"
#: Exit status for errors the user can fix (bad config, bad data, bad arguments).
USAGE_ERROR = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clvlab",
        description="Customer lifetime value: train BTYD models, track them in MLflow, score.",
    )
    parser.add_argument("--version", action="version", version=f"clvlab {__version__}")
    parser.add_argument(
        "--tracking-uri",
        metavar="URI",
        help="MLflow tracking store for this command (default: MLFLOW_TRACKING_URI, else the "
        "config's tracking.uri, else ~/.clvlab/mlruns/mlflow.db)",
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="also show MLflow's own log lines and download bars, and full warnings",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser(
        "train",
        help="backtest the candidates, refit each target's champion, log to MLflow",
        description="Backtest every candidate model (BTYD, LightGBM, the historical formula), "
        "choose each target's champion on a validation window before the holdout, refit on "
        "all data and log config, data report, metrics (a nested run per candidate), figures "
        "and the model to MLflow.",
    )
    train.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG,
        help=f"run config YAML (default: {DEFAULT_CONFIG})",
    )
    train.add_argument(
        "--report", type=Path, help="also write the backtest (metrics, champions) as JSON"
    )
    train.add_argument(
        "--export",
        type=Path,
        metavar="DIR",
        help="also save the model to this local folder (default: the config's "
        "tracking.export_dir, else no local copy; `clvlab export` copies a registered version)",
    )
    train.add_argument(
        "--register",
        metavar="NAME",
        help="register the model as NAME (alias challenger); the alias champion moves to it "
        "only if it beats the current champion by the config's registry rule",
    )
    train.add_argument(
        "--engine",
        choices=["local", "spark"],
        help="where the data is read, cleaned and counted (default: the config's engine, "
        "else local); spark: pip install 'clvlab[spark]', the models are fitted on the driver",
    )
    train.add_argument(
        "--spark-master",
        help="with --engine spark: local[N], spark://HOST:PORT, yarn... (default: the "
        "config's spark.master, else Spark's own)",
    )

    score = commands.add_parser(
        "score",
        help="score customers with a trained model",
        description="Write one row per customer: RFM, p_alive, p_churn, expected purchases, "
        "expected spend, expected revenue and CLV; customers that cannot be scored get a "
        "row with the reason. Large data is scored in hash partitions of customers, so "
        "memory stays bounded; the output is written atomically (a Parquet folder of one "
        "file per partition when there are several).",
    )
    score.add_argument(
        "--model",
        required=True,
        help="runs:/RUN_ID/model, models:/NAME@ALIAS or a folder under models/",
    )
    score.add_argument(
        "--transactions",
        required=True,
        help="transactions: a CSV file, or Parquet (a file, a folder or a glob: 'dir/*.parquet')",
    )
    score.add_argument(
        "--as-of",
        metavar="YYYY-MM-DD",
        help="score as of this date, ISO 8601 (a time may follow: YYYY-MM-DDTHH:MM); "
        "purchases after it are ignored and counted (default: last transaction date)",
    )
    score.add_argument(
        "--horizon",
        type=float,
        metavar="DAYS",
        help="horizon in days, at most 36525 (default: the model's)",
    )
    score.add_argument("--output", required=True, type=Path, help="output .parquet or .csv")
    score.add_argument(
        "--customer-id",
        metavar="COL",
        help="column of the customer ids (default: the one the model was trained with)",
    )
    score.add_argument(
        "--date", metavar="COL", help="column of the dates (default: the model's, as above)"
    )
    score.add_argument(
        "--amount",
        metavar="COL",
        help="column of the amounts, in place of the model's amount or quantity and price",
    )
    score.add_argument(
        "--date-format",
        metavar="FMT",
        help="strftime format of the dates, e.g. '%%d/%%m/%%Y', or ISO8601 "
        "(default: the model's; inferred if it has none)",
    )
    score.add_argument(
        "--identity-links",
        metavar="FILE",
        help="CSV/Parquet of id pairs (id_a, id_b) to resolve to one person first",
    )
    score.add_argument(
        "--explain",
        action="store_true",
        help="add each target's reasons in plain words (reasons_purchases, reasons_churn, "
        "reasons_revenue): the GBM's top three feature contributions, or the RFM position",
    )
    score.add_argument(
        "--intervals",
        type=float,
        metavar="LEVEL",
        help="add intervals at this level, e.g. 0.9: <column>_lower/_upper of p_alive, "
        "expected_purchases, expected_revenue and clv (parameter uncertainty), and "
        "purchases_lower/_upper bounding the purchases themselves (default: the model's "
        "scoring.intervals, else none)",
    )
    score.add_argument(
        "--partition-rows",
        type=int,
        default=DEFAULT_PARTITION_ROWS,
        metavar="N",
        help=f"about how many transaction rows to score at once (default: "
        f"{DEFAULT_PARTITION_ROWS:,}; about 1 GB of memory per worker)",
    )
    score.add_argument(
        "--workers", type=int, metavar="N", help="partitions scored at once (default: CPU cores)"
    )
    score.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        help="show a progress bar (default: when standard error is a terminal)",
    )
    score.add_argument(
        "--engine",
        choices=["local", "spark"],
        default="local",
        help="local: this machine (DuckDB partitions); spark: Spark executors, writing a "
        "Parquet folder (pip install 'clvlab[spark]'; --transactions may also name a table)",
    )
    score.add_argument(
        "--spark-master",
        metavar="URL",
        help="with --engine spark: local[N], spark://HOST:PORT, yarn... (default: Spark's: "
        "spark-submit's --master, spark-defaults.conf, else local[*])",
    )

    export = commands.add_parser(
        "export",
        help="copy a registered model version to a local folder",
        description="Copy NAME@ALIAS (default alias: champion) or any model URI from the "
        "tracking store to DIR, replacing an earlier copy atomically. The folder scores "
        "offline (`clvlab score --model DIR`), and its scores name the registry version.",
    )
    export.add_argument("model", help="NAME, NAME@ALIAS, models:/NAME/VERSION or runs:/RUN/model")
    export.add_argument("folder", type=Path, help="local folder to write, e.g. models/cdnow")

    models = commands.add_parser(
        "models",
        help="list a registered model's versions",
        description="List the versions of a registered model: aliases, holdout window and "
        "metrics, and who promoted them and why.",
    )
    models.add_argument("name", help="registered model name")

    promote = commands.add_parser(
        "promote",
        help="move the champion alias to a version by hand",
        description="Point the alias champion at VERSION, recording who asked and why.",
    )
    promote.add_argument("name", help="registered model name")
    promote.add_argument("version", help="the version to promote")
    promote.add_argument("--reason", required=True, help="why (recorded on the version)")
    promote.add_argument("--by", help="who asks (default: your login name)")

    serve = commands.add_parser(
        "serve",
        help="serve a registered model over HTTP",
        description="Serve the model over HTTP with clvlab's own server (FastAPI on uvicorn, "
        "in this process). POST /invocations with the JSON of `mlflow models serve` "
        '(dataframe_split or dataframe_records, optional params "as_of" and "horizon_days", '
        "nothing else) answers the customers' score rows with the as_of and horizon used; "
        "missing numbers are null. Each request is scored in one of --workers worker "
        "processes and answered within --timeout seconds (waiting for a free worker "
        "included), else with HTTP 504 (or 503), and its worker is replaced. GET /ping and "
        "/health answer 200 while the server can score, GET /version clvlab's version. "
        "SIGTERM or Ctrl-C stops the server and its workers (requests in flight get up to "
        "--timeout to finish).",
    )
    serve.add_argument("name", help="registered model name (or a model URI or folder)")
    serve.add_argument("--alias", default="champion", help="version alias (default: champion)")
    serve.add_argument("--host", default="127.0.0.1", help="interface (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, default=5000, help="port (default: 5000)")
    serve.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="worker processes, each scoring one request at a time and holding the model "
        "(about 300 MB each; default: CPU cores)",
    )
    serve.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="a request not answered within SECONDS of its arrival gets HTTP 504 (503 if no "
        "worker became free) and its worker is restarted (default: 30)",
    )
    serve.add_argument(
        "--as-of-default",
        choices=["today", "last-transaction"],
        default="today",
        help="as_of of a request without params.as_of: the request date (default) or the "
        "last transaction date in the request",
    )
    serve.add_argument(
        "--access-log", action="store_true", help="log every request on standard error"
    )

    report = commands.add_parser(
        "report",
        help="write a self-contained HTML report of a training run",
        description="Write one HTML file (inline figures, no script, nothing fetched) with a "
        "training run's champions, backtest metric tables, ensemble weights, data report, "
        "backtest panels, segment map, interval coverage and top customers by value and by "
        "churn risk (the run's model scoring its training data as of the holdout end), all "
        "read from the run in MLflow. The file is complete or not written at all.",
    )
    report.add_argument(
        "run",
        metavar="RUN_ID_OR_MODEL_URI",
        help="a run id, runs:/RUN_ID/model, models:/NAME/VERSION or models:/NAME@ALIAS",
    )
    report.add_argument("--output", required=True, type=Path, help="the HTML file to write")
    report.add_argument(
        "--no-customers",
        action="store_true",
        help="leave out the top-customer tables, which read and score the run's training "
        "data (its data.source) again",
    )
    _profiles_parser(commands)
    return parser


def _profiles_parser(commands: argparse._SubParsersAction) -> None:
    profiles = commands.add_parser(
        "profiles",
        help="customer profiles kept current event by event",
        description="Keep every customer's profile and score current in one SQLite file (a "
        "profile store): build it from history, apply events (transactions and identity "
        "links), export the scores, or serve it over HTTP.",
    )
    actions = profiles.add_subparsers(dest="profiles_command", required=True, metavar="ACTION")
    store_help = (
        "the profile store: its file (default: profiles.db) or a Redis URL, "
        "redis://HOST:PORT/DB?prefix=NAME"
    )

    build = actions.add_parser(
        "build",
        help="create a profile store from a model and history",
        description="Create a new profile store scored with --model, with the profiles of "
        "--transactions (read as `clvlab score` reads them).",
    )
    build.add_argument(
        "--model",
        required=True,
        help="runs:/RUN_ID/model, models:/NAME@ALIAS, a model folder or a clv_model.json file",
    )
    build.add_argument(
        "--transactions",
        required=True,
        help="history: a CSV file, or Parquet (a file, a folder or a glob: 'dir/*.parquet')",
    )
    build.add_argument(
        "--as-of",
        metavar="YYYY-MM-DD",
        help="leave out the transactions after this date (they can come as events)",
    )
    build.add_argument(
        "--identity-links",
        metavar="FILE",
        help="CSV/Parquet of id pairs (id_a, id_b) that are one person",
    )
    build.add_argument("--store", default="profiles.db", help=store_help)

    apply = actions.add_parser(
        "apply",
        help="apply a file of events to a profile store",
        description="Apply the events of a file: transactions (event_id, customer_id, date, "
        "amount) and identity links (event_id, id_a, id_b). An event id seen before is "
        "ignored. The valid events are applied in one transaction; if some are rejected, "
        "they are named and the command exits with status 2.",
    )
    apply.add_argument("events", help="events: a .csv, .parquet or .jsonl file")
    apply.add_argument("--store", default="profiles.db", help=store_help)

    export = actions.add_parser(
        "export",
        help="write the score table of every customer in a profile store",
        description="Write every customer's score row (the columns of `clvlab score`) to "
        "one file, atomically.",
    )
    export.add_argument("--output", required=True, type=Path, help="output .parquet or .csv")
    export.add_argument("--store", default="profiles.db", help=store_help)
    export.add_argument(
        "--as-of",
        metavar="YYYY-MM-DD",
        help="score as of this date (default: the last transaction in the store)",
    )

    serve = actions.add_parser(
        "serve",
        help="serve a profile store over HTTP",
        description="Serve a profile store over HTTP (FastAPI on uvicorn, in this process). "
        'POST /events with {"events": [...]} (optional "as_of", "horizon_days") applies '
        "them and answers the changed customers' scores, the counts and the segment "
        "transitions (400 naming each rejected event; the others are applied). GET "
        "/customers/ID answers a customer's profile and score (404 if unknown), GET /health "
        "the number of customers and the webhook's counters. With a bearer token (the "
        "environment variable CLVLAB_PROFILES_TOKEN or --token-file) every request must "
        "carry it, else 401 (/health then answers only its status); without one the server "
        "listens on the loopback interface only. SIGTERM or Ctrl-C stops it.",
    )
    serve.add_argument("--store", default="profiles.db", help=store_help)
    serve.add_argument(
        "--model", help="score with this model (default: the one the store was built with)"
    )
    serve.add_argument("--host", default="127.0.0.1", help="interface (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, default=5002, help="port (default: 5002)")
    serve.add_argument(
        "--webhook",
        metavar="URL",
        help="POST each segment transition to URL as JSON, from a queue of 10,000 (dropped "
        "and counted when full), with up to 5 tries per transition",
    )
    serve.add_argument(
        "--token-file",
        type=Path,
        metavar="FILE",
        help="file holding the bearer token (default: the environment variable "
        "CLVLAB_PROFILES_TOKEN)",
    )
    serve.add_argument(
        "--access-log", action="store_true", help="log every request on standard error"
    )


def _train(args: argparse.Namespace) -> None:
    from clvlab.config import load_config

    # A config with a mistake is reported before the training stack (MLflow, LightGBM,
    # matplotlib) is imported.
    config = load_config(args.config)
    if args.engine is not None or args.spark_master is not None:
        spark = config.spark.model_copy(update={"master": args.spark_master or config.spark.master})
        config = load_config(
            {**config.model_dump(), "engine": args.engine or config.engine, "spark": spark}
        )

    import pandas as pd

    from clvlab.training import TrainResult, train

    result = train(config, register=args.register, export=args.export)
    if args.report:
        from clvlab.outputs import write_json

        write_json(result.report(), args.report)
    if not isinstance(result, TrainResult):
        _print_contractual(result, args.report)
        return
    backtest = result.backtest
    with pd.option_context("display.width", 120, "display.float_format", "{:.4f}".format):
        for window, table in (
            ("Validation", backtest.validation_metrics),
            ("Holdout", backtest.metrics),
        ):
            span = backtest.windows[window.lower()]
            print(f"\n{window} ({span.start.date()} to {span.end.date()}):")
            print(table.T.to_string())
    for name, reason in backtest.skipped.items():
        print(f"\nSkipped {name}: {reason}")
    for note in backtest.notes:
        print(f"Note: {note}")
    champions = ", ".join(f"{t}={c}" for t, c in backtest.champions.items())
    print(f"\nChampions (chosen on validation): {champions}")
    print(f"Scoring model: {result.model.label()}")
    metrics = ", ".join(f"{k} {v:.4f}" for k, v in result.champion_metrics.items())
    print(f"Its holdout metrics: {metrics}")
    print("\nFitted on all data:")
    print(pd.Series(result.params["full"]).to_string(float_format="{:.4f}".format))
    report = result.data_report
    print(
        f"\nData: {report['rows_kept']:,} of {report['rows_read']:,} rows kept, "
        f"{report['customers']:,} customers"
    )
    _print_run(result, args.report)


def _print_contractual(result: ContractualTrainResult, report: Path | None) -> None:
    """What ``clvlab train`` prints of a contractual training."""
    import pandas as pd

    with pd.option_context("display.width", 120, "display.float_format", "{:.4f}".format):
        for window, table in (
            ("Validation", result.validation_metrics),
            ("Holdout", result.metrics),
        ):
            start, end = result.windows[window.lower()]
            print(f"\n{window} ({start.date()} to {end.date()}):")
            print(table.T.to_string() if not table.empty else "  nothing to judge")
    for note in result.notes:
        print(f"Note: {note}")
    print(f"\nChampion (chosen on validation): {result.champion}")
    print(f"Scoring model: {result.model.label()}")
    metrics = ", ".join(f"{k} {v:.4f}" for k, v in result.champion_metrics.items())
    print(f"Its holdout metrics: {metrics or 'none (nothing to judge)'}")
    print("\nFitted on all data:")
    print(pd.Series(result.params).to_string(float_format="{:.4f}".format))
    data = result.data_report
    print(
        f"\nData: {data['rows_kept']:,} of {data['rows_read']:,} subscriptions kept, "
        f"{data['subscribers']:,} subscribers, {data['active']:,} active"
    )
    _print_run(result, report)


def _print_run(result: TrainResult | ContractualTrainResult, report: Path | None) -> None:
    """The end of what ``clvlab train`` prints, for either setting: where the run, the model,
    its export, its registry decision and the ``--report`` are, and how to open the UI."""
    from clvlab.tracking import ui_command

    print(f"Run:   {result.run_id}\nModel: {result.model_uri}")
    if result.local_path is not None:
        print(f"Local: {result.local_path}")
    if result.registry is not None:
        print(result.registry.to_text())
    if report:
        print(f"Report: {report}")
    ui = ui_command(result.experiment_id, result.run_id, result.config.tracking.uri)
    print(f"MLflow UI: {ui}")


def _score(args: argparse.Namespace) -> None:
    if args.engine == "spark":
        if args.explain:
            raise ConfigError(
                "--explain scores on one machine only (not with --engine spark yet): drop "
                "--explain, or score without --engine spark"
            )
        if args.intervals is not None:
            raise ConfigError(
                "--intervals scores on one machine only (not with --engine spark yet): drop "
                "--intervals, or score without --engine spark"
            )
        _score_on_spark(args)
        return
    from clvlab.batch import score_to_file

    result = score_to_file(
        args.model,
        args.transactions,
        args.output,
        as_of=args.as_of,
        horizon_days=args.horizon,
        identity_links=args.identity_links,
        partition_rows=args.partition_rows,
        workers=args.workers,
        progress=args.progress,
        customer_id=args.customer_id,
        date=args.date,
        amount=args.amount,
        date_format=args.date_format,
        explain=args.explain,
        intervals=args.intervals,
    )
    layout = (
        f"a folder of {len(result.files)} Parquet files" if result.output.is_dir() else "one file"
    )
    print(
        f"Scored {result.customers - result.unscored:,} customers as of "
        f"{result.as_of.date()} ({result.unscored:,} could not be scored) in "
        f"{result.partitions} partition(s) -> {result.output} ({layout})"
    )
    for reason, count in result.reasons.items():
        print(f"  not scored, {reason}: {count:,}")
    excluded = {k: v for k, v in result.data_report.items() if k.startswith("excluded.") and v}
    if excluded:
        print(f"Rows excluded: {json.dumps(excluded)}")
    print(f"Model: {result.model}")


def _score_on_spark(args: argparse.Namespace) -> None:
    """``clvlab score --engine spark``: :func:`clvlab.spark.score`, written whole or not at
    all."""
    try:
        import clvlab.spark
        from clvlab.spark.io import read_source
        from clvlab.spark.output import check_target, write_scores
    except ImportError as exc:
        raise ConfigError(str(exc)) from None
    check_target(args.output)  # before Spark starts
    spark = clvlab.spark.session(args.spark_master)
    transactions = read_source(spark, args.transactions)
    links = None if args.identity_links is None else read_source(spark, str(args.identity_links))
    scores = clvlab.spark.score(
        args.model,
        transactions,
        as_of=args.as_of,
        horizon_days=args.horizon,
        identity_links=links,
        customer_id=args.customer_id,
        date=args.date,
        amount=args.amount,
        date_format=args.date_format,
    )
    write_scores(scores, args.output)
    counts = {
        row["reason"]: row["count"]
        for row in spark.read.parquet(str(args.output.absolute()))
        .groupBy("reason")
        .count()
        .collect()
    }
    scored = counts.pop(None, 0)
    print(
        f"Scored {scored:,} customers ({sum(counts.values()):,} could not be scored) on Spark "
        f"({spark.sparkContext.master}) -> {args.output} (a Parquet folder)"
    )
    for reason, count in sorted(counts.items()):
        print(f"  not scored, {reason}: {count:,}")


def _export(args: argparse.Namespace) -> None:
    from clvlab.tracking import export_registered

    uri, folder = export_registered(args.model, args.folder)
    print(f"Exported {uri} -> {folder}")


def _models(args: argparse.Namespace) -> None:
    import pandas as pd

    from clvlab.tracking.registry import versions

    table = versions(args.name)
    with pd.option_context("display.width", 160, "display.max_columns", None):
        print(table.to_string(index=False, float_format="{:.4f}".format))


def _promote(args: argparse.Namespace) -> None:
    from clvlab.tracking.registry import promote

    previous = promote(args.name, args.version, reason=args.reason, by=args.by)
    was = f" (was version {previous})" if previous else ""
    print(f"{args.name}: champion -> version {args.version}{was}. Reason: {args.reason}")


def _serve(args: argparse.Namespace) -> None:
    import math

    from clvlab.serving.ports import listen

    if args.workers is not None and args.workers < 1:
        raise ClvlabError(f"--workers must be at least 1, got {args.workers}")
    if not (math.isfinite(args.timeout) and args.timeout > 0):
        raise ClvlabError(f"--timeout must be a positive number of seconds, got {args.timeout}")
    # The port is taken and the model loaded before anything is printed: the port first, so
    # that a port in use is reported at once, not after the model has loaded.
    sock = listen(args.host, args.port)
    try:
        from clvlab.serving.served import load_served_model

        model, served = load_served_model(args.name, args.alias)

        from clvlab.serving.server import ModelServer

        server = ModelServer(
            model,
            host=args.host,
            port=args.port,
            workers=args.workers,
            timeout=args.timeout,
            as_of_default=args.as_of_default,
            access_log=args.access_log,
            sock=sock,
        )
    except BaseException:
        sock.close()
        raise
    print(f"Serving {served} on {server.url} (Ctrl-C stops)", flush=True)
    server.run()


def _report(args: argparse.Namespace) -> None:
    from clvlab.report import write_report

    output = write_report(args.run, args.output, score_customers=not args.no_customers)
    print(f"Report of {args.run} -> {output} ({output.stat().st_size / 1e6:.1f} MB)")


def _profiles(args: argparse.Namespace) -> None:
    actions = {
        "build": _profiles_build,
        "apply": _profiles_apply,
        "export": _profiles_export,
        "serve": _profiles_serve,
    }
    actions[args.profiles_command](args)


def _profiles_build(args: argparse.Namespace) -> None:
    from clvlab.profiles import ProfileStore

    with ProfileStore.build(
        args.model,
        args.transactions,
        as_of=args.as_of,
        path=args.store,
        identity_links=args.identity_links,
    ) as store:
        print(f"Built {store.location}: {store.customers():,} customers, model {store.model.name}")


def _profiles_apply(args: argparse.Namespace) -> None:
    from clvlab.profiles import ProfileStore
    from clvlab.profiles.backend import redacted_url
    from clvlab.profiles.events import Rejected

    events = _read_event_file(args.events)
    with ProfileStore.open(args.store) as store:
        changed = store.apply(events, on_error="skip")
    done, shown = changed.attrs, redacted_url(args.store)
    print(
        f"Applied {done['applied']:,} events to {shown} ({done['ignored']:,} ignored as "
        f"seen before, {len(done['rejected']):,} rejected): {len(changed):,} customers "
        f"changed, {len(done['transitions']):,} segment transitions"
    )
    if done["rejected"]:
        rejected = [Rejected(**item) for item in done["rejected"]]
        listed = "; ".join(str(item) for item in rejected[:10])
        more = f" (and {len(rejected) - 10} more)" if len(rejected) > 10 else ""
        raise ClvlabError(
            f"{len(rejected)} events of {args.events} were rejected (the others were "
            f"applied): {listed}{more}. Fix them and apply the file again: the events "
            "applied are ignored the second time"
        )


def _read_event_file(path: str) -> pd.DataFrame | list[dict[str, Any]]:
    """The events of a .csv or .parquet file (a table), or of a .jsonl file (one JSON object
    per line)."""
    from clvlab.data.io import load_table
    from clvlab.errors import DataError

    source = Path(path)
    if source.suffix.lower() not in (".csv", ".parquet", ".jsonl"):
        raise DataError(f"{path}: unknown file type of events; use .csv, .parquet or .jsonl")
    if source.suffix.lower() != ".jsonl":
        return load_table(source, "events")[0]
    try:
        lines = source.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read the events {path}: {err}") from None
    events = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}, line {number}: not JSON ({err.msg})") from None
        if not isinstance(event, dict):
            raise DataError(f"{path}, line {number}: an event is a JSON object, one a line")
        events.append(event)
    if not events:
        raise DataError(f"{path} has no events")
    return events


def _profiles_export(args: argparse.Namespace) -> None:
    from clvlab.outputs import write_table
    from clvlab.profiles import ProfileStore
    from clvlab.profiles.backend import redacted_url

    with ProfileStore.open(args.store) as store:
        table = store.scores(as_of=args.as_of)
    write_table(table, args.output)
    shown = redacted_url(args.store)
    print(f"Exported the scores of {len(table):,} customers of {shown} -> {args.output}")


def _profiles_serve(args: argparse.Namespace) -> None:
    from clvlab.profiles.backend import redacted_url
    from clvlab.profiles.service import ProfileServer, read_token

    token = read_token(args.token_file)
    # The store is opened and the port taken before anything is printed.
    server = ProfileServer(
        args.store,
        model=args.model,
        host=args.host,
        port=args.port,
        token=token,
        webhook=args.webhook,
        access_log=args.access_log,
    )
    access = "bearer token required" if token else "no token"
    shown = redacted_url(args.store)
    print(
        f"Serving the profiles of {shown} on {server.url} ({access}; Ctrl-C stops)",
        flush=True,
    )
    server.run()


def _quiet(*, verbose: bool) -> None:
    """Show clvlab's progress on standard error; keep MLflow's INFO lines and download bars
    for ``--verbose``; print each warning on one line."""
    import logging

    from clvlab.progress import StageHandler

    progress = logging.getLogger("clvlab.progress")
    if not any(isinstance(h, StageHandler) for h in progress.handlers):
        progress.addHandler(StageHandler(terminal=sys.stderr.isatty()))
    progress.setLevel(logging.INFO)
    progress.propagate = False
    if verbose:
        return
    # MLflow sets its loggers' level when it is imported, from MLFLOW_LOGGING_LEVEL.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    for name in ("alembic", "urllib3"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.formatwarning = _one_line_warning


def _one_line_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    line: str | None = None,
) -> str:
    """``clvlab: warning: <message>``: the message only, not the source line that raised it."""
    text = " ".join(str(message).split())
    return f"clvlab: warning: {text}\n"


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``clvlab`` command; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.tracking_uri:
        os.environ["MLFLOW_TRACKING_URI"] = args.tracking_uri
    _quiet(verbose=args.verbose)
    commands = {
        "train": _train,
        "score": _score,
        "export": _export,
        "models": _models,
        "promote": _promote,
        "serve": _serve,
        "report": _report,
        "profiles": _profiles,
    }
    try:
        commands[args.command](args)
    except ClvlabError as exc:
        command = " ".join(filter(None, [args.command, getattr(args, "profiles_command", None)]))
        print(f"clvlab {command}: error: {exc}", file=sys.stderr)
        return USAGE_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
