"""`clvlab serve` (clvlab's own server: FastAPI on uvicorn, scoring in worker processes)
answers a JSON payload of customers' transactions with their scores, within a deadline.

One model is trained on the CDNOW sample (a few seconds) and registered as ``srv`` (its first
version becomes the champion). ``clvlab serve srv --workers 2 --timeout 2`` is started once
for the module on a free local port; the tests of start-up errors and of stopping run their
own ``clvlab serve``. Every wait is bounded (start-up, each request, each stop), and every
server's process group is always stopped.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest
import requests

import clvlab
import servers
import stores
from clvlab.scoring import NO_HISTORY, SCORE_COLUMNS
from clvlab.segments import SEGMENT_COLUMNS
from clvlab.serving.served import model_uri

# The installed console script, as a user runs it.
CLVLAB = [str(Path(sys.executable).with_name("clvlab"))]
CONFIG = {
    "name": "srv",
    "data": {"source": "lifetimes:CDNOW_sample", "amount": "amount"},
    "split": {"calibration_end": "1997-09-30", "holdout_end": "1998-06-30"},
    "tracking": {"figures": False},
    "models": {"purchases": "bgnbd", "candidates": ["bgnbd"], "gbm": {"enabled": False}},
}
AS_OF, HORIZON_DAYS = "1998-06-30", 365
PARAMS = {"as_of": AS_OF, "horizon_days": HORIZON_DAYS}
COLUMNS = ["customer_id", "date", "amount"]
REQUEST_TIMEOUT_S = 30
#: The module server's --timeout: a request is answered within this many seconds.
SERVER_TIMEOUT_S = 2
#: Distinct customers in a request that takes well over SERVER_TIMEOUT_S to score (about 7 s
#: on 2 cores).
SLOW_CUSTOMERS = 300_000
TEXT_COLUMNS = ["customer_id", "model", "model_version", "reason", *SEGMENT_COLUMNS[3:]]
#: The trained model has segment rules: its scores have the segment columns too.
COLUMNS_SERVED = SCORE_COLUMNS + SEGMENT_COLUMNS


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[object, Path]]:
    """A model trained in a private folder and store and registered as ``srv`` (its first
    version, so the champion): (the registered model as loaded back, workdir)."""
    workdir = tmp_path_factory.mktemp("serving")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(workdir)
        patch.setenv("MLFLOW_TRACKING_URI", stores.new_store(workdir / "mlflow.db"))
        result = clvlab.train(CONFIG, register="srv")
        served = clvlab.load_model("models:/srv@champion")
    assert result.registry.promoted
    yield served, workdir


def _store(workdir: Path) -> str:
    return f"sqlite:///{workdir / 'mlflow.db'}"


def _env(workdir: Path) -> dict[str, str]:
    return {**os.environ, "MLFLOW_TRACKING_URI": _store(workdir)}


@pytest.fixture(scope="module")
def server_process(trained) -> Iterator[tuple[str, subprocess.Popen]]:
    """``clvlab serve srv --workers 2 --timeout 2`` on a free port: (base URL, process)."""
    _, workdir = trained
    port = servers.free_port()
    command = [*CLVLAB, "serve", "srv", "--port", str(port), "--workers", "2"]
    with servers.started(
        [*command, "--timeout", str(SERVER_TIMEOUT_S)],
        url=f"http://127.0.0.1:{port}",
        health="/ping",
        cwd=workdir,
        env=_env(workdir),
    ) as started:
        yield started


@pytest.fixture(scope="module")
def server(server_process) -> str:
    """The base URL of the module's server."""
    return server_process[0]


@pytest.fixture(scope="module")
def slow_body() -> bytes:
    """A request of SLOW_CUSTOMERS customers with one purchase each (about 10 MB)."""
    data = [[f"c{i}", f"1997-01-{1 + i % 28:02d}", 10.0 + i % 7] for i in range(SLOW_CUSTOMERS)]
    payload = {"dataframe_split": {"columns": COLUMNS, "data": data}, "params": PARAMS}
    return json.dumps(payload).encode()


@pytest.fixture(scope="module")
def transactions(cdnow_sample: pd.DataFrame) -> pd.DataFrame:
    return cdnow_sample[COLUMNS]


