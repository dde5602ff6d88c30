"""Customer profiles kept current event by event, scored as batch scoring would score them.

A :class:`ProfileStore` holds, per canonical customer, the customer's transactions as the
store received them (the source id, the time, the amount) and what cleaning makes of them: the
purchase days with their spend, from which the RFM summary at any date follows. A score depends
on a customer only through that summary (and, for a GBM champion, the purchase days), so a new
event changes one profile and its score at once, and the scores equal :func:`clvlab.score` on
all the transactions received, for every customer.

How batch scoring reads transactions is kept to the letter:

* identity links join ids into one person whose canonical id is the id with the earliest first
  transaction (ties: the smallest id), as :func:`clvlab.resolve_identities`; a late event can
  make another id of a group canonical, and the profile then moves to it;
* the model's cleaning policy is applied to each customer's transactions as
  :func:`clvlab.clean_transactions` applies it (it runs on them): returns dropped or netted
  against the latest purchase at or before them, zero amounts and exact duplicates as the policy
  says. Transactions at one instant are taken in the order of their event ids (transactions
  loaded by :meth:`ProfileStore.build` first, in the order read), which batch scoring sees
  when given the transactions in that order;
* purchase days and the RFM summary in whole days, as :func:`clvlab.rfm` with ``freq="D"``.

The embedded store is one SQLite file (WAL, one transaction per batch of events), so a process
killed mid-batch leaves the store as it was before the batch.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clvlab import __version__
from clvlab.data.clean import CleaningPolicy, DataReport, clean_transactions
from clvlab.data.identity import LEFT, RIGHT, SOURCE_CUSTOMER_ID, read_links, resolve_identities
from clvlab.data.io import AMOUNT, CUSTOMER_ID, DATE, TransactionSource
from clvlab.errors import DataError
from clvlab.features.rfm import DateLike
from clvlab.models.clv import CLVModel
from clvlab.profiles.events import EVENT_ID, Events, read_events
from clvlab.scoring import (
    SCORE_COLUMNS,
    PreparedTransactions,
    as_model,
    check_arguments,
    day_after,
    score_at,
)

#: The store's file format; a store of another format is refused (rebuild it).
STORE_FORMAT = "clvlab.ProfileStore/1"
#: Sort key of the transactions loaded from history: before any event at the same instant, in
#: the order read.
_HISTORY_KEY = "\x00{:012d}"
_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE seen (event_id TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE aliases (
    alias TEXT PRIMARY KEY, customer TEXT NOT NULL, first_ns INTEGER
) WITHOUT ROWID;
CREATE INDEX aliases_by_customer ON aliases (customer);
CREATE TABLE rows (
    customer TEXT NOT NULL, alias TEXT NOT NULL, ns INTEGER NOT NULL, amount REAL,
    key TEXT NOT NULL
);
CREATE INDEX rows_by_customer ON rows (customer);
CREATE TABLE days (
    customer TEXT NOT NULL, day INTEGER NOT NULL, value REAL, PRIMARY KEY (customer, day)
) WITHOUT ROWID;
CREATE TABLE segments (customer TEXT PRIMARY KEY, segments TEXT NOT NULL) WITHOUT ROWID;
"""
#: The score table's segment columns whose changes :meth:`ProfileStore.apply` reports.
TRACKED_SEGMENTS = ("rfm_segment", "value_tier", "churn_tier")


@dataclasses.dataclass(frozen=True)
class _Alias:
    """An id of a linked group: the group's canonical id and the id's first transaction."""

    customer: str
    first_ns: int | None


