"""`clvlab profiles serve` (the live profile service) answers events with the changed scores,
reads customers back, refuses what it should, and hands segment transitions to a webhook that
never holds it up; `clvlab profiles build/apply/export` write what they say.

The model is built by hand (BG/NBD and Gamma-Gamma of the CDNOW sample, nothing trained) and
saved as ``clv_model.json``. One server is started for the module over a store built from the
CDNOW sample to 1997-06-30; the tests of tokens and of start-up refusals run their own. Every
server's process group is always stopped.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest
import requests

import clvlab
import servers
from clvlab import ClvlabError, CLVModel, ProfileStore
from clvlab.cli import main
from clvlab.profiles.service import TOKEN_ENV, is_loopback, read_token
from clvlab.profiles.webhook import Webhook

CLVLAB = str(Path(sys.executable).with_name("clvlab"))
HISTORY_END = "1997-06-30"
TIMEOUT_S = 30
TOKEN = "s3cret-token-for-tests"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("profiles-service")


@pytest.fixture(scope="module")
def model_file(sample_models, workdir: Path) -> Path:
    """BG/NBD and Gamma-Gamma of the CDNOW sample, in weeks, saved as clv_model.json."""
    purchases, spend = sample_models
    path = workdir / "clv_model.json"
    CLVModel(purchases, spend, time_unit="W").save(path)
    return path


def _build(model_file: Path, path: Path, transactions=None) -> Path:
    ProfileStore.build(model_file, transactions, as_of=HISTORY_END, path=path).close()
    return path


def _env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != TOKEN_ENV}
    return {**env, **extra}


@contextlib.contextmanager
def _serving(workdir: Path, store: Path, *args: str, env: dict[str, str]) -> Iterator[str]:
    port = servers.free_port()
    command = [CLVLAB, "profiles", "serve", "--store", str(store), "--port", str(port), *args]
    with servers.running(
        command, url=f"http://127.0.0.1:{port}", health="/health", cwd=workdir, env=env
    ) as url:
        yield url


@pytest.fixture(scope="module")
def server(model_file: Path, workdir: Path, cdnow_sample: pd.DataFrame) -> Iterator[str]:
    """The module's server over the CDNOW sample to HISTORY_END: its base URL."""
    store = _build(model_file, workdir / "served.db", cdnow_sample)
    with _serving(workdir, store, env=_env()) as url:
        yield url


def _strict_json(response: requests.Response) -> dict:
    """The body parsed as strict JSON: NaN or Infinity fail the test."""

    def refuse(constant: str) -> None:
        raise AssertionError(f"the answer is not strict JSON: it has {constant}")

    return json.loads(response.text, parse_constant=refuse)


def _post(url: str, events: list[dict] | None = None, **body) -> requests.Response:
    payload = body if events is None else {"events": events, **body}
    return requests.post(f"{url}/events", json=payload, timeout=TIMEOUT_S)


def _purchase(event_id: str, customer: str, date: str, amount: object = 20.0) -> dict:
    return {"event_id": event_id, "customer_id": customer, "date": date, "amount": amount}


# --- the module's server ------------------------------------------------------------------


def test_posted_events_are_scored_and_read_back(server):
    events = [
        _purchase("new-1-a", "new-1", "1997-07-01"),
        _purchase("new-1-b", "new-1", "1997-07-15"),
    ]
    response = _post(server, events, as_of="1997-09-30")
    assert response.status_code == 200, response.text
    answer = _strict_json(response)
    assert (answer["applied"], answer["ignored"], answer["rejected"]) == (2, 0, [])
    assert answer["transitions"] == [] and answer["merged"] == {}
    [row] = answer["scores"]
    assert row["customer_id"] == "new-1" and row["frequency"] == 1
    assert 0 < row["p_alive"] <= 1 and row["clv"] > 0

    profile = _strict_json(
        requests.get(f"{server}/customers/new-1", params={"as_of": "1997-09-30"}, timeout=TIMEOUT_S)
    )
    assert profile["customer_id"] == "new-1" and profile["transactions"] == 2
    assert [day["date"] for day in profile["purchase_days"]] == ["1997-07-01", "1997-07-15"]
    assert profile["score"]["p_alive"] == pytest.approx(row["p_alive"], rel=1e-12)