@pytest.fixture(scope="module")
def one(transactions: pd.DataFrame) -> pd.DataFrame:
    """Customer 1's transactions (several)."""
    frame = transactions[transactions["customer_id"] == "1"].reset_index(drop=True)
    assert len(frame) > 1
    return frame


def _post(url: str, payload: dict | bytes, timeout: float = REQUEST_TIMEOUT_S):
    if isinstance(payload, bytes):
        return requests.post(f"{url}/invocations", data=payload, timeout=timeout)
    return requests.post(f"{url}/invocations", json=payload, timeout=timeout)


def _strict_json(response: requests.Response) -> dict:
    """The body parsed as strict JSON: NaN or Infinity fail the test."""

    def refuse(constant: str) -> None:
        raise AssertionError(f"the answer is not strict JSON: it has {constant}")

    return json.loads(response.text, parse_constant=refuse)


def _payload(transactions: pd.DataFrame, params: dict | None = None) -> dict:
    """``dataframe_split`` JSON for transactions: dates as ISO strings."""
    data = [
        [customer, date.isoformat(), amount]
        for customer, date, amount in transactions[COLUMNS].itertuples(index=False)
    ]
    payload: dict = {"dataframe_split": {"columns": COLUMNS, "data": data}}
    if params is not None:
        payload["params"] = params
    return payload


def _scores(response: requests.Response) -> dict:
    assert response.status_code == 200, response.text
    return _strict_json(response)


def _assert_scores_equal(predictions: list[dict], expected: pd.DataFrame) -> None:
    """The answer's records against a score table, column by column (JSON types: strings,
    numbers, null for a missing prediction or no reason)."""
    assert all(list(row) == COLUMNS_SERVED for row in predictions)
    assert list(expected.columns) == COLUMNS_SERVED and len(predictions) == len(expected)
    for column in COLUMNS_SERVED:
        values = [row[column] for row in predictions]
        if column in TEXT_COLUMNS:
            want = [None if pd.isna(v) else str(v) for v in expected[column]]
            assert values == want, column
        else:
            assert not any(isinstance(v, float) and math.isnan(v) for v in values), column
            np.testing.assert_allclose(
                np.asarray([math.nan if v is None else v for v in values], dtype=float),
                expected[column].to_numpy(dtype=float, na_value=np.nan),
                rtol=1e-9,
                equal_nan=True,
                err_msg=column,
            )


def _error(response: requests.Response, status: int = 400) -> str:
    assert response.status_code == status, (response.status_code, response.text)
    body = _strict_json(response)
    assert set(body) == {"error_code", "message"}
    # An error of the request's own, not "an unexpected error" with the cause in a stack trace.
    assert "unexpected error" not in body["message"]
    assert "\n" not in body["message"]
    return body["message"]


def test_model_uri_names_the_registered_alias_or_keeps_a_uri(tmp_path):
    assert model_uri("srv") == "models:/srv@champion"
    assert model_uri("srv", "challenger") == "models:/srv@challenger"
    assert model_uri(str(tmp_path)) == str(tmp_path)
    assert model_uri("runs:/abc/model") == "runs:/abc/model"
    with pytest.raises(clvlab.ClvlabError, match="no model folder 'models/nowhere'"):
        model_uri("models/nowhere")


def test_ping_health_and_version(server):
    for path in ("/ping", "/health"):
        assert requests.get(f"{server}{path}", timeout=REQUEST_TIMEOUT_S).status_code == 200
    version = requests.get(f"{server}/version", timeout=REQUEST_TIMEOUT_S)
    assert version.status_code == 200 and version.text == clvlab.__version__


def test_one_customer(server, trained, one):
    served, _ = trained
    body = _scores(_post(server, _payload(one, PARAMS)))
    expected = clvlab.score(served, one, as_of=AS_OF, horizon_days=HORIZON_DAYS)
    _assert_scores_equal(body["predictions"], expected)
    assert body["predictions"][0]["reason"] is None
    assert body["as_of"] == AS_OF and body["as_of_source"] == "params.as_of"
    assert body["horizon_days"] == HORIZON_DAYS


