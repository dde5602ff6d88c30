"""Where a profile store keeps its data: one SQLite file (embedded, the default) or Redis.

:class:`ProfileBackend` is what :class:`clvlab.profiles.ProfileStore` asks of its storage:
a few keyed tables (metadata, event ids seen, linked ids, one packed profile per customer)
and transactions: every write of a batch of events lands together or not at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

from clvlab.errors import DataError

#: A stored profile: customer, ids (JSON, None when only its own), packed transactions,
#: packed purchase days, segments of its last scores (JSON or None).
Record = tuple[str, str | None, bytes, bytes, str | None]
#: A linked id: the id, its group's canonical id, its first transaction (ns; None if none).
AliasRecord = tuple[str, str, int | None]


class ProfileBackend(Protocol):
    """Storage of a profile store. Reads see the writes of the open transaction."""

    #: Where the data are, as the user gave it (a file path, or a ``redis://`` URL with its
    #: password masked).
    location: str

    def transaction(self) -> AbstractContextManager[None]:
        """Apply the writes made inside together, or none of them if it raises."""
        ...

    def meta(self) -> dict[str, str]:
        """The store's metadata (format, model, policy, last transaction...)."""
        ...

    def meta_value(self, key: str) -> str | None:
        """One item of the metadata (None if not set)."""
        ...

    def set_meta(self, items: dict[str, str]) -> None: ...

    def new_event_ids(self, ids: list[str]) -> set[str]:
        """Those of ``ids`` not seen before, now recorded as seen."""
        ...

    def aliases(self, ids: Iterable[str]) -> dict[str, tuple[str, int | None]]:
        """Linked id -> (canonical id, first transaction) for those of ``ids`` linked."""
        ...

    def members(self, customers: Iterable[str]) -> set[str]:
        """The linked ids whose canonical id is one of ``customers``."""
        ...

    def put_aliases(self, records: list[AliasRecord]) -> None: ...

    def profiles(self, customers: Iterable[str]) -> list[Record]:
        """The stored profiles of those of ``customers`` that have one."""
        ...

    def put_profiles(self, records: Iterable[Record]) -> None:
        """Store profiles (replacing those of the same customers)."""
        ...

    def delete_profiles(self, customers: Iterable[str]) -> None: ...

    def purchase_days(self, customers: list[str] | None) -> Iterator[tuple[str, int, bytes]]:
        """(customer, number of stored transactions, packed purchase days) of ``customers``
        (None: everyone)."""
        ...

    def put_segments(self, segments: list[tuple[str, str]]) -> None:
        """Record (customer, segments JSON) of customers' last scores."""
        ...

    def count(self) -> int:
        """The number of profiles."""
        ...

    def close(self) -> None: ...

    def ready(self) -> None:
        """Called when a new store is built: from here on every commit must be durable (a
        build may write without a journal, since a failed build is discarded whole)."""
        ...

    def discard(self) -> None:
        """Close and remove everything stored (a store whose build failed)."""
        ...


def is_redis(location: str | Path) -> bool:
    """Whether ``location`` names a Redis server (``redis://``, ``rediss://`` or ``unix://``)."""
    return str(location).startswith(("redis://", "rediss://", "unix://"))


def redacted_url(url: str) -> str:
    """``url`` with its password (if any) masked, to show in messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def connect(location: str | Path, *, create: bool) -> ProfileBackend:
    """The backend at ``location``: a new, empty one (``create``) or an existing one."""
    if is_redis(location):
        try:
            from clvlab.profiles.redis_backend import RedisBackend
        except ModuleNotFoundError as err:
            if err.name != "redis":
                raise
            raise DataError(
                f"{redacted_url(str(location))}: a profile store in Redis needs the Python "
                "client redis: pip install 'clvlab[redis]'"
            ) from None
        return RedisBackend.connect(str(location), create=create)
    from clvlab.profiles.sqlite_backend import SQLiteBackend

    return SQLiteBackend.connect(Path(location), create=create)