def test_concurrent_requests_are_each_answered_with_their_own_events(server):
    """Requests that come while the store is busy are applied together: each still gets its
    own counts, rejections and customers (the service's grouping, see apply_each)."""
    answers: dict[int, requests.Response] = {}
    start = threading.Barrier(24)

    def client(n: int) -> None:
        events = [_purchase(f"conc-{n}", f"conc-{n}", "1997-08-01")]
        if n % 6 == 0:  # and a bad event beside it
            events.append(_purchase(f"conc-{n}-bad", f"conc-{n}", "1997-08-01", "lots"))
        start.wait()
        answers[n] = _post(server, events, as_of="1997-09-30")

    threads = [threading.Thread(target=client, args=(n,)) for n in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for n, response in sorted(answers.items()):
        answer = _strict_json(response)
        assert response.status_code == (400 if n % 6 == 0 else 200), response.text
        assert [row["customer_id"] for row in answer["scores"]] == [f"conc-{n}"]
        assert (answer["applied"], answer["ignored"]) == (1, 0)
        assert [r["event_id"] for r in answer["rejected"]] == (
            [f"conc-{n}-bad"] if n % 6 == 0 else []
        )
        assert answer["scores"][0]["frequency"] == 0


def test_a_customer_from_history_is_read_by_id(server):
    response = requests.get(f"{server}/customers/1", timeout=TIMEOUT_S)
    assert response.status_code == 200
    profile = _strict_json(response)
    assert profile["customer_id"] == "1" and profile["transactions"] == 2  # to HISTORY_END


def test_bad_events_are_a_400_naming_each_and_the_good_ones_are_applied(server):
    events = [
        _purchase("mixed-ok", "mixed-1", "1997-07-02"),
        {"event_id": "mixed-no-date", "customer_id": "mixed-2", "amount": 5.0},
        _purchase("mixed-bad-amount", "mixed-3", "1997-07-02", amount="lots"),
        _purchase("mixed-bad-date", "mixed-4", "not a date"),
    ]
    response = _post(server, events)
    assert response.status_code == 400
    answer = _strict_json(response)
    assert answer["applied"] == 1 and "3 of the 4 events were rejected" in answer["error"]
    assert [row["customer_id"] for row in answer["scores"]] == ["mixed-1"]
    reasons = {item["event_id"]: (item["position"], item["reason"]) for item in answer["rejected"]}
    assert reasons == {
        "mixed-no-date": (1, "no date"),
        "mixed-bad-amount": (2, "amount 'lots' is not a number"),
        "mixed-bad-date": (3, "date 'not a date' is not a date"),
    }
    assert requests.get(f"{server}/customers/mixed-1", timeout=TIMEOUT_S).status_code == 200
    assert requests.get(f"{server}/customers/mixed-3", timeout=TIMEOUT_S).status_code == 404


def test_an_event_posted_twice_is_ignored_the_second_time(server):
    event = _purchase("twice", "twice-1", "1997-07-03")
    assert _strict_json(_post(server, [event]))["applied"] == 1
    again = _strict_json(_post(server, [event, event]))
    assert (again["applied"], again["ignored"], again["scores"]) == (0, 2, [])
    profile = _strict_json(requests.get(f"{server}/customers/twice-1", timeout=TIMEOUT_S))
    assert profile["transactions"] == 1


def test_an_unknown_customer_is_a_404(server):
    response = requests.get(f"{server}/customers/nobody-at-all", timeout=TIMEOUT_S)
    assert response.status_code == 404
    assert "nobody-at-all" in response.json()["error"]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"not json", "the body is not JSON"),
        (b'[{"event_id": "x"}]', "not a batch of events"),
        (b'{"events": "x"}', "not a batch of events"),
        (b'{"events": []}', "no events"),
        (b'{"events": [1]}', "events number [0] (from 0) are not JSON objects"),
        (b'{"events": [{"event_id": "x"}], "when": 1}', "unknown keys ['when']"),
        (b'{"events": [{"customer_id": "x"}]}', "events need an 'event_id' column"),
        (b'{"events": [{"event_id": "x"}], "as_of": "soon"}', "as_of"),
        (b'{"events": [{"event_id": "x"}], "horizon_days": -1}', "horizon_days"),
    ],
)
def test_a_body_that_is_not_a_batch_is_a_400_and_the_server_keeps_serving(server, body, expected):
    response = requests.post(f"{server}/events", data=body, timeout=TIMEOUT_S)
    assert response.status_code == 400
    assert expected in response.json()["error"]
    assert requests.get(f"{server}/health", timeout=TIMEOUT_S).status_code == 200


def test_health_counts_customers_without_a_webhook(server, cdnow_sample):
    health = _strict_json(requests.get(f"{server}/health", timeout=TIMEOUT_S))
    assert health["status"] == "ok" and health["webhook"] is None
    history = cdnow_sample[cdnow_sample["date"] <= HISTORY_END]
    assert health["customers"] >= history["customer_id"].nunique()