def test_explain_adds_the_reasons_and_must_be_a_boolean(server, trained, one):
    """params.explain: each target's reasons, as clvlab.score(..., explain=True)."""
    served, _ = trained
    body = _scores(_post(server, _payload(one, {**PARAMS, "explain": True})))
    expected = clvlab.score(served, one, as_of=AS_OF, horizon_days=HORIZON_DAYS, explain=True)
    row = body["predictions"][0]
    for column in ("reasons_purchases", "reasons_churn", "reasons_revenue"):
        assert row[column] == expected[column].iloc[0] and row[column]
    assert "reasons_churn" not in _scores(_post(server, _payload(one, PARAMS)))["predictions"][0]
    response = _post(server, _payload(one, {**PARAMS, "explain": "yes"}))
    assert '"explain" must be true or false, got "yes"' in _error(response)


def test_intervals_add_the_bounds_and_need_a_level(server, trained, one):
    """params.intervals: the score intervals, as clvlab.score(..., intervals=0.8)."""
    served, _ = trained
    body = _scores(_post(server, _payload(one, {**PARAMS, "intervals": 0.8})))
    expected = clvlab.score(served, one, as_of=AS_OF, horizon_days=HORIZON_DAYS, intervals=0.8)
    row = body["predictions"][0]
    assert row["clv_upper"] == pytest.approx(expected["clv_upper"].iloc[0], rel=1e-12)
    assert row["purchases_upper"] == int(expected["purchases_upper"].iloc[0])
    for level in (1.5, "0.9"):
        response = _post(server, _payload(one, {**PARAMS, "intervals": level}))
        assert response.status_code == 400 and "intervals" in _error(response)


def test_dataframe_records_and_the_models_horizon(server, trained, one):
    served, _ = trained
    records = [
        {"customer_id": c, "date": d.isoformat(), "amount": a}
        for c, d, a in one.itertuples(index=False)
    ]
    response = _post(server, {"dataframe_records": records, "params": {"as_of": AS_OF}})
    body = _scores(response)
    _assert_scores_equal(body["predictions"], clvlab.score(served, one, as_of=AS_OF))
    assert body["horizon_days"] == served.horizon_days


def test_several_customers(server, trained, transactions):
    served, _ = trained
    counts = transactions.groupby("customer_id").size()
    chosen = [
        *counts[counts == 1].index[:2],  # a single purchase: frequency 0
        *counts[counts.between(3, 10)].index[:5],
        counts.idxmax(),
    ]
    several = transactions[transactions["customer_id"].isin(chosen)]
    body = _scores(_post(server, _payload(several, PARAMS)))
    expected = clvlab.score(served, several, as_of=AS_OF, horizon_days=HORIZON_DAYS)
    assert len(expected) == len(chosen)
    _assert_scores_equal(body["predictions"], expected)


def test_a_customer_that_cannot_be_scored_is_strict_json_null(server, trained, one):
    """(d) A customer whose only purchase is after as_of keeps a row: null scores, a reason;
    the answer has no NaN (``_strict_json`` refuses it)."""
    served, _ = trained
    late = pd.DataFrame(
        {"customer_id": ["late"], "date": [pd.Timestamp("1998-07-15")], "amount": [10.0]}
    ).astype(one.dtypes.to_dict())
    both = pd.concat([one, late], ignore_index=True)
    response = _post(server, _payload(both, PARAMS))
    assert "NaN" not in response.text
    predictions = {row["customer_id"]: row for row in _scores(response)["predictions"]}
    assert predictions["late"]["reason"] == NO_HISTORY
    assert predictions["late"]["p_alive"] is None and predictions["late"]["clv"] is None
    expected = clvlab.score(served, both, as_of=AS_OF, horizon_days=HORIZON_DAYS)
    _assert_scores_equal(list(predictions.values()), expected)


def test_without_as_of_the_request_date_is_used_and_said(server, trained, one):
    """(f) No params.as_of: scored as of today, and the answer says so."""
    served, _ = trained
    before = pd.Timestamp.now().normalize()
    body = _scores(_post(server, _payload(one, params={"horizon_days": HORIZON_DAYS})))
    after = pd.Timestamp.now().normalize()
    assert body["as_of"] in {before.date().isoformat(), after.date().isoformat()}
    assert body["as_of_source"] == "request date (default; pass params.as_of)"
    expected = clvlab.score(served, one, as_of=body["as_of"], horizon_days=HORIZON_DAYS)
    _assert_scores_equal(body["predictions"], expected)
    # Not the last transaction date, which clvlab.score would default to.
    assert not np.allclose(
        [row["T"] for row in body["predictions"]],
        clvlab.score(served, one, horizon_days=HORIZON_DAYS)["T"],
    )


