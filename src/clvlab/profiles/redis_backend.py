"""The shared profile store backend: Redis, for several serving processes or machines.

The location is a Redis URL, ``redis://[:PASSWORD@]HOST:PORT/DB`` (``rediss://`` with TLS,
``unix:///PATH?db=DB`` over a socket), optionally with ``?prefix=NAME``: every key of the store
starts with the prefix (:data:`DEFAULT_PREFIX` unless the URL names one), so that one Redis
database can hold several stores. Under prefix ``P`` (a single server, not Redis Cluster):

- ``P:commits`` (string): 0 when the store was created, one more after each transaction; its
  presence is what makes ``P`` a store. Readers outside a transaction compare it before and
  after a read that takes several round trips, and read again if a commit came in between.
- ``P:lock`` (string): the writers' lock, a random token that expires (see below).
- ``P:meta`` (hash): the metadata, key -> value.
- ``P:seen`` (set): the event ids seen.
- ``P:aliases`` (hash): linked id -> canonical id, NUL, first transaction (ns; empty if none).
- ``P:members:<canonical id>`` (set): the linked ids of that canonical id.
- ``P:rows``, ``P:days`` (hashes): customer -> packed transactions, packed purchase days
  (a customer in ``P:rows`` has a profile); ``P:ids`` (hash): customer -> its ids (JSON), for
  customers with linked ids; ``P:segments`` (hash): customer -> segments of its last scores
  (JSON). Purchase days are read by ``HSCAN`` of ``P:days`` alone, the number of
  transactions by ``HSTRLEN`` of ``P:rows``: scoring everyone never transfers the
  transactions.

Transactions. A transaction first takes the lock (``SET P:lock TOKEN NX PX``; a writer
waits up to :data:`LOCK_WAIT_S` for it), so writers of every process and machine take turns.
A thread renews the lock while the transaction runs; a holder that dies lets it expire after
:data:`LOCK_TTL_S`. Writes are kept in memory, and reads made inside the transaction see them;
at the end they are sent as one ``MULTI``/``EXEC`` block, under ``WATCH`` of the lock, so they
land together, and only if this transaction still holds the lock (otherwise none lands, and
the transaction raises). A transaction that raises writes nothing. The lock is released with
a compare-and-delete script, so a holder never releases another's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis

from clvlab.errors import ClvlabError, DataError
from clvlab.profiles.backend import AliasRecord, Record, redacted_url
from clvlab.profiles.history import ROW

#: The keys' prefix when the URL has no ``?prefix=``.
DEFAULT_PREFIX = "clvlab:profiles"
#: How long the lock outlives a holder that stopped renewing it (a process killed, say).
LOCK_TTL_S = 10.0
#: How long a writer waits for the lock before giving up.
LOCK_WAIT_S = 60.0
#: Fields, members or commands per round trip.
_CHUNK = 1000
#: Reads outside a transaction retried while commits keep coming in between, before the
#: read takes the lock.
_READ_TRIES = 5
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0
"""
_T = TypeVar("_T")


@dataclasses.dataclass
class _Pending:
    """The writes of the open transaction, which its reads see before Redis has them."""

    token: bytes
    meta: dict[str, str] = dataclasses.field(default_factory=dict)
    seen: set[str] = dataclasses.field(default_factory=set)
    aliases: dict[str, tuple[str, int | None]] = dataclasses.field(default_factory=dict)
    #: canonical id -> the ids of ``aliases`` linked to it.
    members: dict[str, set[str]] = dataclasses.field(default_factory=dict)
    #: customer -> its new profile, or None when deleted.
    profiles: dict[str, Record | None] = dataclasses.field(default_factory=dict)
    #: customer -> segments JSON, for stored profiles not in ``profiles``.
    segments: dict[str, str] = dataclasses.field(default_factory=dict)

    def empty(self) -> bool:
        return not (self.meta or self.seen or self.aliases or self.profiles or self.segments)


