"""The report of a training run: one self-contained HTML page.

The page is built from what the run logged in MLflow (its backtest report, data report,
figures, metrics, tags and model), so any past run has one: ``clvlab report RUN`` writes it
(:func:`write_report`), and ``clvlab train`` logs it with the run as ``report.html``
(:func:`log_report`), where the MLflow UI shows it. It holds the run's header (name, id, date,
model URI and registered versions), the champions and the scoring model, the validation and
holdout metric tables with the champions marked, the ensemble weights, the data report, the
backtest figure, the segment map, the holdout interval coverage, and the top customers by
value and by churn risk, scored with the run's model on its training data as of the holdout
end.

Self-contained: the figures are inline (``data:`` URIs), the style is inline, there is no
script and no external address; the page's Content-Security-Policy forbids loading anything
else, so it reads the same offline, attached to an e-mail or in the MLflow UI. Every text
taken from the run is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import json
import math
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from clvlab.errors import ClvlabError
from clvlab.intervals import DEFAULT_LEVEL
from clvlab.outputs import write_text
from clvlab.segments import CHURN_THRESHOLDS
from clvlab.tracking.logged import LoggedRun, attach_file, fetch_run

#: The artifact name of the report in its run.
REPORT_ARTIFACT = "report.html"
#: Rows of each top-customer table.
TOP_CUSTOMERS = 20
#: The ``p_churn`` above which a customer is at high risk, when the run has no segment rules:
#: the segments' default threshold of the high churn-risk tier.
DEFAULT_HIGH_CHURN = CHURN_THRESHOLDS[-1]

_BACKTEST = "backtest_report.json"
_DATA = "data_report.json"
_BACKTEST_FIGURE = "backtest.png"
_SEGMENT_MAP = "segment_map.png"
_SEGMENT_RULES = "segment_rules.json"
_DECISION = "registry_decision.json"
_ARTIFACTS = (_BACKTEST, _DATA, _BACKTEST_FIGURE, _SEGMENT_MAP, _SEGMENT_RULES, _DECISION)
#: The score table's columns shown in the top-customer tables (those the table has), and the
#: format of each.
_CUSTOMER_COLUMNS = {
    "customer_id": "{}",
    "frequency": "{:,.0f}",
    "recency": "{:,.1f}",
    "T": "{:,.1f}",
    "monetary_value": "{:,.2f}",
    "p_alive": "{:.3f}",
    "p_churn": "{:.3f}",
    "expected_purchases": "{:,.2f}",
    "clv": "{:,.2f}",
    "cohort": "{}",
    "periods": "{:,.0f}",
    "price": "{:,.2f}",
    "p_renew": "{:.3f}",
    "derl": "{:,.2f}",
    "rfm_segment": "{}",
    "value_tier": "{}",
    "churn_tier": "{}",
}
#: No script, nothing from anywhere: inline style and images only.
_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
       margin: 0 auto; max-width: 1200px; padding: 1rem 1.5rem 3rem; color: #1f2328;
       line-height: 1.45; }
h1 { font-size: 1.6rem; margin-bottom: 0.2rem; }
h2 { font-size: 1.25rem; margin-top: 2.2rem; border-bottom: 1px solid #d0d7de;
     padding-bottom: 0.2rem; }
h3 { font-size: 1.05rem; margin-top: 1.4rem; }
nav a { margin-right: 0.9rem; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; font-size: 0.85rem; }
th, td { border: 1px solid #d0d7de; padding: 0.2rem 0.45rem; text-align: left;
         vertical-align: top; }
th { background: #f6f8fa; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
td.champion, .champion-key { background: #dafbe1; font-weight: 600; }
dl.facts { display: grid; grid-template-columns: max-content auto; gap: 0.15rem 1rem; }
dl.facts dt { font-weight: 600; }
dl.facts dd { margin: 0; word-break: break-all; }
div.scroll { overflow-x: auto; }
img { max-width: 100%; height: auto; border: 1px solid #d0d7de; }
.note { color: #59636e; }
"""