# --- who may call --------------------------------------------------------------------------


def test_serving_beyond_loopback_without_a_token_is_refused(
    workdir, model_file, capsys, monkeypatch
):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    store = _build(model_file, workdir / "refused.db")
    command = ["profiles", "serve", "--store", str(store), "--host", "0.0.0.0"]
    assert main([*command, "--port", str(servers.free_port())]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("clvlab profiles serve: error: refusing to serve profiles on 0.0.0.0")
    assert TOKEN_ENV in line and "--token-file" in line


@pytest.fixture(scope="module")
def segmented_model_file(sample_models, cdnow_sample, workdir: Path) -> Path:
    """The model of ``model_file`` with segment rules fitted on its scores of the sample."""
    from clvlab.segments import fit_segment_rules

    model = CLVModel(*sample_models, time_unit="W")
    scores = clvlab.score(model, cdnow_sample, as_of="1997-09-30")
    model.segments = fit_segment_rules(scores, unit_days=7, horizon_days=model.horizon_days)
    path = workdir / "segmented_model.json"
    model.save(path)
    return path


def test_with_a_token_only_its_bearers_are_served_and_transitions_reach_the_webhook(
    workdir, segmented_model_file
):
    store = _build(segmented_model_file, workdir / "guarded.db")
    with (
        _Receiver(lambda n: 200) as receiver,
        _serving(workdir, store, "--webhook", receiver.url, env=_env(**{TOKEN_ENV: TOKEN})) as url,
    ):
        event = [_purchase("guarded-1", "g1", "1997-07-01")]
        assert _post(url, event).status_code == 401
        wrong = {"Authorization": "Bearer not-the-token"}
        response = requests.get(f"{url}/customers/g1", headers=wrong, timeout=TIMEOUT_S)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert _strict_json(requests.get(f"{url}/health", timeout=TIMEOUT_S)) == {"status": "ok"}

        right = {"Authorization": f"Bearer {TOKEN}"}
        response = requests.post(
            f"{url}/events", json={"events": event}, headers=right, timeout=TIMEOUT_S
        )
        assert response.status_code == 200 and response.json()["applied"] == 1
        transitions = response.json()["transitions"]
        assert {t["segment"] for t in transitions} == {"rfm_segment", "value_tier", "churn_tier"}
        assert all(t["customer_id"] == "g1" and t["from"] is None for t in transitions)
        response = requests.get(f"{url}/customers/g1", headers=right, timeout=TIMEOUT_S)
        assert response.status_code == 200

        _until(lambda: len(receiver.bodies) == len(transitions))
        assert receiver.bodies == transitions
        health = requests.get(f"{url}/health", headers=right, timeout=TIMEOUT_S).json()
        assert health["customers"] == 1
        counters = {"queued": 0, "delivered": 3, "retried": 0, "failed": 0, "dropped": 0}
        assert health["webhook"] == counters


def test_the_token_comes_from_a_file_or_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    assert read_token() is None
    monkeypatch.setenv(TOKEN_ENV, "from-env")
    assert read_token() == "from-env"
    (tmp_path / "token").write_text("from-file\n")
    assert read_token(tmp_path / "token") == "from-file"
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ClvlabError, match="is empty"):
        read_token(tmp_path / "empty")
    with pytest.raises(ClvlabError, match="cannot read the token file"):
        read_token(tmp_path / "missing")
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.com")


# --- the webhook ---------------------------------------------------------------------------


class _Receiver:
    """A webhook receiver on loopback, in a thread: records each body and when it came, and
    answers the status ``answer(number of the delivery, from 1)``."""

    def __init__(self, answer: Callable[[int], int]) -> None:
        self.bodies: list[dict] = []
        self.times: list[float] = []
        lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with lock:
                    receiver.bodies.append(body)
                    receiver.times.append(time.monotonic())
                    number = len(receiver.bodies)
                self.send_response(answer(number))
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_port}/transitions"

    def __enter__(self) -> _Receiver:
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def _until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


TRANSITION = {"customer_id": "7", "segment": "churn_tier", "from": "low", "to": "high", "at": "x"}


def test_a_failing_receiver_gets_retries_with_growing_waits():
    with _Receiver(lambda n: 500 if n <= 2 else 204) as receiver:
        webhook = Webhook(receiver.url, backoff=0.1)
        webhook.send([TRANSITION])
        _until(lambda: webhook.counters().delivered == 1)
        webhook.close()
    counters = webhook.counters()
    assert (counters.retried, counters.failed, counters.queued, counters.dropped) == (2, 0, 0, 0)
    assert receiver.bodies == [TRANSITION] * 3
    first, second = (b - a for a, b in zip(receiver.times, receiver.times[1:], strict=False))
    assert 0.1 <= first < second and second >= 0.2


