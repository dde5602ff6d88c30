"""Profile stores in Redis: the same behaviour as in SQLite, against a real redis-server (one per
module, on loopback, see servers.redis_server), for one process and for several."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import redis
import requests
from hypothesis import given, settings

import servers
from clvlab import ClvlabError, CLVModel, DataError, ProfileStore
from clvlab.cli import main
from clvlab.profiles import EVENT_ID, redis_backend
from clvlab.profiles.backend import ProfileBackend, connect
from clvlab.profiles.history import DAY, ROW
from clvlab.profiles.redis_backend import RedisBackend
from clvlab.profiles.sqlite_backend import SQLiteBackend
from test_profiles import assert_same_scores, batch_scores, late, streams

CLVLAB = str(Path(sys.executable).with_name("clvlab"))
#: A new prefix for each example of a property test.
EXAMPLES = itertools.count()


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with servers.redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture
def url(redis_url: str, request: pytest.FixtureRequest) -> str:
    """The store's URL: a prefix of the test's own on the module's server."""
    return f"{redis_url}?prefix=test:{request.node.name}"


@pytest.fixture(scope="module")
def model(sample_models) -> CLVModel:
    """BG/NBD and Gamma-Gamma of the CDNOW sample, in weeks (as in test_profiles)."""
    purchases, spend = sample_models
    return CLVModel(purchases, spend, time_unit="W")


@pytest.fixture(scope="module")
def events(cdnow_sample) -> pd.DataFrame:
    """The CDNOW sample's transactions as events with ids in the order of the rows."""
    return cdnow_sample.assign(**{EVENT_ID: [f"e{i:06d}" for i in range(len(cdnow_sample))]})


def client_of(url: str) -> redis.Redis:
    return redis.Redis.from_url(url.partition("?")[0])


def contents(url: str) -> dict[bytes, Any]:
    """Every key of the store at ``url`` with its value (sets and hashes as Python's)."""
    prefix = url.partition("?prefix=")[2]
    client = client_of(url)
    read = {b"hash": client.hgetall, b"set": client.smembers, b"string": client.get}
    found = {key: read[client.type(key)](key) for key in client.scan_iter(f"{prefix}:*")}
    client.close()
    return found


# --- the same scores as batch scoring, as on SQLite ------------------------------------------


def test_replaying_cdnow_shuffled_and_repeated_equals_batch(model, events, url):
    store = ProfileStore.build(model, path=url)
    order = np.random.default_rng(7).permutation(len(events))
    for chunk in np.array_split(order, 8):
        changed = store.apply(events.iloc[chunk])
        assert set(changed["customer_id"]) == set(events.iloc[chunk]["customer_id"])
    again = store.apply(events.iloc[order[:500]])
    assert again.empty and again.attrs["ignored"] == 500 and again.attrs["applied"] == 0
    for as_of in ("1997-09-30", "1998-06-30"):
        assert_same_scores(store.scores(as_of=as_of), batch_scores(model, events, as_of))
    assert store.customers() == events["customer_id"].nunique()
    store.close()


def test_built_from_history_then_events_equals_batch(model, events, url):
    history = events[events["date"] <= "1997-06-30"]
    store = ProfileStore.build(model, history.drop(columns=EVENT_ID), as_of="1997-06-30", path=url)
    assert_same_scores(store.scores(as_of="1997-06-30"), batch_scores(model, history, "1997-06-30"))
    store.apply(events[events["date"] > "1997-06-30"])
    store.close()
    other = dataclasses.replace(model, name="other", annual_discount_rate=0.2)
    with ProfileStore.open(url, model=other) as reopened:  # rescored from the stored profiles
        assert_same_scores(
            reopened.scores(as_of="1998-06-30"), batch_scores(other, events, "1998-06-30")
        )