@dataclass(frozen=True)
class ScoredCustomers:
    """Customers scored by a run's model, for the report's top-customer tables.

    Attributes
    ----------
    table
        Their score table (:func:`clvlab.score`).
    as_of
        The date they were scored as of.
    description
        Who they are, for the report: ``"the 23,570 customers of lifetimes:CDNOW_master"``.
    """

    table: pd.DataFrame
    as_of: pd.Timestamp
    description: str


@dataclass(frozen=True)
class RunReport:
    """What a run's report shows (see :func:`collect_report`).

    Attributes
    ----------
    run
        The run as the tracking store holds it, with the artifacts the report shows.
    backtest, data_report
        Its ``backtest_report.json`` and ``data_report.json``.
    customers
        The customers its model scored for the top-customer tables, or None.
    customers_note
        Why there are no top-customer tables (empty when there are).
    """

    run: LoggedRun
    backtest: dict[str, Any]
    data_report: dict[str, Any]
    customers: ScoredCustomers | None
    customers_note: str = ""

    @property
    def holdout_end(self) -> pd.Timestamp:
        """The last day of the run's holdout: the date its model was refit up to."""
        return pd.Timestamp(self.backtest["windows"]["holdout"]["until"])

    @property
    def segment_rules(self) -> dict[str, Any] | None:
        """The run's segment cut points (``segment_rules.json``), or None."""
        text = self.run.artifacts.get(_SEGMENT_RULES)
        return None if text is None else dict(json.loads(text))


def collect_report(
    run_or_uri: str,
    *,
    customers: ScoredCustomers | None = None,
    score_customers: bool = True,
    configured_store: str | None = None,
) -> RunReport:
    """Read what a run's report shows from the tracking store.

    Parameters
    ----------
    run_or_uri
        A run id, ``runs:/RUN_ID/model``, ``models:/NAME/VERSION`` or ``models:/NAME@ALIAS``.
    customers
        Customers already scored by the run's model (training passes its own). Otherwise,
        with ``score_customers``, the run's model scores its training data (the run's
        ``data.source``, read again from here) as of the holdout end; when that data cannot
        be read, the report says so instead of the tables.
    score_customers
        Whether to score the training data when ``customers`` is not given.
    configured_store
        A run config's ``tracking.uri``, if any (see
        :func:`clvlab.tracking.store.tracking_uri`).

    Raises
    ------
    ClvlabError
        If the run does not exist, has no model, or is not a clvlab training run (no
        backtest report).
    """
    run = fetch_run(run_or_uri, _ARTIFACTS, configured=configured_store)
    if _BACKTEST not in run.artifacts:
        raise ClvlabError(
            f"run {run.run_id} has a model but no {_BACKTEST}: it was not logged by `clvlab "
            "train`, which is what a report is made of. Name a run that `clvlab train` logged"
        )
    backtest = json.loads(run.artifacts[_BACKTEST])
    data_report = json.loads(run.artifacts[_DATA]) if _DATA in run.artifacts else {}
    report = RunReport(run, backtest, data_report, customers)
    if customers is not None:
        return report
    if not score_customers:
        return RunReport(run, backtest, data_report, None, "not computed: scoring was skipped")
    scored, note = _score_training_customers(run, report.holdout_end)
    return RunReport(run, backtest, data_report, scored, note)


def _score_training_customers(
    run: LoggedRun, as_of: pd.Timestamp
) -> tuple[ScoredCustomers | None, str]:
    """The run's model's scores of the run's training data as of ``as_of``, or why not."""
    from clvlab.models.contractual.model import ContractualModel
    from clvlab.scoring import score
    from clvlab.tracking import load_scoring_model

    source = run.params.get("data.source", "")
    if not source:
        return None, "not computed: the run did not log its data source (param data.source)"
    # The model folder's own URI: loaded in place from a local store, in any store.
    model = load_scoring_model(f"{run.artifact_uri.rstrip('/')}/model")
    links = run.params.get("data.identity_links") or None
    try:
        if isinstance(model, ContractualModel):
            table = score(model, source, as_of=as_of)
        else:  # the report shows no intervals: none even when the model has a default
            table = score(model, source, as_of=as_of, identity_links=links, intervals=False)
    except ClvlabError as error:
        return None, (
            f"not computed: the run's training data ({source}) cannot be scored from here: {error}"
        )
    return ScoredCustomers(table, as_of, f"the {len(table):,} customers of {source}"), ""