def test_huge_horizon_is_a_400_at_once(server):
    """(a) A horizon of 1e9 days is refused before any scoring, not computed for minutes."""
    payload = {
        "dataframe_split": {"columns": COLUMNS, "data": [["1", "1997-01-01", 29.33]]},
        "params": {"as_of": AS_OF, "horizon_days": 1e9},
    }
    start = time.monotonic()
    response = _post(server, payload)
    assert time.monotonic() - start < 2
    assert "horizon_days" in _error(response)
    assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"


def test_unknown_param_is_a_400_naming_the_known_ones(server, one):
    """(e) A misspelled param is not dropped silently."""
    response = _post(server, _payload(one, params={"as_of": AS_OF, "horizon": 90}))
    message = _error(response)
    assert "unknown params ['horizon']" in message
    assert "as_of" in message and "horizon_days" in message and "explain" in message
    assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"


def test_missing_date_column_is_a_400_naming_it(server, transactions):
    one = transactions[transactions["customer_id"] == "1"]
    payload = {
        "dataframe_split": {
            "columns": ["customer_id", "amount"],
            "data": one[["customer_id", "amount"]].values.tolist(),
        },
        "params": PARAMS,
    }
    message = _error(_post(server, payload))
    assert "missing inputs ['date']" in message


@pytest.mark.parametrize("bad_date", ["1998-13-45", "not a date"])
def test_bad_date_is_a_400_naming_column_and_value(server, bad_date):
    payload = {
        "dataframe_split": {
            "columns": COLUMNS,
            "data": [["1", "1997-01-01", 29.33], ["1", bad_date, 10.0]],
        },
        "params": PARAMS,
    }
    message = _error(_post(server, payload))
    assert "column 'date'" in message and bad_date in message


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"as_of": "1998-13-45"}, "as_of '1998-13-45' is not a date: give it as YYYY-MM-DD"),
        ({"as_of": AS_OF, "horizon_days": -5}, "horizon_days must be a positive number"),
        ({"as_of": AS_OF, "horizon_days": 0}, "horizon_days must be a positive number"),
        ({"as_of": AS_OF, "horizon_days": True}, "horizon_days must be a positive number"),
        ([AS_OF], '"params" must be an object'),
    ],
)
def test_bad_params_are_a_400_with_clvlabs_message(server, params, expected):
    payload = {
        "dataframe_split": {"columns": COLUMNS, "data": [["1", "1997-01-01", 29.33]]},
        "params": params,
    }
    response = _post(server, payload)
    assert expected in _error(response)
    assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ([], "no transactions (the table has no rows)"),
        ([[None, "1997-01-01", 29.33]], "no transactions with a customer id to score"),
    ],
)
def test_data_clvlab_rejects_is_a_400_with_its_message(server, data, expected):
    payload = {"dataframe_split": {"columns": COLUMNS, "data": data}, "params": PARAMS}
    assert expected in _error(_post(server, payload))


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"dataframe_split": ', "the request body is not JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"inputs": [1]}', "unknown fields ['inputs']"),
        (b'{"params": {}}', "0 table fields"),
        (b'{"dataframe_split": {"columns": ["customer_id"], "data": [1]}}', "list of rows"),
        (b'{"dataframe_split": {"columns": ["a"], "data": [[1, 2]]}}', "cannot be read"),
        (b'{"dataframe_records": [1]}', "list of objects"),
    ],
)
def test_a_body_that_is_not_a_request_is_a_400(server, body, expected):
    response = _post(server, body)
    assert expected in _error(response)
    assert response.json()["error_code"] == "BAD_REQUEST"