def test_links_late_events_and_segments_as_on_sqlite(model, events, url, tmp_path):
    """The same batches applied to a store in Redis and one in SQLite give the same answers:
    score rows, merges, transitions, profiles looked up by any id."""
    links = pd.DataFrame({EVENT_ID: ["l1", "l2", "l3"], "id_a": ["1", "3", "y"]})
    links["id_b"] = ["2", "2", "x"]
    small = events[events["customer_id"].isin(["1", "2", "3", "4", "5"])]
    batches = [
        small.iloc[::2],
        pd.concat([late("x", [(10.0, "1997-01-05")]), late("y", [(7.0, "1997-01-09")])]),
        links,
        small.iloc[1::2],
        late("y", [(3.0, "1997-01-01")]).assign(**{EVENT_ID: "y-early"}),  # y canonical now
        small.iloc[:5],  # seen before
    ]
    redis_store = ProfileStore.build(model, path=url)
    sqlite_store = ProfileStore.build(model, path=tmp_path / "p.db")
    for batch in batches:
        got, expected = redis_store.apply(batch), sqlite_store.apply(batch)
        pd.testing.assert_frame_equal(got, expected)
        assert got.attrs == expected.attrs
    for customer in ["1", "2", "3", "4", "x", "y", "nobody"]:
        assert redis_store.customer(customer) == sqlite_store.customer(customer)
    assert redis_store.customer("x")["ids"] == ["x", "y"]  # type: ignore[index]
    # The same batches applied together (as the service groups requests): the same answers.
    grouped = ProfileStore.build(model, path=f"{url}-grouped")
    together = grouped.apply_each(batches, as_of="1998-06-30")
    alone = ProfileStore.build(model, path=tmp_path / "q.db").apply_each(
        batches, as_of="1998-06-30"
    )
    assert together == alone
    assert_same_scores(grouped.scores("1998-06-30"), redis_store.scores("1998-06-30"))
    everything = pd.concat([small, *batches[1:2], batches[4]])
    expected = batch_scores(model, everything, "1998-06-30", links[["id_a", "id_b"]])
    assert_same_scores(redis_store.scores("1998-06-30"), expected)


@settings(max_examples=15, deadline=None, derandomize=True, database=None)
@given(stream=streams())
def test_any_stream_of_events_gives_what_sqlite_and_batch_scoring_give(
    model, redis_url, tmp_path_factory, stream
):
    """test_profiles' property on Redis: any stream (returns, same-day purchases, links,
    batches in any order with repeats) gives, batch by batch, the answers of a store in
    SQLite, and the scores of batch scoring."""
    transactions, links, batches, returns = stream
    policy_model = dataclasses.replace(model, cleaning={"returns": returns})
    store = ProfileStore.build(policy_model, path=f"{redis_url}?prefix=stream:{next(EXAMPLES)}")
    sqlite = ProfileStore.build(policy_model, path=tmp_path_factory.mktemp("s") / "p.db")
    for batch in batches:
        got, expected = store.apply(batch), sqlite.apply(batch)
        pd.testing.assert_frame_equal(got, expected)
        assert got.attrs == expected.attrs
    as_of = "2020-02-15"
    try:
        expected = sqlite.scores(as_of)
    except DataError as err:
        with pytest.raises(DataError, match=re.escape(str(err))):
            store.scores(as_of)
        return
    pd.testing.assert_frame_equal(store.scores(as_of), expected)
    with contextlib.suppress(DataError):  # when batch scoring refuses (nothing before as_of)
        batch = batch_scores(policy_model, transactions, as_of, links if len(links) else None)
        assert_same_scores(store.scores(as_of), batch)
    store.close()


# --- several processes on one store ---------------------------------------------------------


