"""The embedded profile store backend: one SQLite file in WAL mode, no server.

A batch of events is one SQLite transaction (``BEGIN IMMEDIATE``: one writer at a time, readers
go on); with WAL and ``synchronous=NORMAL`` a committed transaction survives the process being
killed (only a power loss can take the last ones back).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from clvlab.errors import DataError
from clvlab.profiles.backend import AliasRecord, Record
from clvlab.profiles.history import ROW

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE seen (event_id TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE aliases (
    alias TEXT PRIMARY KEY, customer TEXT NOT NULL, first_ns INTEGER
) WITHOUT ROWID;
CREATE INDEX aliases_by_customer ON aliases (customer);
CREATE TABLE profiles (
    customer TEXT PRIMARY KEY, ids TEXT, rows BLOB NOT NULL, days BLOB NOT NULL, segments TEXT
);
"""
#: SQLite's page cache, in KiB (its default is 2 MiB).
_CACHE_KIB = 64 * 1024
#: Ids per ``IN (...)`` list (SQLite allows at least 999 parameters).
_CHUNK = 500


class SQLiteBackend:
    """A profile store in one SQLite file (see :class:`clvlab.profiles.backend.ProfileBackend`)."""

    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        self._db = connection
        self.location = str(path)

    @classmethod
    def connect(cls, path: Path, *, create: bool) -> SQLiteBackend:
        """The store at ``path``: new (it must not exist) or existing (it must)."""
        if create and path.exists():
            raise DataError(
                f"{path} exists; give a new path, or ProfileStore.open({str(path)!r}) to use it"
            )
        if not create and not path.is_file():
            raise DataError(f"no profile store at {path}; create one with ProfileStore.build")
        connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        backend = cls(connection, path)
        if create:
            # A store being built has no journal (a build that fails is removed whole): its
            # one big transaction is written once, not to the log and again to the file.
            connection.execute("PRAGMA journal_mode = OFF")
            connection.execute("PRAGMA synchronous = OFF")
            connection.executescript(_SCHEMA)
        else:
            backend.ready()
        return backend

    def ready(self) -> None:
        # With WAL, NORMAL loses no committed transaction on a process crash (only on power loss).
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = NORMAL")
        # Profiles read again soon after (a customer's next event) are found in memory.
        self._db.execute(f"PRAGMA cache_size = -{_CACHE_KIB}")

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def meta(self) -> dict[str, str]:
        try:
            return dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.DatabaseError as err:
            raise DataError(f"{self.location} is not a profile store ({err})") from None

    def meta_value(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, items: dict[str, str]) -> None:
        self._db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", items.items())

    def new_event_ids(self, ids: list[str]) -> set[str]:
        fresh: set[str] = set()
        for chunk in _chunks(set(ids)):
            seen = {row[0] for row in self._select("event_id FROM seen WHERE event_id", chunk)}
            fresh.update(event for event in chunk if event not in seen)
        if fresh:
            self._db.executemany("INSERT INTO seen VALUES (?)", [(event,) for event in fresh])
        return fresh

    def aliases(self, ids: Iterable[str]) -> dict[str, tuple[str, int | None]]:
        found: dict[str, tuple[str, int | None]] = {}
        for chunk in _chunks(ids):
            for alias, customer, first in self._select(
                "alias, customer, first_ns FROM aliases WHERE alias", chunk
            ):
                found[alias] = (customer, first)
        return found

    def members(self, customers: Iterable[str]) -> set[str]:
        return {
            row[0]
            for chunk in _chunks(customers)
            for row in self._select("alias FROM aliases WHERE customer", chunk)
        }

    def put_aliases(self, records: list[AliasRecord]) -> None:
        if records:
            self._db.executemany("INSERT OR REPLACE INTO aliases VALUES (?, ?, ?)", records)

    def profiles(self, customers: Iterable[str]) -> list[Record]:
        return [
            record
            for chunk in _chunks(customers)
            for record in self._select(
                "customer, ids, rows, days, segments FROM profiles WHERE customer", chunk
            )
        ]

    def put_profiles(self, records: Iterable[Record]) -> None:
        # An upsert changes a stored profile in place (REPLACE deletes it and inserts anew).
        self._db.executemany(
            "INSERT INTO profiles VALUES (?, ?, ?, ?, ?) ON CONFLICT (customer) DO UPDATE SET "
            "ids = excluded.ids, rows = excluded.rows, days = excluded.days, "
            "segments = excluded.segments",
            records,
        )

    def delete_profiles(self, customers: Iterable[str]) -> None:
        gone = [(customer,) for customer in customers]
        if gone:
            self._db.executemany("DELETE FROM profiles WHERE customer = ?", gone)

    def purchase_days(self, customers: list[str] | None) -> Iterator[tuple[str, int, bytes]]:
        what = f"customer, length(rows) / {ROW.itemsize}, days FROM profiles"
        if customers is None:
            yield from self._db.execute(f"SELECT {what}")
            return
        for chunk in _chunks(customers):
            yield from self._select(f"{what} WHERE customer", chunk)

    def put_segments(self, segments: list[tuple[str, str]]) -> None:
        self._db.executemany(
            "UPDATE profiles SET segments = ? WHERE customer = ?",
            [(text, customer) for customer, text in segments],
        )

    def count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM profiles").fetchone()[0])

    def close(self) -> None:
        self._db.close()

    def discard(self) -> None:
        self._db.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.location}{suffix}").unlink(missing_ok=True)

    def _select(self, what: str, keys: list[str]) -> sqlite3.Cursor:
        """``SELECT what IN (keys)``: ``what`` ends with the column the keys are of."""
        return self._db.execute(f"SELECT {what} IN ({','.join('?' * len(keys))})", keys)


def _chunks(items: Iterable[str]) -> Iterator[list[str]]:
    listed = list(dict.fromkeys(items))
    for start in range(0, len(listed), _CHUNK):
        yield listed[start : start + _CHUNK]