def test_a_transition_is_given_up_after_the_last_attempt():
    with _Receiver(lambda n: 503) as receiver:
        webhook = Webhook(receiver.url, attempts=3, backoff=0.01)
        webhook.send([TRANSITION])
        _until(lambda: webhook.counters().failed == 1)
        webhook.close()
    assert len(receiver.bodies) == 3 and webhook.counters().retried == 2


def test_a_slow_receiver_never_holds_up_send_and_a_full_queue_drops():
    release = threading.Event()

    def slow(number: int) -> int:
        release.wait(10)
        return 200

    with _Receiver(slow) as receiver:
        webhook = Webhook(receiver.url, queue_size=3)
        webhook.send([TRANSITION])
        _until(lambda: len(receiver.bodies) == 1)  # the thread now waits for the receiver
        started = time.perf_counter()
        webhook.send([{**TRANSITION, "customer_id": str(n)} for n in range(10)])
        assert time.perf_counter() - started < 0.1
        counters = webhook.counters()
        assert (counters.queued, counters.dropped, counters.delivered) == (4, 7, 0)
        release.set()
        _until(lambda: webhook.counters().delivered == 4)
        webhook.close()
    assert [body["customer_id"] for body in receiver.bodies] == ["7", "0", "1", "2"]
    assert webhook.counters().queued == 0


def test_a_webhook_that_is_not_an_http_url_is_refused():
    with pytest.raises(ClvlabError, match="not an http"):
        Webhook("ftp://example.com/x")


# --- the CLI -------------------------------------------------------------------------------


def test_cli_build_apply_export(model_file, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert (
        main(
            [
                "profiles",
                "build",
                "--model",
                str(model_file),
                "--transactions",
                "lifetimes:CDNOW_sample",
                "--as-of",
                HISTORY_END,
            ]
        )
        == 0
    )
    built = capsys.readouterr().out
    with ProfileStore.open("profiles.db") as store:
        customers = store.customers()
    assert built.startswith(f"Built profiles.db: {customers:,} customers")

    pd.DataFrame(
        {
            "event_id": ["c1", "c2", "c3"],
            "customer_id": ["cli-1", "cli-2", "1"],
            "date": ["1997-07-01", "", "1997-07-04"],
            "amount": ["10.5", "3", "x"],
        }
    ).to_csv(tmp_path / "events.csv", index=False)
    assert main(["profiles", "apply", "events.csv"]) == 2
    out, err = capsys.readouterr()
    assert "Applied 1 events to profiles.db (0 ignored as seen before, 2 rejected)" in out
    [line] = err.splitlines()
    assert line.startswith("clvlab profiles apply: error: 2 events of events.csv were rejected")
    assert "event 'c2'" in line and "no date" in line and "event 'c3'" in line

    lines = [_purchase("c1", "cli-1", "1997-07-01"), _purchase("j1", "cli-3", "1997-07-05")]
    (tmp_path / "events.jsonl").write_text("\n".join(json.dumps(e) for e in lines) + "\n")
    assert main(["profiles", "apply", "events.jsonl"]) == 0
    assert "Applied 1 events to profiles.db (1 ignored as seen before, 0 rejected)" in (
        capsys.readouterr().out
    )

    assert main(["profiles", "export", "--output", "scores.parquet", "--as-of", "1997-09-30"]) == 0
    exported = pd.read_parquet("scores.parquet")
    assert len(exported) == customers + 2
    assert {"cli-1", "cli-3"} <= set(exported["customer_id"])
    with ProfileStore.open("profiles.db") as store:
        expected = store.scores(as_of="1997-09-30")
    pd.testing.assert_frame_equal(exported, expected, check_dtype=False)
    assert "Exported the scores of" in capsys.readouterr().out

    # A failed export leaves the earlier output as it was, and nothing beside it.
    before = Path("scores.parquet").read_bytes()
    assert main(["profiles", "export", "--output", "scores.parquet", "--as-of", "soon"]) == 2
    assert Path("scores.parquet").read_bytes() == before
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".")]


def test_cli_refuses_an_unknown_event_file_type(tmp_path, capsys):
    (tmp_path / "events.txt").write_text("x")
    assert main(["profiles", "apply", str(tmp_path / "events.txt")]) == 2
    assert "use .csv, .parquet or .jsonl" in capsys.readouterr().err