def test_two_stores_on_one_url_see_each_others_events(model, events, url):
    """Two serving processes' stores: an event applied through one is ignored by the other, a
    link applied through one moves the profiles the other scores."""
    first = ProfileStore.build(model, path=url)
    second = ProfileStore.open(url)
    stores = [first, second]
    chunks = np.array_split(np.random.default_rng(11).permutation(len(events)), 6)
    for i, chunk in enumerate(chunks):
        applied = stores[i % 2].apply(events.iloc[chunk])
        assert applied.attrs["applied"] == len(chunk)
        repeated = stores[(i + 1) % 2].apply(events.iloc[chunk])
        assert repeated.attrs["ignored"] == len(chunk) and repeated.empty
    links = pd.DataFrame({"id_a": ["1", "10"], "id_b": ["2", "11"]})
    assert second.link(links).attrs["merged"] == {"2": "1", "11": "10"}
    assert first.customer("2")["customer_id"] == "1"  # type: ignore[index]
    expected = batch_scores(model, events, "1998-06-30", links)
    for store in stores:
        assert_same_scores(store.scores("1998-06-30"), expected)
        assert store.customers() == len(expected)


def test_writers_applying_at_once_take_turns(model, events, url):
    """Stores in two threads (their own connections) applying overlapping streams at the same
    time: every event applied exactly once, the scores those of batch scoring."""
    ProfileStore.build(model, path=url).close()
    order = np.random.default_rng(5).permutation(len(events))
    streams = [order[: len(order) * 2 // 3], order[len(order) // 3 :]]
    applied = [0, 0]
    failures: list[BaseException] = []

    def run(which: int) -> None:
        try:
            with ProfileStore.open(url) as store:
                for chunk in np.array_split(streams[which], 10):
                    applied[which] += store.apply(events.iloc[chunk]).attrs["applied"]
        except BaseException as err:
            failures.append(err)

    threads = [threading.Thread(target=run, args=(which,)) for which in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures
    assert sum(applied) == len(events)
    with ProfileStore.open(url) as store:
        assert_same_scores(store.scores("1998-06-30"), batch_scores(model, events, "1998-06-30"))


def test_a_writer_waits_for_the_lock_and_says_who_holds_it(url, monkeypatch):
    holder = RedisBackend.connect(url, create=True)
    other = RedisBackend.connect(url, create=False)
    monkeypatch.setattr(redis_backend, "LOCK_WAIT_S", 0.3)
    with holder.transaction():
        holder.set_meta({"a": "1"})
        started = time.monotonic()
        with (
            pytest.raises(ClvlabError, match=r"another writer.*lock.*try again"),
            other.transaction(),
        ):
            pass
        assert time.monotonic() - started >= 0.3
    with other.transaction():  # released
        other.set_meta({"b": "2"})
    assert holder.meta() == {"a": "1", "b": "2"}


def test_two_services_on_one_store_from_the_command_line(model, url, tmp_path, capsys):
    """`clvlab profiles build --store URL`, two `clvlab profiles serve` processes on it: an
    event posted to one is ignored by the other and read back from it; export reads it."""
    model.save(tmp_path / "model.json")
    build = ["profiles", "build", "--model", str(tmp_path / "model.json"), "--store", url]
    assert main([*build, "--transactions", "lifetimes:CDNOW_sample", "--as-of", "1997-06-30"]) == 0
    assert capsys.readouterr().out.startswith(f"Built {url}: ")
    event = {"event_id": "s1", "customer_id": "web-1", "date": "1997-07-01", "amount": 12.0}
    ports = [servers.free_port(), servers.free_port()]
    serving = [
        servers.running(
            [CLVLAB, "profiles", "serve", "--store", url, "--port", str(port)],
            url=f"http://127.0.0.1:{port}",
            health="/health",
            cwd=tmp_path,
            env=dict(os.environ),
        )
        for port in ports
    ]
    with contextlib.ExitStack() as stack, ThreadPoolExecutor(2) as starting:
        a, b = starting.map(stack.enter_context, serving)  # both start at once
        answer = requests.post(f"{a}/events", json={"events": [event]}, timeout=30).json()
        assert answer["applied"] == 1 and answer["scores"][0]["customer_id"] == "web-1"
        again = requests.post(f"{b}/events", json={"events": [event]}, timeout=30).json()
        assert again["applied"] == 0 and again["ignored"] == 1
        read = requests.get(f"{b}/customers/web-1", timeout=30).json()
        assert read["transactions"] == 1 and read["score"] == answer["scores"][0]
    output = tmp_path / "scores.parquet"
    assert main(["profiles", "export", "--store", url, "--output", str(output)]) == 0
    with ProfileStore.open(url) as store:
        pd.testing.assert_frame_equal(pd.read_parquet(output), store.scores(), check_dtype=False)


# --- transactions -----------------------------------------------------------------------------


def test_a_batch_that_fails_writes_nothing_and_releases_the_lock(model, events, url, monkeypatch):
    store = ProfileStore.build(model, events.iloc[:1000].drop(columns=EVENT_ID), path=url)
    before = contents(url)

    def fail(*args: object) -> None:
        raise RuntimeError("the scores could not be computed")

    # It fails after the batch's events, profiles and links are written (in the transaction).
    monkeypatch.setattr(store, "_transitions", fail)
    batch = pd.concat(
        [events.iloc[1000:1500], events.iloc[:3].assign(**{EVENT_ID: ["r1", "r2", "r3"]})]
    )
    with pytest.raises(RuntimeError, match="could not be computed"):
        store.apply(batch)
    with pytest.raises(RuntimeError, match="could not be computed"):
        store.link(pd.DataFrame({"id_a": ["1"], "id_b": ["2"]}))
    assert contents(url) == before  # the lock too is gone
    monkeypatch.undo()
    assert store.apply(batch).attrs["applied"] == len(batch)


OPS_ROWS = np.array([(1, 2.5, 0, -1, -1, 0), (2, 3.0, 1, -1, -1, 0)], dtype=ROW).tobytes()
OPS_DAYS = np.array([(0, 5.5, -1)], dtype=DAY).tobytes()


def reads(backend: ProfileBackend) -> list[Any]:
    return [
        backend.meta(),
        backend.meta_value("last_ns"),
        sorted(backend.profiles(["a", "b", "c", "z", "a"])),
        sorted(backend.purchase_days(None)),
        sorted(backend.purchase_days(["b", "z", "a"])),
        backend.count(),
        backend.aliases(["b", "c", "d"]),
        backend.members(["a"]),
        backend.members(["b", "z"]),
    ]


def operations(backend: ProfileBackend) -> list[Any]:
    """Writes and reads in transactions; what every read answered."""
    seen: list[Any] = []
    with backend.transaction():
        backend.set_meta({"format": "f", "last_ns": "5"})
        backend.set_meta({"last_ns": "7"})
        seen.append(sorted(backend.new_event_ids(["e1", "e2", "e1"])))
        seen.append(sorted(backend.new_event_ids(["e2", "e3"])))
        backend.put_profiles(
            [("a", None, OPS_ROWS, OPS_DAYS, None), ("b", '["b", "c"]', OPS_ROWS, b"", '{"s": 1}')]
        )
        backend.put_aliases([("b", "b", 1), ("c", "b", None)])
        seen.append(reads(backend))
    seen.append(reads(backend))
    with backend.transaction():
        backend.put_aliases([("c", "a", 3), ("a", "a", 2)])  # c moves from b to a
        backend.put_segments([("a", '{"s": 2}'), ("z", '{"s": 3}')])  # z has no profile
        backend.delete_profiles(["b"])
        backend.put_segments([("b", "{}")])  # deleted in this transaction
        backend.put_profiles([("c", None, OPS_ROWS[: ROW.itemsize], OPS_DAYS, None)])
        seen.append(sorted(backend.new_event_ids(["e3", "e4"])))
        seen.append(reads(backend))
    seen.append(reads(backend))
    with pytest.raises(KeyError), backend.transaction():
        backend.set_meta({"last_ns": "9"})
        backend.new_event_ids(["e9"])
        backend.delete_profiles(["a"])
        backend.put_profiles([("q", None, OPS_ROWS, OPS_DAYS, None)])
        backend.put_aliases([("q", "a", 1)])
        seen.append(reads(backend))
        raise KeyError("no")
    seen.append(reads(backend))
    with backend.transaction():
        seen.append(sorted(backend.new_event_ids(["e9", "e1"])))
    return seen


def test_the_backend_answers_as_sqlites_inside_and_outside_transactions(url, tmp_path):
    sqlite = SQLiteBackend.connect(tmp_path / "p.db", create=True)
    backend = RedisBackend.connect(url, create=True)
    assert operations(backend) == operations(sqlite)


def test_other_connections_see_a_transaction_when_it_commits(url):
    writer = RedisBackend.connect(url, create=True)
    reader = RedisBackend.connect(url, create=False)
    with writer.transaction():
        writer.put_profiles([("a", None, OPS_ROWS, OPS_DAYS, None)])
        writer.set_meta({"last_ns": "1"})
        assert writer.count() == 1
        assert reader.count() == 0 and reader.profiles(["a"]) == [] and reader.meta() == {}
    assert reader.profiles(["a"]) == [("a", None, OPS_ROWS, OPS_DAYS, None)]
    assert list(reader.purchase_days(None)) == [("a", 2, OPS_DAYS)]


def test_a_long_transaction_keeps_its_lock_and_one_that_lost_it_writes_nothing(url, monkeypatch):
    monkeypatch.setattr(redis_backend, "LOCK_TTL_S", 0.3)
    backend = RedisBackend.connect(url, create=True)
    with backend.transaction():  # renewed while it runs three times the lock's life
        backend.set_meta({"a": "1"})
        time.sleep(0.9)
    assert backend.meta() == {"a": "1"}
    # A writer that could not renew its lock (paused, say) for longer than its life:
    monkeypatch.setattr(RedisBackend, "_renew_until", lambda *args: None)
    other = RedisBackend.connect(url, create=False)
    with (
        pytest.raises(ClvlabError, match=r"lost the store's lock.*nothing.*written"),
        backend.transaction(),
    ):
        backend.set_meta({"a": "2"})
        time.sleep(0.4)
        with other.transaction():  # the lock expired: another writer goes ahead
            other.set_meta({"b": "3"})
    assert backend.meta() == {"a": "1", "b": "3"}


def test_a_read_that_a_commit_comes_in_the_middle_of_is_read_again(url, monkeypatch):
    """Reading everyone's purchase days takes several round trips: one that a commit came in
    between (here a profile moved from a to b) is read again, never half and half."""
    writer = RedisBackend.connect(url, create=True)
    reader = RedisBackend.connect(url, create=False)
    writer.put_profiles([("a", None, OPS_ROWS, OPS_DAYS, None)])
    read_all = reader._all_days
    commits = []

    def read_then_commit() -> list[tuple[str, int, bytes]]:
        found = read_all()
        if not commits:
            with writer.transaction():
                writer.delete_profiles(["a"])
                writer.put_profiles([("b", None, OPS_ROWS, OPS_DAYS, None)])
            commits.append(found)
        return found

    monkeypatch.setattr(reader, "_all_days", read_then_commit)
    assert list(reader.purchase_days(None)) == [("b", 2, OPS_DAYS)]
    assert commits == [[("a", 2, OPS_DAYS)]]


# --- creating, opening, discarding ------------------------------------------------------------


def test_build_refuses_a_used_prefix_and_open_an_empty_one(model, events, url):
    with pytest.raises(DataError, match=r"no profile store at .*ProfileStore\.build"):
        ProfileStore.open(url)
    ProfileStore.build(model, path=url).close()
    with pytest.raises(DataError, match=r"already holds a profile store.*\?prefix=NAME"):
        ProfileStore.build(model, path=url)
    with ProfileStore.open(url) as store:
        assert store.customers() == 0


def test_a_failed_build_leaves_no_key(model, events, url):
    neighbour = f"{url}:members:a"  # a prefix that this store's keys could be mistaken for
    ProfileStore.build(model, events.drop(columns=EVENT_ID), path=neighbour).close()
    kept = contents(neighbour)
    links = pd.DataFrame({"id_a": ["1", "10"], "id_b": ["2", "11"]})
    broken = events.drop(columns=[EVENT_ID, "amount"])  # the model reads an amount column
    with pytest.raises(DataError, match="amount"):
        ProfileStore.build(model, broken, path=url, identity_links=links)
    assert contents(url) == kept  # (the neighbour's keys start with this store's prefix)
    store = ProfileStore.build(model, events.drop(columns=EVENT_ID), path=url, identity_links=links)
    members = [f"{url.partition('?prefix=')[2]}:members:{c}".encode() for c in ("1", "10")]
    assert set(members) < set(contents(url))
    store._backend.discard()
    assert contents(url) == kept and contents(neighbour) == kept


def test_urls_that_cannot_be_used_are_refused_with_the_fix(redis_url, monkeypatch):
    port = servers.free_port()
    with pytest.raises(DataError, match=r"cannot reach Redis at redis://:\*\*\*@127.*start"):
        connect(f"redis://:secret@127.0.0.1:{port}/0", create=True)
    with pytest.raises(DataError, match=r"database number.*\?prefix=NAME"):
        connect(f"{redis_url}/shop", create=True)
    with pytest.raises(DataError, match="prefix is empty"):
        connect(f"{redis_url}?prefix=", create=True)
    monkeypatch.setitem(sys.modules, "redis", None)  # as if the client were not installed
    monkeypatch.delitem(sys.modules, "clvlab.profiles.redis_backend")
    with pytest.raises(DataError, match=r"pip install 'clvlab\[redis\]'"):
        connect(redis_url, create=False)


# --- durability: a writer killed while applying a stream --------------------------------------

APPLY_STREAM = """
import sys
import pandas as pd
from clvlab import CLVModel, ProfileStore
from clvlab.profiles import redis_backend
redis_backend.LOCK_TTL_S = 1.0  # the lock of the killed writer expires soon: the test waits less
events = pd.read_parquet(sys.argv[2])
store = ProfileStore.build(CLVModel.load(sys.argv[1]), path=sys.argv[3])
for start in range(0, len(events), 25):
    store.apply(events.iloc[start : start + 25])
    print(start + 25, flush=True)  # acknowledged: every event up to here is applied
"""


def test_a_writer_killed_while_applying_loses_no_acknowledged_event(
    model, events, url, tmp_path: Path
):
    """SIGKILL in the middle of a stream of batches (a real child process), once the next
    batch's transaction holds the lock: the lock expires, every acknowledged event is there,
    none twice; replaying the stream applies only what was lost; scores equal batch."""
    model.save(tmp_path / "model.json")
    stream = events.iloc[np.random.default_rng(3).permutation(len(events))]
    stream.to_parquet(tmp_path / "events.parquet")
    command = [sys.executable, "-c", APPLY_STREAM, tmp_path / "model.json"]
    child = subprocess.Popen(
        [*command, tmp_path / "events.parquet", url], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    acknowledged = 0
    while acknowledged < 1000:  # a good part of the stream, not all of it
        acknowledged = int(child.stdout.readline())
    client, deadline = client_of(url), time.monotonic() + 10
    while not client.exists(f"{url.partition('?prefix=')[2]}:lock") and time.monotonic() < deadline:
        time.sleep(0.0005)  # until the next batch's transaction has begun
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL
    with ProfileStore.open(url) as store:
        seen = store.apply(stream.iloc[:acknowledged])  # waits for the lock to expire
        assert seen.attrs["ignored"] == acknowledged and seen.attrs["applied"] == 0
        replayed = store.apply(stream)
        assert replayed.attrs["ignored"] + replayed.attrs["applied"] == len(stream)
        assert replayed.attrs["applied"] <= len(stream) - acknowledged
        assert_same_scores(store.scores("1998-06-30"), batch_scores(model, events, "1998-06-30"))