def _running(process: psutil.Process) -> bool:
    """Whether a process runs: neither gone nor a zombie waiting to be reaped."""
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_slow_request_is_cut_at_the_timeout_while_others_are_answered(
    server_process, trained, one, slow_body
):
    """(b) A request that takes longer than --timeout to score is answered 504 at the
    deadline and its worker replaced; a request sent meanwhile is answered by the other
    worker at once, and so are those sent afterwards."""
    served, _ = trained
    server, process = server_process
    workers = set(psutil.Process(process.pid).children())
    assert len(workers) == 2
    expected = clvlab.score(served, one, as_of=AS_OF, horizon_days=HORIZON_DAYS)
    slow: dict[str, object] = {}

    def send_slow() -> None:
        start = time.monotonic()
        slow["response"] = _post(server, slow_body)
        slow["seconds"], slow["done"] = time.monotonic() - start, time.monotonic()

    thread = threading.Thread(target=send_slow)
    thread.start()
    try:
        time.sleep(0.5)  # the slow request is being scored
        start = time.monotonic()
        quick = _post(server, _payload(one, PARAMS))
        quick_seconds, quick_done = time.monotonic() - start, time.monotonic()
    finally:
        thread.join(REQUEST_TIMEOUT_S)
    assert not thread.is_alive()
    _assert_scores_equal(_scores(quick)["predictions"], expected)
    assert quick_seconds < SERVER_TIMEOUT_S / 2
    assert quick_done < slow["done"]

    message = _error(slow["response"], status=504)
    assert f"limit of {SERVER_TIMEOUT_S} s" in message and "--timeout" in message
    assert SERVER_TIMEOUT_S - 0.5 < slow["seconds"] < SERVER_TIMEOUT_S + 3

    for _ in range(3):
        _assert_scores_equal(_scores(_post(server, _payload(one, PARAMS)))["predictions"], expected)
    # The late worker was killed (and is reaped by a thread of the server, a moment later on a
    # busy machine), and a new one takes its place.
    deadline = time.monotonic() + 10
    while sum(_running(worker) for worker in workers) > 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sum(_running(worker) for worker in workers) == 1
    # Until then the killed worker is a zombie child beside the survivor (two children, not
    # yet the two workers): wait for two running children and no zombie.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        children = psutil.Process(process.pid).children()
        if len(children) == 2 and all(_running(child) for child in children):
            break
        time.sleep(0.2)
    now = set(psutil.Process(process.pid).children())
    assert len(now) == 2 and len(now & workers) == 1


def test_server_still_answers_after_errors(server, trained, transactions):
    served, _ = trained
    two = transactions[transactions["customer_id"] == "2"].reset_index(drop=True)
    body = _scores(_post(server, _payload(two, PARAMS)))
    expected = clvlab.score(served, two, as_of=AS_OF, horizon_days=HORIZON_DAYS)
    _assert_scores_equal(body["predictions"], expected)