def render_report(report: RunReport) -> str:
    """The report as one self-contained HTML page (see the module docstring)."""
    run = report.run
    title = f"{run.name}: training run {run.run_id}"
    sections = [
        ("champions", "Champions", _champions(report)),
        ("metrics", "Backtest metrics", _metric_tables(report.backtest)),
        ("data", "Data", _data_report(report.data_report)),
        ("backtest", "Backtest panels", _figure(run, _BACKTEST_FIGURE, "the backtest figure")),
        ("segments", "Segment map", _segment_map(run)),
        ("intervals", "Interval coverage", _interval_coverage(run)),
        ("customers", "Top customers", _customers(report)),
    ]
    nav = " ".join(f'<a href="#{key}">{_text(heading)}</a>' for key, heading, _ in sections)
    body = "\n".join(
        f'<section id="{key}">\n<h2>{_text(heading)}</h2>\n{content}\n</section>'
        for key, heading, content in sections
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_POLICY}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_text(f"clvlab report - {title}")}</title>
<style>{_STYLE}</style>
</head>
<body>
<header>
<h1>{_text(title)}</h1>
{_header(report)}
<nav>{nav}</nav>
</header>
{body}
</body>
</html>
"""


def write_report(
    run_or_uri: str,
    output: str | Path,
    *,
    score_customers: bool = True,
    configured_store: str | None = None,
) -> Path:
    """Write the report of a logged training run to ``output``, atomically: the file is
    complete or not there (an earlier one stays as it was if anything fails).

    Parameters
    ----------
    run_or_uri
        A run id, ``runs:/RUN_ID/model``, ``models:/NAME/VERSION`` or ``models:/NAME@ALIAS``.
    output
        The HTML file to write.
    score_customers
        Score the run's training data for the top-customer tables (see
        :func:`collect_report`); without it the report says they were skipped.
    configured_store
        A run config's ``tracking.uri``, if any (see
        :func:`clvlab.tracking.store.tracking_uri`).

    Returns
    -------
    Path
        ``output``.

    Raises
    ------
    ClvlabError
        If the run does not exist, has no model, or was not logged by ``clvlab train``;
        nothing is written then.
    """
    report = collect_report(
        run_or_uri, score_customers=score_customers, configured_store=configured_store
    )
    return write_text(render_report(report), output)


def log_report(
    run_id: str, customers: ScoredCustomers | None, *, configured_store: str | None = None
) -> None:
    """Render the report of the run ``run_id`` and log it to the run as ``report.html``
    (training does, once the run is logged and registered), with ``customers`` for the
    top-customer tables (None: the report says they were not scored). ``configured_store``:
    the run config's ``tracking.uri``, if any."""
    report = collect_report(
        run_id, customers=customers, score_customers=False, configured_store=configured_store
    )
    with tempfile.TemporaryDirectory() as scratch:
        attach_file(run_id, write_text(render_report(report), Path(scratch) / REPORT_ARTIFACT))


def format_metric(value: float | None) -> str:
    """A metric value as the report shows it: four decimals (as ``clvlab train`` prints
    them), ``n/a`` when it could not be computed."""
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:.4f}"