class RedisBackend:
    """A profile store in Redis (see :class:`clvlab.profiles.backend.ProfileBackend` and this
    module's documentation for the keys and the transactions)."""

    def __init__(self, client: redis.Redis, location: str, prefix: str) -> None:
        self._client = client
        #: The URL, its password (if any) masked.
        self.location = location
        self.prefix = prefix
        self._commits = f"{prefix}:commits"
        self._lock = f"{prefix}:lock"
        self._meta = f"{prefix}:meta"
        self._seen = f"{prefix}:seen"
        self._aliases = f"{prefix}:aliases"
        self._rows = f"{prefix}:rows"
        self._days = f"{prefix}:days"
        self._ids = f"{prefix}:ids"
        self._segments = f"{prefix}:segments"
        self._release_script = client.register_script(_RELEASE)
        self._renew_script = client.register_script(_RENEW)
        self._pending: _Pending | None = None

    @classmethod
    def connect(cls, url: str, *, create: bool) -> RedisBackend:
        """The store at ``url``: new (its prefix must hold none) or existing (it must)."""
        shown = redacted_url(url)
        client_url, prefix = _split_prefix(url, shown)
        try:
            client = redis.Redis.from_url(client_url, socket_connect_timeout=10)
            client.ping()
        except (ValueError, TypeError) as err:
            raise DataError(
                f"{shown} is not a Redis URL clvlab can use ({err}); the form is "
                "redis://[:PASSWORD@]HOST:PORT/DB?prefix=NAME"
            ) from None
        except redis.RedisError as err:
            raise DataError(
                f"cannot reach Redis at {shown} ({err}): start redis-server there, or give the "
                "URL of a running one (redis://HOST:PORT/DB?prefix=NAME)"
            ) from None
        backend = cls(client, shown, prefix)
        if create and not client.set(backend._commits, 0, nx=True):
            client.close()
            raise DataError(
                f"{shown} already holds a profile store (its keys start with {prefix!r}); give "
                f"another prefix (?prefix=NAME), or ProfileStore.open({shown!r}) to use it"
            )
        if not create and not client.exists(backend._commits):
            client.close()
            raise DataError(
                f"no profile store at {shown} (no key {backend._commits!r}); create one with "
                f"ProfileStore.build(model, path={shown!r})"
            )
        return backend

    # --- transactions -------------------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        if self._pending is not None:
            raise RuntimeError(f"{self.location}: a transaction is open already")
        token = self._acquire()
        stop = threading.Event()
        renewal = threading.Thread(
            target=self._renew_until, args=(token, stop), name="clvlab-redis-lock", daemon=True
        )
        renewal.start()
        self._pending = pending = _Pending(token)
        try:
            yield
            stop.set()
            renewal.join()
            self._commit(pending)
        finally:
            stop.set()
            renewal.join()
            self._pending = None
            with contextlib.suppress(redis.RedisError):  # else it expires by itself
                self._release_script(keys=[self._lock], args=[token])

    def _acquire(self) -> bytes:
        token = secrets.token_hex(16).encode()
        deadline = time.monotonic() + LOCK_WAIT_S
        delay = 0.002
        while not self._client.set(self._lock, token, nx=True, px=_ms(LOCK_TTL_S)):
            if time.monotonic() > deadline:
                raise ClvlabError(
                    f"{self.location}: another writer has held the store's lock "
                    f"({self._lock!r}) for over {LOCK_WAIT_S:g} s; if no process is applying "
                    f"events to this store, the lock expires within {LOCK_TTL_S:g} s of its "
                    "holder stopping: try again then"
                )
            time.sleep(delay)
            delay = min(2 * delay, 0.05)
        return token

    def _renew(self, token: bytes) -> bool:
        return bool(self._renew_script(keys=[self._lock], args=[token, _ms(LOCK_TTL_S)]))

    def _renew_until(self, token: bytes, stop: threading.Event) -> None:
        """Keep the lock from expiring until ``stop`` (or until it is lost)."""
        while not stop.wait(LOCK_TTL_S / 3):
            try:
                if not self._renew(token):
                    return  # lost: the commit will say so
            except redis.RedisError:
                continue  # Redis unreachable for now: the commit checks the lock anyway

    def _lost(self) -> ClvlabError:
        return ClvlabError(
            f"{self.location}: this transaction lost the store's lock ({self._lock!r}): it was "
            f"not renewed for {LOCK_TTL_S:g} s (the process paused, or Redis was unreachable) "
            "and another writer may have taken it; nothing of the transaction was written: "
            "apply the batch again"
        )

    def _commit(self, pending: _Pending) -> None:
        """Send the writes of ``pending`` as one MULTI/EXEC, if the lock is still ours."""
        if pending.empty():
            return
        if not self._renew(pending.token):
            raise self._lost()
        with self._client.pipeline(transaction=True) as pipe:
            # Any change of the lock from here on (another holder) makes EXEC write nothing.
            pipe.watch(self._lock)
            if pipe.get(self._lock) != pending.token:
                raise self._lost()
            linked = list(pending.aliases)
            before = [
                _customer(value)
                for chunk in _chunks(linked)
                for value in pipe.hmget(self._aliases, chunk)
            ]
            pipe.multi()
            if pending.meta:
                pipe.hset(self._meta, mapping={k: v for k, v in pending.meta.items()})
            for events in _chunks(pending.seen):
                pipe.sadd(self._seen, *events)
            for chunk in _chunks(linked):
                pipe.hset(
                    self._aliases,
                    mapping={alias: _alias_value(*pending.aliases[alias]) for alias in chunk},
                )
            leaving: dict[str, list[str]] = {}
            for alias, old in zip(linked, before, strict=True):
                if old is not None and old != pending.aliases[alias][0]:
                    leaving.setdefault(old, []).append(alias)
            for customer, gone in leaving.items():
                pipe.srem(self._members_key(customer), *gone)
            for customer, joined in pending.members.items():
                if joined:
                    pipe.sadd(self._members_key(customer), *joined)
            self._queue_profiles(pipe, pending)
            pipe.incr(self._commits)
            try:
                pipe.execute()
            except redis.WatchError:
                raise self._lost() from None

    def _queue_profiles(self, pipe: redis.client.Pipeline, pending: _Pending) -> None:
        put: dict[str, dict[str, bytes | str]] = {
            key: {} for key in (self._rows, self._days, self._ids, self._segments)
        }
        drop: dict[str, list[str]] = {key: [] for key in put}
        for customer, record in pending.profiles.items():
            if record is None:
                for key in drop:
                    drop[key].append(customer)
                continue
            _, ids, rows, days, segments = record
            put[self._rows][customer] = rows
            put[self._days][customer] = days
            for key, text in ((self._ids, ids), (self._segments, segments)):
                if text is None:
                    drop[key].append(customer)
                else:
                    put[key][customer] = text
        put[self._segments].update(pending.segments)
        for key, fields in drop.items():
            for chunk in _chunks(fields):
                pipe.hdel(key, *chunk)
        for key, mapping in put.items():
            for chunk in _chunks(mapping):
                pipe.hset(key, mapping={customer: mapping[customer] for customer in chunk})

    @contextlib.contextmanager
    def _writes(self) -> Iterator[_Pending]:
        """The open transaction's writes; a write outside a transaction is one by itself."""
        if self._pending is not None:
            yield self._pending
            return
        with self.transaction():
            assert self._pending is not None
            yield self._pending

    def _read(self, read: Callable[[], _T]) -> _T:
        """``read()`` as of one commit: under the lock in a transaction; outside one, read
        again while commits come in between (several round trips are not atomic)."""
        if self._pending is not None:
            return read()
        for _ in range(_READ_TRIES):
            before = self._client.get(self._commits)
            result = read()
            if self._client.get(self._commits) == before:
                return result
        with self.transaction():
            return read()

    # --- metadata and event ids ---------------------------------------------------------------

    def meta(self) -> dict[str, str]:
        try:
            stored = self._client.hgetall(self._meta)
        except redis.ResponseError as err:
            raise DataError(f"{self.location} is not a profile store ({err})") from None
        items = {_text(key): _text(value) for key, value in stored.items()}
        if self._pending is not None:
            items.update(self._pending.meta)
        return items

    def meta_value(self, key: str) -> str | None:
        if self._pending is not None and key in self._pending.meta:
            return self._pending.meta[key]
        value = self._client.hget(self._meta, key)
        return None if value is None else _text(value)

    def set_meta(self, items: dict[str, str]) -> None:
        with self._writes() as pending:
            pending.meta.update(items)

    def new_event_ids(self, ids: list[str]) -> set[str]:
        with self._writes() as pending:
            fresh: set[str] = set()
            for chunk in _chunks(event for event in ids if event not in pending.seen):
                pipe = self._client.pipeline(transaction=False)
                for event in chunk:
                    pipe.sismember(self._seen, event)
                fresh.update(e for e, seen in zip(chunk, pipe.execute(), strict=True) if not seen)
            pending.seen |= fresh
            return fresh

    # --- linked ids ---------------------------------------------------------------------------

    def aliases(self, ids: Iterable[str]) -> dict[str, tuple[str, int | None]]:
        pending = self._pending
        found: dict[str, tuple[str, int | None]] = {}
        stored: list[str] = []
        for alias in dict.fromkeys(ids):
            if pending is not None and alias in pending.aliases:
                found[alias] = pending.aliases[alias]
            else:
                stored.append(alias)

        def read() -> dict[str, tuple[str, int | None]]:
            entries = {}
            for chunk in _chunks(stored):
                for alias, value in zip(
                    chunk, self._client.hmget(self._aliases, chunk), strict=True
                ):
                    if value is not None:
                        customer, _, first = _bytes(value).rpartition(b"\x00")
                        entries[alias] = (customer.decode(), int(first) if first else None)
            return entries

        found.update(self._read(read))
        return found

    def members(self, customers: Iterable[str]) -> set[str]:
        wanted = list(dict.fromkeys(customers))

        def read() -> set[str]:
            found: set[str] = set()
            for chunk in _chunks(wanted):
                pipe = self._client.pipeline(transaction=True)
                for customer in chunk:
                    pipe.smembers(self._members_key(customer))
                for aliases in pipe.execute():
                    found.update(_text(alias) for alias in aliases)
            return found

        found = self._read(read)
        pending = self._pending
        if pending is None:
            return found
        keep = set(wanted)
        # A linked id the transaction moved to another canonical id is no longer a member.
        found = {a for a in found if a not in pending.aliases or pending.aliases[a][0] in keep}
        for customer in wanted:
            found |= pending.members.get(customer, set())
        return found

    def put_aliases(self, records: list[AliasRecord]) -> None:
        with self._writes() as pending:
            for alias, customer, first in records:
                old = pending.aliases.get(alias)
                if old is not None:
                    pending.members.get(old[0], set()).discard(alias)
                pending.aliases[alias] = (customer, None if first is None else int(first))
                pending.members.setdefault(customer, set()).add(alias)

    def _members_key(self, customer: str) -> str:
        return f"{self.prefix}:members:{customer}"

    # --- profiles -----------------------------------------------------------------------------

    def profiles(self, customers: Iterable[str]) -> list[Record]:
        pending = self._pending
        wanted = list(dict.fromkeys(customers))
        if pending is None:
            return self._read(lambda: self._stored_profiles(wanted))
        records = [
            (*record[:4], pending.segments.get(record[0], record[4]))
            for record in self._stored_profiles([c for c in wanted if c not in pending.profiles])
        ]
        records.extend(
            record for customer in wanted if (record := pending.profiles.get(customer)) is not None
        )
        return records

    def _stored_profiles(self, customers: list[str]) -> list[Record]:
        records: list[Record] = []
        for chunk in _chunks(customers):
            pipe = self._client.pipeline(transaction=True)
            for key in (self._rows, self._days, self._ids, self._segments):
                pipe.hmget(key, chunk)
            columns = pipe.execute()
            for customer, rows, days, ids, segments in zip(chunk, *columns, strict=True):
                if rows is not None:
                    records.append(
                        (customer, _maybe_text(ids), rows, days or b"", _maybe_text(segments))
                    )
        return records

    def put_profiles(self, records: Iterable[Record]) -> None:
        with self._writes() as pending:
            for record in records:
                pending.profiles[record[0]] = record
                pending.segments.pop(record[0], None)

    def delete_profiles(self, customers: Iterable[str]) -> None:
        with self._writes() as pending:
            for customer in customers:
                pending.profiles[customer] = None
                pending.segments.pop(customer, None)

    def purchase_days(self, customers: list[str] | None) -> Iterator[tuple[str, int, bytes]]:
        pending = self._pending
        if customers is None:
            found = self._read(self._all_days)
        else:
            wanted = list(dict.fromkeys(customers))
            if pending is not None:
                wanted = [c for c in wanted if c not in pending.profiles]
            found = self._read(lambda: self._days_of(wanted))
        if pending is not None:
            if customers is None:
                found = [item for item in found if item[0] not in pending.profiles]
            for customer in pending.profiles if customers is None else dict.fromkeys(customers):
                record = pending.profiles.get(customer)
                if record is not None:
                    found.append((customer, len(record[2]) // ROW.itemsize, record[3]))
        yield from found

    def _days_of(self, customers: list[str]) -> list[tuple[str, int, bytes]]:
        found: list[tuple[str, int, bytes]] = []
        for chunk in _chunks(customers):
            pipe = self._client.pipeline(transaction=True)
            pipe.hmget(self._days, chunk)
            for customer in chunk:
                pipe.hstrlen(self._rows, customer)
            days, *lengths = pipe.execute()
            found.extend(
                (customer, length // ROW.itemsize, blob)
                for customer, blob, length in zip(chunk, days, lengths, strict=True)
                if blob is not None
            )
        return found

    def _all_days(self) -> list[tuple[str, int, bytes]]:
        days = dict(self._scan(self._days))  # HSCAN may repeat a field: the dict keeps one
        found: list[tuple[str, int, bytes]] = []
        for chunk in _chunks(days):
            pipe = self._client.pipeline(transaction=False)
            for customer in chunk:
                pipe.hstrlen(self._rows, customer)
            found.extend(
                (customer.decode(), length // ROW.itemsize, days[customer])
                for customer, length in zip(chunk, pipe.execute(), strict=True)
            )
        return found

    def put_segments(self, segments: list[tuple[str, str]]) -> None:
        with self._writes() as pending:
            stored = self._existing([c for c, _ in segments if c not in pending.profiles])
            for customer, text in segments:
                if customer in pending.profiles:
                    record = pending.profiles[customer]
                    if record is not None:  # as SQL's UPDATE: only profiles that exist
                        pending.profiles[customer] = (*record[:4], text)
                elif customer in stored:
                    pending.segments[customer] = text

    def count(self) -> int:
        stored = int(self._client.hlen(self._rows))
        pending = self._pending
        if pending is None or not pending.profiles:
            return stored
        existing = self._existing(list(pending.profiles))
        for customer, record in pending.profiles.items():
            stored += (record is not None) - (customer in existing)
        return stored

    def _existing(self, customers: list[str]) -> set[str]:
        """Those of ``customers`` with a stored profile."""
        found: set[str] = set()
        for chunk in _chunks(customers):
            pipe = self._client.pipeline(transaction=False)
            for customer in chunk:
                pipe.hexists(self._rows, customer)
            found.update(c for c, there in zip(chunk, pipe.execute(), strict=True) if there)
        return found

    def _scan(self, key: str) -> Iterator[tuple[bytes, bytes]]:
        """The fields and values of the hash ``key``, a chunk per round trip."""
        cursor = 0
        while True:
            cursor, batch = self._client.hscan(key, cursor, count=_CHUNK)
            yield from cast(dict[bytes, bytes], batch).items()
            if not cursor:
                return

    # --- closing ------------------------------------------------------------------------------

    def close(self) -> None:
        self._client.close()

    def ready(self) -> None:
        pass  # every commit is one MULTI/EXEC already

    def discard(self) -> None:
        self._pending = None
        # Every members set is of a canonical id in P:aliases (an empty set is no key).
        canonical = {_customer(value) or "" for _, value in self._scan(self._aliases)}
        keys = [
            self._commits,
            self._meta,
            self._seen,
            self._aliases,
            self._rows,
            self._days,
            self._ids,
            self._segments,
            *map(self._members_key, canonical),
        ]
        for chunk in _chunks(keys):
            self._client.delete(*chunk)
        self._client.close()


def _split_prefix(url: str, shown: str) -> tuple[str, str]:
    """The URL for the Redis client (without ``prefix``) and the keys' prefix."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefixes = [value for key, value in query if key == "prefix"]
    prefix = prefixes[-1] if prefixes else DEFAULT_PREFIX
    if not prefix:
        raise DataError(
            f"{shown}: the prefix is empty; give ?prefix=NAME, or leave it out for "
            f"{DEFAULT_PREFIX!r}"
        )
    path = parts.path.strip("/")
    if parts.scheme != "unix" and path and not path.isdigit():
        raise DataError(
            f"{shown}: the path of a Redis URL is the database number (/0, /1...), not "
            f"{parts.path!r}; give the store's prefix as ?prefix=NAME"
        )
    rest = urlencode([(key, value) for key, value in query if key != "prefix"])
    return urlunsplit(parts._replace(query=rest)), prefix


def _chunks(items: Iterable[_T]) -> Iterator[list[_T]]:
    listed = list(items)
    for start in range(0, len(listed), _CHUNK):
        yield listed[start : start + _CHUNK]


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _alias_value(customer: str, first: int | None) -> bytes:
    return f"{customer}\x00{'' if first is None else first}".encode()


def _customer(value: object) -> str | None:
    """The canonical id of a ``P:aliases`` value (None for no value)."""
    return None if value is None else _bytes(value).rpartition(b"\x00")[0].decode()


def _bytes(value: object) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _maybe_text(value: object) -> str | None:
    return None if value is None else _text(value)