class ProfileStore:
    """Profiles of every customer, updated by events, scored with one model.

    Build one from history with :meth:`build`, open it again with :meth:`open`; then
    :meth:`apply` events (transactions and identity links), :meth:`link` ids, and read
    :meth:`scores`.
    """

    def __init__(self, connection: sqlite3.Connection, model: CLVModel, path: Path) -> None:
        self._db = connection
        self.model = model
        self.path = path
        self._policy = _policy(model)
        self._count_only = model.spend is None

    # --- opening ------------------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        model: CLVModel | str | Path,
        transactions: TransactionSource | None = None,
        *,
        as_of: DateLike | None = None,
        path: str | Path = "profiles.db",
        identity_links: Any = None,
    ) -> ProfileStore:
        """A new store at ``path`` with the profiles of ``transactions`` (None: empty).

        ``model`` is a :class:`CLVModel`, a model URI or a model folder. The transactions are
        read as :func:`clvlab.score` reads them (the model's columns), identities resolved with
        ``identity_links``; those after ``as_of`` are left out (they can come as events).
        ``path`` must not exist yet.
        """
        model = as_model(model)
        _check_model(model)
        target = Path(path)
        if target.exists():
            raise DataError(
                f"{target} exists; give a new path, or ProfileStore.open({str(target)!r}) to use it"
            )
        cut = None if as_of is None else check_arguments(as_of, None)[0]
        connection = _connect(target)
        try:
            with connection:
                connection.executescript(_SCHEMA)
                meta = {
                    "format": STORE_FORMAT,
                    "clvlab_version": __version__,
                    "model": json.dumps(model.to_dict()),
                    "policy": json.dumps(dataclasses.asdict(_policy(model))),
                    "count_only": json.dumps(model.spend is None),
                }
                connection.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
            store = cls(connection, model, target)
            if transactions is not None:
                store._load_history(transactions, cut, identity_links)
        except BaseException:
            connection.close()
            for suffix in ("", "-wal", "-shm"):
                Path(f"{target}{suffix}").unlink(missing_ok=True)
            raise
        return store

    @classmethod
    def open(cls, path: str | Path, model: CLVModel | str | Path | None = None) -> ProfileStore:
        """The store at ``path``, scored with ``model`` (None: the model it was built with).

        A new model (a new champion, say) scores the stored profiles without re-reading any
        history, if it cleans and reads transactions as the store's model did.
        """
        target = Path(path)
        if not target.is_file():
            raise DataError(f"no profile store at {target}; create one with ProfileStore.build")
        connection = _connect(target)
        try:
            meta = dict(connection.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.DatabaseError as err:
            connection.close()
            raise DataError(f"{target} is not a profile store ({err})") from None
        if meta.get("format") != STORE_FORMAT:
            connection.close()
            raise DataError(
                f"{target} is a profile store of format {meta.get('format')!r} (clvlab "
                f"{meta.get('clvlab_version')}), and this clvlab {__version__} reads "
                f"{STORE_FORMAT!r}: rebuild it with ProfileStore.build(model, transactions, "
                "path=...)"
            )
        stored = CLVModel.from_dict(json.loads(meta["model"]))
        chosen = stored if model is None else as_model(model)
        _check_model(chosen)
        if json.dumps(dataclasses.asdict(_policy(chosen))) != meta["policy"] or (
            chosen.spend is None
        ) != json.loads(meta["count_only"]):
            connection.close()
            raise DataError(
                f"{target} was built for a model that cleans transactions otherwise (policy "
                f"{meta['policy']}, count-only {meta['count_only']}) than {chosen.name!r}: "
                "rebuild the store for it with ProfileStore.build(model, transactions, path=...)"
            )
        return cls(connection, chosen, target)

    def close(self) -> None:
        """Close the store's file."""
        self._db.close()

    def __enter__(self) -> ProfileStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- events -------------------------------------------------------------------------------

    def apply(
        self,
        events: Events,
        *,
        as_of: DateLike | None = None,
        horizon_days: float | None = None,
        on_error: str = "raise",
    ) -> pd.DataFrame:
        """Apply a batch of events; the changed customers' new score rows.

        ``events`` is a DataFrame or a list of dicts: transactions (``event_id``,
        ``customer_id``, ``date``, ``amount``) and identity links (``event_id``, ``id_a``,
        ``id_b``). An event id seen before is not applied again. Bad events (no id, customer or
        date, a date or amount that cannot be read) raise a :class:`DataError` naming each,
        and nothing is applied; with ``on_error="skip"`` the others are applied.

        The batch is applied in one transaction. The score rows (columns of
        :func:`clvlab.score`) are those of the customers whose profile changed, as of ``as_of``
        (the last transaction in the store when None); ``.attrs`` has ``applied``,
        ``ignored`` (seen before), ``rejected`` (the refused events, with reasons),
        ``merged`` (old canonical id -> new, for profiles that moved) and ``transitions``:
        each customer whose segment (a column of :data:`TRACKED_SEGMENTS`, when the model
        has segments) is new or changed, as ``{"customer_id", "segment", "from", "to",
        "at"}`` (``from`` None for a new customer; ``at`` the as-of date of the scores).
        """
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error is 'raise' or 'skip', not {on_error!r}")
        as_of_stamp, horizon_days = check_arguments(as_of, horizon_days)
        batch = read_events(
            events,
            count_only=self._count_only,
            date_format=self.model.columns.get("date_format"),
            timezone=self.model.columns.get("timezone"),
        )
        if on_error == "raise":
            batch.raise_rejected()
        with self._transaction():
            new = self._new_event_ids(
                [*batch.transactions[EVENT_ID].tolist(), *batch.links[EVENT_ID].tolist()]
            )
            # An id repeated in the batch is applied once: its first event.
            transactions = batch.transactions.drop_duplicates(EVENT_ID)
            transactions = transactions[transactions[EVENT_ID].isin(new)]
            links = batch.links.drop_duplicates(EVENT_ID)
            links = links[links[EVENT_ID].isin(new)]
            changed, merged = self._apply(transactions, links)
            ignored = len(batch.transactions) + len(batch.links) - len(new)
            as_of_stamp = as_of_stamp or self._last_date()
            table = self._score(changed, as_of_stamp, horizon_days)
            transitions = self._transitions(table, merged, as_of_stamp)
        table.attrs.update(
            applied=len(new),
            ignored=ignored,
            rejected=[dataclasses.asdict(item) for item in batch.rejected],
            merged=merged,
            transitions=transitions,
        )
        return table

    def link(self, links: Any, **kwargs: Any) -> pd.DataFrame:
        """Apply identity links (a table :func:`clvlab.read_links` reads: ``id_a``, ``id_b``,
        and an ``event_id`` column if the links should be applied once only); the changed
        customers' score rows, as :meth:`apply`."""
        table = read_links(links)
        if EVENT_ID not in table:
            frame = links if isinstance(links, pd.DataFrame) else None
            if frame is not None and EVENT_ID in frame:
                table[EVENT_ID] = frame[EVENT_ID].to_numpy()
            else:  # a link is its own id: applying it twice changes nothing anyway
                table[EVENT_ID] = "link:" + table[LEFT].astype(str) + "\x00" + table[RIGHT]
        return self.apply(table[[EVENT_ID, LEFT, RIGHT]], **kwargs)

    # --- scores -------------------------------------------------------------------------------

    def scores(
        self, as_of: DateLike | None = None, horizon_days: float | None = None
    ) -> pd.DataFrame:
        """Every customer's score row as of ``as_of`` (the last transaction in the store when
        None): :func:`clvlab.score` of all the transactions the store has received, with the
        identity links it has received. Ids are text."""
        as_of_stamp, horizon_days = check_arguments(as_of, horizon_days)
        return self._score(None, as_of_stamp, horizon_days)

    def customer(
        self, customer_id: str, *, as_of: DateLike | None = None, horizon_days: float | None = None
    ) -> dict[str, Any] | None:
        """One customer's profile and score row, looked up by any of its ids; None if the
        store has no transaction of it.

        ``{"customer_id": canonical id, "ids": its linked ids, "transactions": stored
        transactions, "purchase_days": [{"date", "amount"}], "score": the score row}``.
        """
        as_of_stamp, horizon_days = check_arguments(as_of, horizon_days)
        entry = self._aliases([str(customer_id)]).get(str(customer_id))
        canonical = str(customer_id) if entry is None else entry.customer
        days, _, stored = self._days([canonical])
        if not stored:
            return None
        table = self._score([canonical], as_of_stamp or self._last_date(), horizon_days)
        row = table.iloc[0].to_dict()
        return {
            "customer_id": canonical,
            "ids": sorted(self._members([canonical]) | {canonical}),
            "transactions": stored,
            "purchase_days": [
                {"date": str(day.date()), "amount": None if pd.isna(value) else float(value)}
                for day, value in zip(days[DATE], days.get(AMOUNT, [None] * len(days)), strict=True)
            ],
            "score": {key: _plain(value) for key, value in row.items()},
        }

    def customers(self) -> int:
        """The number of canonical customers with a transaction."""
        return int(self._db.execute("SELECT count(DISTINCT customer) FROM rows").fetchone()[0])

    def _score(
        self,
        customers: list[str] | None,
        as_of: pd.Timestamp | None,
        horizon_days: float | None,
    ) -> pd.DataFrame:
        if customers is not None and not customers:
            return _no_scores()
        days, excluded, stored = self._days(customers)
        if not stored:  # customers without transactions (an id known from links only)
            if customers is not None:
                return _no_scores()
            raise DataError("the profile store has no transactions to score yet")
        report = DataReport(
            rows_read=stored,
            rows_kept=len(days),
            customers=int(days[CUSTOMER_ID].nunique()),
            count_only=self._count_only,
        )
        prepared = PreparedTransactions(days, pd.Index(excluded, dtype="string"), report)
        if as_of is None:
            as_of = self._last_date()
            if as_of is None:
                raise DataError("the profile store has no transactions to score yet")
        return score_at(self.model, prepared, as_of, horizon_days)[0]

    def _transitions(
        self, table: pd.DataFrame, merged: dict[str, str], at: pd.Timestamp | None
    ) -> list[dict[str, Any]]:
        """The segment changes of the customers of ``table`` since their last scores here;
        the new segments are stored (those of ids merged away are dropped)."""
        present = [column for column in TRACKED_SEGMENTS if column in table]
        for chunk in _chunks(list(merged), 500):
            marks = ",".join("?" * len(chunk))
            self._db.execute(f"DELETE FROM segments WHERE customer IN ({marks})", chunk)
        if not present or table.empty:
            return []
        ids = table[CUSTOMER_ID].astype(str).tolist()
        previous: dict[str, dict[str, Any]] = {}
        for chunk in _chunks(ids, 500):
            marks = ",".join("?" * len(chunk))
            for customer, text in self._db.execute(
                f"SELECT customer, segments FROM segments WHERE customer IN ({marks})", chunk
            ):
                previous[customer] = json.loads(text)
        transitions, rows = [], []
        for customer, values in zip(ids, table[present].itertuples(index=False), strict=True):
            now = {
                c: None if _is_missing(v) else str(v) for c, v in zip(present, values, strict=True)
            }
            before = previous.get(customer, {})
            for column in present:
                if before.get(column) != now[column]:
                    transitions.append(
                        {
                            CUSTOMER_ID: customer,
                            "segment": column,
                            "from": before.get(column),
                            "to": now[column],
                            "at": None if at is None else at.isoformat(),
                        }
                    )
            rows.append((customer, json.dumps(now)))
        self._db.executemany("INSERT OR REPLACE INTO segments VALUES (?, ?)", rows)
        return transitions

    # --- storage ------------------------------------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _new_event_ids(self, ids: list[str]) -> list[str]:
        """The ids not seen before (the first of repeats in ``ids``), now recorded as seen."""
        new: list[str] = []
        fresh: set[str] = set()
        for chunk in _chunks(list(dict.fromkeys(ids)), 500):
            marks = ",".join("?" * len(chunk))
            seen = {
                row[0]
                for row in self._db.execute(
                    f"SELECT event_id FROM seen WHERE event_id IN ({marks})", chunk
                )
            }
            fresh.update(event for event in chunk if event not in seen)
        for event in ids:
            if event in fresh:
                new.append(event)
                fresh.discard(event)
        self._db.executemany("INSERT INTO seen VALUES (?)", [(event,) for event in new])
        return new

    def _apply(
        self, transactions: pd.DataFrame, links: pd.DataFrame
    ) -> tuple[list[str], dict[str, str]]:
        """Store the new transactions and links; recompute the profiles they change. The
        changed canonical ids, and old canonical id -> new for profiles that moved."""
        ids = {*links[LEFT], *links[RIGHT], *transactions[CUSTOMER_ID]}
        stored = self._aliases(ids)
        # A group is known by its canonical id so far (an id never linked is its own group);
        # the links of the batch join groups (union-find over those ids).
        parent: dict[str, str] = {}

        def find(key: str) -> str:
            parent.setdefault(key, key)
            while parent[key] != key:
                parent[key] = parent[parent[key]]
                key = parent[key]
            return key

        def key_of(alias: str) -> str:
            entry = stored.get(alias)
            return alias if entry is None else entry.customer

        for id_a, id_b in zip(links[LEFT], links[RIGHT], strict=True):
            root_a, root_b = find(key_of(id_a)), find(key_of(id_b))
            if root_a != root_b:
                parent[max(root_a, root_b)] = min(root_a, root_b)
        # A linked id's first transaction may have moved earlier: its group's canonical id
        # may change too.
        firsts = {
            str(alias): int(pd.Timestamp(first).value)
            for alias, first in transactions.groupby(CUSTOMER_ID)[DATE].min().items()
        }
        for alias in firsts:
            if alias in stored:
                find(stored[alias].customer)
        merged: dict[str, str] = {}
        changed: set[str] = set()
        by_root: dict[str, list[str]] = {}
        for key in list(parent):
            by_root.setdefault(find(key), []).append(key)
        entries: dict[str, _Alias] = {}
        for keys in by_root.values():
            members = set(keys) | self._members(keys)
            firsts_of = {member: self._first_of(member, stored) for member in members}
            for member, first in firsts_of.items():
                batch_first = firsts.get(member)
                if batch_first is not None and (first is None or batch_first < first):
                    firsts_of[member] = batch_first
            canonical = min(members, key=lambda m: _rank(firsts_of[m], m))
            if len(members) > 1:
                entries.update({m: _Alias(canonical, firsts_of[m]) for m in members})
            merged.update({key: canonical for key in keys if key != canonical})
            changed.add(canonical)
        self._db.executemany(
            "INSERT OR REPLACE INTO aliases VALUES (?, ?, ?)",
            [(alias, entry.customer, entry.first_ns) for alias, entry in entries.items()],
        )
        for old, new in merged.items():
            self._db.execute("UPDATE rows SET customer = ? WHERE customer = ?", (new, old))
            self._db.execute("DELETE FROM days WHERE customer = ?", (old,))
        canonical_of = {alias: entry.customer for alias, entry in stored.items()}
        canonical_of.update({alias: entry.customer for alias, entry in entries.items()})
        owners = transactions[CUSTOMER_ID].map(lambda a: canonical_of.get(a, a))
        self._insert_rows(
            owners,
            transactions[CUSTOMER_ID],
            transactions[DATE],
            transactions.get(AMOUNT, None),
            transactions[EVENT_ID],
        )
        changed.update(owners)
        changed -= set(merged)
        self._recompute(sorted(changed))
        return sorted(changed), merged

    def _members(self, customers: list[str]) -> set[str]:
        """The linked ids whose canonical id is one of ``customers``."""
        found: set[str] = set()
        for chunk in _chunks(customers, 500):
            marks = ",".join("?" * len(chunk))
            found.update(
                row[0]
                for row in self._db.execute(
                    f"SELECT alias FROM aliases WHERE customer IN ({marks})", chunk
                )
            )
        return found

    def _first_of(self, alias: str, stored: dict[str, _Alias]) -> int | None:
        """The first transaction of ``alias`` in the store (before this batch)."""
        entry = stored.get(alias)
        if entry is None:
            row = self._db.execute(
                "SELECT first_ns FROM aliases WHERE alias = ?", (alias,)
            ).fetchone()
            if row is not None:
                return None if row[0] is None else int(row[0])
            return self._first_ns(alias)
        return entry.first_ns

    def _aliases(self, ids: Iterable[str]) -> dict[str, _Alias]:
        found: dict[str, _Alias] = {}
        for chunk in _chunks([str(i) for i in set(ids)], 500):
            marks = ",".join("?" * len(chunk))
            for alias, customer, first_ns in self._db.execute(
                f"SELECT alias, customer, first_ns FROM aliases WHERE alias IN ({marks})", chunk
            ):
                found[alias] = _Alias(customer, first_ns)
        return found

    def _first_ns(self, alias: str) -> int | None:
        """The first transaction of an id not yet linked (its profile is its own)."""
        row = self._db.execute(
            "SELECT min(ns) FROM rows WHERE customer = ? AND alias = ?", (alias, alias)
        ).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def _insert_rows(
        self,
        owners: pd.Series,
        aliases: pd.Series,
        dates: pd.Series,
        amounts: pd.Series | None,
        keys: pd.Series | list[str],
    ) -> None:
        values = None if amounts is None else amounts.astype(float).tolist()
        self._db.executemany(
            "INSERT INTO rows VALUES (?, ?, ?, ?, ?)",
            zip(
                owners.astype(str).tolist(),
                aliases.astype(str).tolist(),
                dates.astype("datetime64[ns]").astype("int64").tolist(),
                values if values is not None else [None] * len(owners),
                list(keys),
                strict=True,
            ),
        )

    def _recompute(self, customers: list[str]) -> None:
        """Clean the transactions of ``customers`` again; replace their purchase days."""
        if not customers:
            return
        parts = []
        for chunk in _chunks(customers, 500):
            marks = ",".join("?" * len(chunk))
            parts.append(
                pd.read_sql_query(
                    "SELECT customer, alias, ns, amount, key FROM rows "
                    f"WHERE customer IN ({marks})",
                    self._db,
                    params=chunk,
                )
            )
            self._db.execute(f"DELETE FROM days WHERE customer IN ({marks})", chunk)
        rows = pd.concat(parts, ignore_index=True)
        self._insert_days(self._clean(rows))

    def _clean(self, rows: pd.DataFrame) -> pd.DataFrame:
        """Purchase days (``customer``, ``day`` in ns, ``value``) of stored transactions
        (``customer``, ``alias``, ``ns``, ``amount``, ``key``), cleaned by the model's policy
        as batch scoring cleans them."""
        rows = rows.sort_values(["customer", "ns", "key"], kind="stable")
        frame = pd.DataFrame(
            {
                CUSTOMER_ID: rows["customer"].astype("string").to_numpy(),
                DATE: pd.to_datetime(rows["ns"].to_numpy(dtype="int64")),
            }
        )
        if not self._count_only:
            frame[AMOUNT] = rows["amount"].to_numpy(dtype=float)
        frame[SOURCE_CUSTOMER_ID] = rows["alias"].astype("string").to_numpy()
        if frame.empty:
            return pd.DataFrame({"customer": [], "day": [], "value": []})
        cleaned, _ = clean_transactions(frame, policy=self._policy, sort=False)
        days = pd.DataFrame(
            {
                "customer": cleaned[CUSTOMER_ID].astype(str),
                "day": cleaned[DATE].dt.floor("D").astype("int64"),
                "value": cleaned.get(AMOUNT, np.nan),
            }
        )
        grouped = days.groupby(["customer", "day"], as_index=False, sort=False)["value"]
        return pd.DataFrame(grouped.sum(min_count=1))

    def _insert_days(self, days: pd.DataFrame) -> None:
        values = days["value"].astype(float)
        self._db.executemany(
            "INSERT INTO days VALUES (?, ?, ?)",
            zip(
                days["customer"].tolist(),
                days["day"].astype("int64").tolist(),
                [None if np.isnan(v) else v for v in values.tolist()],
                strict=True,
            ),
        )

    def _days(self, customers: list[str] | None) -> tuple[pd.DataFrame, list[str], int]:
        """The purchase days of ``customers`` (None: all) as canonical transactions; those of
        them with transactions but no purchase day (every one excluded by cleaning); and the
        number of their stored transactions."""
        if customers is None:
            days = pd.read_sql_query("SELECT customer, day, value FROM days", self._db)
            counts = self._db.execute("SELECT customer, count(*) FROM rows GROUP BY customer")
            known, stored = [], 0
            for customer, count in counts:
                known.append(customer)
                stored += count
        else:
            parts, known, stored = [], [], 0
            for chunk in _chunks(customers, 500):
                marks = ",".join("?" * len(chunk))
                parts.append(
                    pd.read_sql_query(
                        f"SELECT customer, day, value FROM days WHERE customer IN ({marks})",
                        self._db,
                        params=chunk,
                    )
                )
                for customer, count in self._db.execute(
                    f"SELECT customer, count(*) FROM rows WHERE customer IN ({marks}) "
                    "GROUP BY customer",
                    chunk,
                ):
                    known.append(customer)
                    stored += count
            days = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
        frame = pd.DataFrame(
            {
                CUSTOMER_ID: days.get("customer", pd.Series(dtype=str)).astype("string"),
                DATE: pd.to_datetime(days.get("day", pd.Series(dtype="int64")).astype("int64")),
            }
        )
        if not self._count_only:
            frame[AMOUNT] = days.get("value", pd.Series(dtype=float)).astype(float)
        excluded = sorted(set(known) - set(frame[CUSTOMER_ID].dropna()))
        return frame, excluded, stored

    def _last_date(self) -> pd.Timestamp | None:
        row = self._db.execute("SELECT max(ns) FROM rows").fetchone()
        return None if row[0] is None else pd.Timestamp(int(row[0]))

    def _load_history(
        self, transactions: TransactionSource, cut: pd.Timestamp | None, identity_links: Any
    ) -> None:
        from clvlab.data.io import read_canonical
        from clvlab.scoring import read_columns

        in_frame = transactions.columns if isinstance(transactions, pd.DataFrame) else None
        frame, _ = read_canonical(transactions, **read_columns(self.model, in_frame))
        frame = frame[frame[CUSTOMER_ID].notna()].reset_index(drop=True)
        if cut is not None:
            frame = frame[frame[DATE] < day_after(cut)].reset_index(drop=True)
        keys = [_HISTORY_KEY.format(n) for n in range(len(frame))]
        with self._transaction():
            if identity_links is not None:
                resolved, mapping, _ = resolve_identities(frame, read_links(identity_links))
                firsts = frame.groupby(CUSTOMER_ID)[DATE].min()
                self._db.executemany(
                    "INSERT INTO aliases VALUES (?, ?, ?)",
                    [
                        (
                            str(alias),
                            str(customer),
                            int(firsts[alias].value) if alias in firsts.index else None,
                        )
                        for alias, customer in zip(
                            mapping["source_id"], mapping[CUSTOMER_ID], strict=True
                        )
                    ],
                )
                owners = resolved[CUSTOMER_ID]
            else:
                owners = frame[CUSTOMER_ID]
            amounts = None if self._count_only or AMOUNT not in frame else frame[AMOUNT]
            self._insert_rows(owners, frame[CUSTOMER_ID], frame[DATE], amounts, keys)
            rows = pd.DataFrame(
                {
                    "customer": owners.astype(str).to_numpy(),
                    "alias": frame[CUSTOMER_ID].astype(str).to_numpy(),
                    "ns": frame[DATE].astype("datetime64[ns]").astype("int64").to_numpy(),
                    "amount": np.nan if amounts is None else amounts.to_numpy(dtype=float),
                    "key": keys,
                }
            )
            self._insert_days(self._clean(rows))


def _connect(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    connection.execute("PRAGMA journal_mode = WAL")
    # With WAL, NORMAL loses no committed transaction on a process crash (only on power loss).
    connection.execute("PRAGMA synchronous = NORMAL")
    return connection


def _policy(model: CLVModel) -> CleaningPolicy:
    """The model's cleaning policy as the store applies it (no invoices: see _check_model)."""
    return dataclasses.replace(CleaningPolicy(**model.cleaning), cancellation_prefix=None)


def _check_model(model: CLVModel) -> None:
    if model.columns.get("invoice"):
        raise DataError(
            f"model {model.name!r} merges invoice lines (data.invoice), which profile stores "
            "do not do yet: train the model without data.invoice to keep its profiles current"
        )
    if model.covariates:
        raise DataError(
            f"model {model.name!r} has a GBM with static covariates {list(model.covariates)}, "
            "which profile stores do not keep yet: train without models.gbm.static_columns"
        )


def _no_scores() -> pd.DataFrame:
    """A score table without rows."""
    table = pd.DataFrame({column: pd.Series(dtype=float) for column in SCORE_COLUMNS})
    for column in (CUSTOMER_ID, "model", "model_version", "reason"):
        table[column] = table[column].astype("string")
    return table


def _plain(value: Any) -> Any:
    """A score table's value as plain JSON-friendly Python (None when missing)."""
    if _is_missing(value):
        return None
    return value.item() if isinstance(value, np.generic) else value


def _is_missing(value: object) -> bool:
    return (
        value is None
        or value is pd.NA
        or value is pd.NaT
        or (isinstance(value, float) and np.isnan(value))
    )


def _rank(first_ns: int | None, alias: str) -> tuple[int, str]:
    """Order of the ids of a group: the first transaction first, ties by id; no transaction
    last (the canonical id is the first)."""
    return (np.iinfo(np.int64).max if first_ns is None else first_ns, alias)


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