def top_customers(
    scores: pd.DataFrame,
    *,
    value_column: str = "clv",
    high_churn: float = DEFAULT_HIGH_CHURN,
    count: int = TOP_CUSTOMERS,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The report's two lists of customers, from a score table.

    By value: the ``count`` highest ``value_column`` (``clv``; ``expected_purchases`` for a
    count-only model, ``derl`` for subscriptions without a price). By churn risk: the customers
    whose ``p_churn`` is above ``high_churn`` (the high churn-risk tier), the most valuable of
    them first, by what they spent on repeat purchases (``frequency`` x ``monetary_value``;
    ``frequency`` alone when count-only; for subscriptions the periods paid for times the
    price), then by ``p_churn``. Ranking by ``p_churn`` alone would list the thousands of
    one-time buyers long gone, who are all alike; these are the customers worth winning back.
    Ties keep the table's order (by customer id); customers who could not be scored are left
    out.
    """
    scored = scores[scores["p_churn"].notna()]
    by_value = scored.sort_values(value_column, ascending=False, kind="stable").head(count)
    at_risk = scored[scored["p_churn"] > high_churn]
    if "frequency" in at_risk:
        spent = at_risk["frequency"]
        if "monetary_value" in at_risk and at_risk["monetary_value"].notna().any():
            spent = spent * at_risk["monetary_value"].fillna(0.0)
    else:  # subscriptions (a contractual model): the periods paid for, times the price
        spent = at_risk["periods"].astype(float) * at_risk["price"].fillna(1.0)
    order = at_risk.assign(_spent=spent).sort_values(
        ["_spent", "p_churn"], ascending=False, kind="stable"
    )
    return by_value, order.drop(columns="_spent").head(count)


# --- the sections -------------------------------------------------------------------------


def _header(report: RunReport) -> str:
    run = report.run
    windows = report.backtest.get("windows", {})
    facts: list[tuple[str, str]] = [
        ("Run", run.run_id),
        ("Name", run.name),
        ("Experiment", run.experiment),
        ("Started", run.started.strftime("%Y-%m-%d %H:%M UTC")),
        ("Status", run.status),
        ("Model", run.model_uri),
    ]
    if run.requested.strip() not in (run.run_id, run.model_uri):
        facts.append(("Requested as", run.requested))
    registered = [v.uri + (f" ({', '.join(v.aliases)})" if v.aliases else "") for v in run.versions]
    facts.append(("Registered", "; ".join(registered) or "not registered"))
    decision = run.artifacts.get(_DECISION)
    if decision is not None:
        facts.append(("Registry decision", str(json.loads(decision).get("reason", ""))))
    for name, label in (("validation", "Validation window"), ("holdout", "Holdout window")):
        if name in windows:
            span = windows[name]
            facts.append((label, f"fitted until {span['fit_until']}, judged to {span['until']}"))
    for tag, label in (
        ("clvlab.version", "clvlab version"),
        ("clvlab.git_commit", "Git commit"),
        ("clvlab.data_fingerprint", "Data fingerprint"),
        ("clvlab.config_hash", "Config fingerprint"),
    ):
        if tag in run.tags:
            facts.append((label, run.tags[tag]))
    return _facts(facts)


def _champions(report: RunReport) -> str:
    run, backtest = report.run, report.backtest
    champions: dict[str, str] = backtest.get("champions", {})
    btyd: dict[str, str] = backtest.get("btyd_champions", {})
    rows = [
        [_text(target), _text(name), _text(btyd.get(target, ""))]
        for target, name in champions.items()
    ]
    parts = [
        "<p>Each target's champion is chosen on the validation window; the holdout is only "
        "reported.</p>",
        _table(["target", "champion", "BTYD champion"], rows),
        f"<p>Scoring model: <strong>{_text(run.tags.get('clvlab.model', 'unknown'))}</strong></p>",
    ]
    holdout = {
        key.removeprefix("holdout."): value
        for key, value in run.metrics.items()
        if key.startswith("holdout.") and "interval_coverage" not in key
    }
    if holdout:
        parts.append("<h3>The scoring model on the holdout</h3>")
        parts.append(
            _table(
                ["metric", "value"],
                [[_text(name), _number(format_metric(value))] for name, value in holdout.items()],
            )
        )
    weights: dict[str, dict[str, float]] | None = backtest.get("ensemble_weights")
    if weights:
        parts.append("<h3>Ensemble weights</h3>")
        parts.append(
            "<p>Per target, the blend the ensemble candidate fitted on the validation window.</p>"
        )
        parts.append(
            _table(
                ["target", "candidate", "weight"],
                [
                    [_text(target), _text(name), _number(format_metric(weight))]
                    for target, blend in weights.items()
                    for name, weight in blend.items()
                ],
            )
        )
    skipped: dict[str, str] = backtest.get("skipped", {})
    notes: list[str] = backtest.get("notes", [])
    if skipped or notes:
        items = [f"<li>Skipped {_text(name)}: {_text(why)}</li>" for name, why in skipped.items()]
        items += [f"<li>Note: {_text(note)}</li>" for note in notes]
        parts.append("<ul>" + "".join(items) + "</ul>")
    return "\n".join(parts)


def _metric_tables(backtest: Mapping[str, Any]) -> str:
    from clvlab.evaluation.metrics import METRICS

    champions: dict[str, str] = backtest.get("champions", {})
    parts = [
        "<p>One column per candidate; the champion of each metric's target is <span class=\""
        'champion-key">highlighted</span> (bold, green).</p>'
    ]
    windows = backtest.get("windows", {})
    for key, heading in (("validation", "Validation"), ("holdout", "Holdout")):
        table: dict[str, dict[str, float | None]] = backtest.get(f"{key}_metrics", {})
        if not table:
            continue
        span = windows.get(key, {})
        when = f" ({span['fit_until']} to {span['until']})" if span else ""
        candidates = list(table)
        metrics = list(dict.fromkeys(m for values in table.values() for m in values))
        rows = []
        for metric in metrics:
            known = METRICS.get(metric)
            target = known.target if known is not None else metric.split("_", 1)[0]
            direction = None if known is None else known.greater_is_better
            better = {True: " (higher is better)", False: " (lower is better)", None: ""}
            row = [_text(metric + better[direction])]
            for candidate in candidates:
                value = format_metric(table[candidate].get(metric))
                champion = champions.get(target) == candidate
                row.append(_number(value, "champion" if champion else ""))
            rows.append(row)
        parts.append(f"<h3>{_text(heading + when)}</h3>")
        parts.append(_table(["metric", *candidates], rows))
    return "\n".join(parts)


def _data_report(data: Mapping[str, Any]) -> str:
    if not data:
        return '<p class="note">The run logged no data report.</p>'
    rows = [["rows read", _number(_value(data.get("rows_read")))]]
    rows += [
        [_text(f"excluded: {key.removeprefix('excluded.').replace('_', ' ')}"), _number(_value(v))]
        for key, v in data.items()
        if key.startswith("excluded.")
    ]
    rows.append(["rows kept", _number(_value(data.get("rows_kept")))])
    shown = {"rows_read", "rows_kept"}
    details = [
        [_text(key), _number(_value(v)) if isinstance(v, int | float) else _text(_value(v))]
        for key, v in data.items()
        if key not in shown and not key.startswith("excluded.")
    ]
    return "\n".join(
        [
            "<p>Every row read, and what cleaning excluded at each step.</p>",
            _table(["rows", "count"], rows),
            "<h3>Details</h3>",
            _table(["entry", "value"], details),
        ]
    )


def _segment_map(run: LoggedRun) -> str:
    if _SEGMENT_MAP not in run.artifacts:
        return '<p class="note">The run has no segments (segments.enabled was false).</p>'
    return _figure(run, _SEGMENT_MAP, "the RFM segment map")


def _interval_coverage(run: LoggedRun) -> str:
    found = {
        key: value
        for key, value in run.metrics.items()
        if key.startswith("holdout.") and "interval_coverage" in key
    }
    if not found:
        return (
            '<p class="note">Not computed: the run logged no holdout interval coverage '
            "(holdout.interval_coverage).</p>"
        )
    level = run.params.get("scoring.intervals", "")
    at = f"at the level {_text(level or DEFAULT_LEVEL)}" + ("" if level else " (the default)")
    return "\n".join(
        [
            "<p>The share of holdout customers whose purchases in the holdout fell inside the "
            f"scoring model's interval for them, {at}: an interval that holds what it says "
            "covers about its level.</p>",
            _table(
                ["metric", "value"],
                [[_text(key), _number(format_metric(value))] for key, value in found.items()],
            ),
        ]
    )


def _customers(report: RunReport) -> str:
    scored = report.customers
    if scored is None:
        note = report.customers_note or "not computed"
        return f'<p class="note">{_text(note[:1].upper() + note[1:])}</p>'
    rules = report.segment_rules
    table = scored.table
    value_column = "clv"
    if rules is not None:
        value_column = str(rules["value_column"])
    elif "clv" not in table or table["clv"].isna().all():
        value_column = "derl" if "derl" in table else "expected_purchases"
    high = float(rules["churn"][-1]) if rules is not None and rules["churn"] else None
    high_churn = DEFAULT_HIGH_CHURN if high is None else high
    by_value, by_churn = top_customers(table, value_column=value_column, high_churn=high_churn)
    columns = [c for c in _CUSTOMER_COLUMNS if c in table]
    when = scored.as_of.date()
    subscriptions = "frequency" not in table  # a contractual model's scores
    unit = report.run.params.get("time_unit", "")
    in_unit = (
        f", recency and T in the run's time unit ({_text(unit)})"
        if unit and not subscriptions
        else ""
    )
    at_risk = (
        "Subscriptions likely to be cancelled within the horizon, ordered by what they paid "
        "(periods x price)"
        if subscriptions
        else "Customers likely to make no purchase within the horizon, ordered by what they "
        "spent on repeat purchases (frequency x monetary_value)"
    )
    return "\n".join(
        [
            f"<p>The run's model scored {_text(scored.description)} as of {when} (the holdout "
            f"end){in_unit}.</p>",
            f"<h3>By value: the {len(by_value)} highest {_text(value_column)}</h3>",
            _customer_table(by_value, columns),
            f"<h3>By churn risk: P(churn) above {high_churn:g}, the largest past spenders "
            "first</h3>",
            f"<p>{at_risk}: the ones worth winning back.</p>",
            _customer_table(by_churn, columns)
            if len(by_churn)
            else f'<p class="note">No customer has P(churn) above {high_churn:g}.</p>',
        ]
    )


# --- HTML pieces --------------------------------------------------------------------------


def _text(value: object) -> str:
    """``value`` as HTML text: escaped."""
    return html.escape(str(value))


def _number(text: str, css: str = "") -> str:
    """A table cell holding a number (right-aligned), already formatted."""
    classes = " ".join(filter(None, ["number", css]))
    return f'<td class="{classes}">{_text(text)}</td>'


def _value(value: object) -> str:
    """A data-report entry as text."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return format_metric(value)
    return str(value)


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A table; a cell is escaped text, or already a ``<td>`` element (see :func:`_number`)."""
    head = "".join(f"<th>{_text(name)}</th>" for name in header)
    body = "\n".join(
        "<tr>"
        + "".join(cell if cell.startswith("<td") else f"<td>{cell}</td>" for cell in row)
        + "</tr>"
        for row in rows
    )
    return (
        f'<div class="scroll"><table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n'
        "</tbody>\n</table></div>"
    )


def _facts(facts: Sequence[tuple[str, str]]) -> str:
    items = "\n".join(f"<dt>{_text(key)}</dt><dd>{_text(value)}</dd>" for key, value in facts)
    return f'<dl class="facts">\n{items}\n</dl>'


def _figure(run: LoggedRun, name: str, alt: str) -> str:
    data = run.artifacts.get(name)
    if data is None:
        return f'<p class="note">The run logged no {_text(name)}.</p>'
    encoded = base64.b64encode(data).decode("ascii")
    return f'<img src="data:image/png;base64,{encoded}" alt="{_text(alt)}">'


def _customer_table(table: pd.DataFrame, columns: list[str]) -> str:
    rows = []
    for record in table[columns].to_dict(orient="records"):
        row = []
        for column in columns:
            value = record[column]
            missing = (
                value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))
            )
            text = "" if missing else _CUSTOMER_COLUMNS[column].format(value)
            row.append(_number(text) if _CUSTOMER_COLUMNS[column] != "{}" else _text(text))
        rows.append(row)
    return _table(columns, rows)