def test_sigterm_stops_the_server_and_its_workers(trained, one, slow_body):
    """(c) SIGTERM to the ``clvlab serve`` process alone (not its group), while a request is
    being scored, ends it (status 0) and every worker process within seconds. This server
    scores a request without as_of as of its last transaction (--as-of-default)."""
    served, workdir = trained
    port = servers.free_port()
    command = [*CLVLAB, "serve", "srv", "--port", str(port), "--workers", "2", "--timeout", "2"]
    with servers.started(
        [*command, "--as-of-default", "last-transaction"],
        url=f"http://127.0.0.1:{port}",
        health="/ping",
        cwd=workdir,
        env=_env(workdir),
    ) as (url, process):
        body = _scores(_post(url, _payload(one)))
        last = one["date"].max()
        assert body["as_of"] == last.date().isoformat()
        assert body["as_of_source"].startswith("last transaction date in the request")
        _assert_scores_equal(body["predictions"], clvlab.score(served, one, as_of=last))
        log = servers.log(url, workdir).splitlines()
        assert log[0] == f"Serving models:/srv@champion (version 1) on {url} (Ctrl-C stops)"

        workers = psutil.Process(process.pid).children(recursive=True)
        assert len(workers) == 2
        in_flight = threading.Thread(target=_post_ignoring_errors, args=(url, slow_body))
        in_flight.start()
        time.sleep(0.5)
        start = time.monotonic()
        os.kill(process.pid, signal.SIGTERM)
        try:
            assert process.wait(timeout=15) == 0
            _, alive = psutil.wait_procs(workers, timeout=5)
            assert not alive, alive
            # Nor any other process it started (the late worker's successor, say).
            deadline = time.monotonic() + 5
            while _group(process.pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert not _group(process.pid)
            assert time.monotonic() - start < 10
        finally:
            in_flight.join(REQUEST_TIMEOUT_S)


def _group(pgid: int) -> list[psutil.Process]:
    """The live processes of process group ``pgid``."""
    members = []
    for candidate in psutil.process_iter():
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if os.getpgid(candidate.pid) == pgid and candidate.status() != psutil.STATUS_ZOMBIE:
                members.append(candidate)
    return members


def _post_ignoring_errors(url: str, body: bytes) -> None:
    with contextlib.suppress(requests.RequestException):  # the server may close it as it stops
        _post(url, body)


def _serve_and_fail(cli, workdir: Path, *args: str) -> subprocess.CompletedProcess:
    done = cli(["serve", *args], workdir, _env(workdir))
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert done.stdout == ""  # nothing printed before the error ("Serving ..." comes later)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("clvlab serve: error: ")
    return done


def test_port_in_use_is_one_line_naming_port_and_process(trained, cli):
    """(g) Another process listening on the port: one line naming the port and its pid."""
    _, workdir = trained
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _serve_and_fail(cli, workdir, "srv", "--port", str(port))
    assert f"port {port} on 127.0.0.1 is in use by process {os.getpid()} (" in done.stderr
    assert "pick another with --port" in done.stderr


def test_unknown_alias_is_one_line_and_nothing_is_served(trained, cli):
    """(h) The model is looked up before anything is printed."""
    _, workdir = trained
    done = _serve_and_fail(
        cli, workdir, "srv", "--alias", "retired", "--port", str(servers.free_port())
    )
    assert "no version of registered model 'srv' has the alias 'retired'" in done.stderr


# Ids are answered in the type sent (issue 14, item 5).


def _rows(transactions: pd.DataFrame, customer_id: object) -> list[list]:
    """``dataframe_split`` rows of transactions under another (JSON) customer id."""
    return [[customer_id, d.isoformat(), a] for d, a in transactions[["date", "amount"]].values]


def test_numeric_ids_are_answered_as_numbers(server, trained, one):
    served, _ = trained
    big = 2**53 + 1  # not a float
    data = _rows(one, big) + _rows(one.head(1), 7) + [[None, "1997-01-01", 1.0]]
    split = {"dataframe_split": {"columns": COLUMNS, "data": data}, "params": PARAMS}
    records = {"dataframe_records": [dict(zip(COLUMNS, row, strict=True)) for row in data]}
    records["params"] = PARAMS
    as_text = {"dataframe_split": {"columns": COLUMNS, "data": _rows(one, str(big))}}
    as_text["params"] = PARAMS
    expected = clvlab.score(served, one, as_of=AS_OF, horizon_days=HORIZON_DAYS)
    for payload in (split, records):  # with a row without an id: pandas would read floats
        predictions = _scores(_post(server, payload))["predictions"]
        ids = [row["customer_id"] for row in predictions]
        assert ids == [7, big] and all(type(i) is int for i in ids)
        assert predictions[1]["p_alive"] == pytest.approx(expected["p_alive"].iloc[0], rel=1e-9)
    # String ids are answered as strings.
    predictions = _scores(_post(server, as_text))["predictions"]
    assert [row["customer_id"] for row in predictions] == [str(big)]


def test_the_pyfunc_model_takes_integer_ids(trained, one, monkeypatch):
    """The signature declares customer_id of any type: MLflow passes integer ids through,
    and the score table gives them back as integers."""
    import mlflow

    from clvlab.tracking.store import use_tracking_store

    served, workdir = trained
    monkeypatch.setenv("MLFLOW_TRACKING_URI", _store(workdir))
    use_tracking_store()
    pyfunc = mlflow.pyfunc.load_model("models:/srv@champion")
    inputs = {spec["name"]: spec["type"] for spec in pyfunc.metadata.get_input_schema().to_dict()}
    assert inputs["customer_id"] == "any"
    big = 2**53 + 1
    numbered = pd.concat([one.assign(customer_id=big), one.head(1).assign(customer_id=7)])
    predicted = pyfunc.predict(numbered, params=PARAMS)
    assert predicted["customer_id"].dtype == "int64"
    assert predicted["customer_id"].tolist() == [7, big]
    expected = clvlab.score(served, one, as_of=AS_OF, horizon_days=HORIZON_DAYS)
    assert predicted["clv"].iloc[1] == pytest.approx(expected["clv"].iloc[0], rel=1e-12)
    as_text = pyfunc.predict(one, params=PARAMS)
    assert as_text["customer_id"].tolist() == ["1"]
