"""Customer profiles kept current event by event, scored as batch scoring would score them.

A :class:`ProfileStore` holds, per canonical customer, the customer's transactions as the
store received them (the source id, the instant, the amount, the invoice, the covariates) and
what cleaning makes of them: the purchase days with their spend, from which the RFM summary at
any date follows (:mod:`clvlab.profiles.history`). A score depends on a customer only through
that summary (and, for a GBM champion, the purchase days and covariates), so a new event
changes one profile and its score at once, and the scores equal :func:`clvlab.score` on all the
transactions received, for every customer.

How batch scoring reads transactions is kept to the letter:

* identity links join ids into one person whose canonical id is the id with the earliest first
  transaction (ties: the smallest id), as :func:`clvlab.resolve_identities`; a late event can
  make another id of a group canonical, and the profile then moves to it;
* the model's cleaning policy is applied to each customer's transactions as
  :func:`clvlab.clean_transactions` applies it: exact duplicates (judged on every field) and
  zero amounts as the policy says, the lines of an invoice merged, returns and cancellations
  dropped or netted against the latest purchase at or before them. Transactions at one
  instant are taken in the order of their id (text) and amount, whatever order they came in,
  which batch scoring sees when given the transactions in that order;
* purchase days and the RFM summary in whole days, as :func:`clvlab.rfm` with ``freq="D"``
  (so a model of ``time_unit: H``, which batch scoring summarizes per hour, is refused).

Where it is kept is a :class:`clvlab.profiles.backend.ProfileBackend`: one SQLite file (WAL, a
transaction per batch of events, so a process killed mid-batch leaves the store as it was
before the batch) or Redis (several processes or machines).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal, overload

import numpy as np
import pandas as pd

from clvlab import __version__
from clvlab.config import resolution
from clvlab.data.clean import CleaningPolicy, DataReport
from clvlab.data.identity import LEFT, RIGHT, SOURCE_CUSTOMER_ID, read_links, resolve_identities
from clvlab.data.io import (
    AMOUNT,
    CUSTOMER_ID,
    DATE,
    TransactionSource,
    as_customer_ids,
    read_canonical,
)
from clvlab.errors import ConfigError, DataError
from clvlab.features.rfm import DateLike
from clvlab.models.clv import CLVModel
from clvlab.profiles.backend import ProfileBackend, connect
from clvlab.profiles.events import (
    CONTENT,
    EVENT_ID,
    INVOICE,
    Columns,
    EventBatch,
    EventFields,
    Events,
    content_hash,
    read_events,
)
from clvlab.profiles.history import (
    DAY,
    ROW,
    appended_days,
    new_rows,
    purchase_days,
    unpack_days,
    unpack_rows,
)
from clvlab.profiles.packed import (
    DayRecord,
    Profile,
    clean_profiles,
    days_frame,
    is_missing,
    listed_position,
    per_owner,
    plain,
    profile_keys,
    split_records,
    summaries,
)
from clvlab.scoring import (
    ScoreValues,
    as_model,
    check_arguments,
    check_as_of,
    day_after,
    gbm_inputs_at,
    read_columns,
    score_values,
    unscored_reasons,
)

#: The store's file format; a store of another format is refused (rebuild it).
STORE_FORMAT = "clvlab.ProfileStore/2"
#: The score table's segment columns whose changes :meth:`ProfileStore.apply` reports.
TRACKED_SEGMENTS = ("rfm_segment", "value_tier", "churn_tier")


@dataclasses.dataclass(frozen=True)
class _Alias:
    """An id of a linked group: the group's canonical id and the id's first transaction."""

    customer: str
    first_ns: int | None


@dataclasses.dataclass
class AppliedEvents:
    """What :meth:`ProfileStore.apply` did with a batch of events (``as_frame=False``)."""

    #: The changed customers' score rows (the columns of :func:`clvlab.score`), as dicts of
    #: plain values: None where missing.
    scores: list[dict[str, Any]]
    #: Events applied, and ignored (their id seen before).
    applied: int
    ignored: int
    #: The refused events: ``event_id``, ``position`` in the batch, ``reason``.
    rejected: list[dict[str, Any]]
    #: Old canonical id -> new, for profiles that moved.
    merged: dict[str, str]
    #: Segment changes: ``customer_id``, ``segment``, ``from``, ``to``, ``at``.
    transitions: list[dict[str, Any]]


class ProfileStore:
    """Profiles of every customer, updated by events, scored with one model.

    Build one from history with :meth:`build`, open it again with :meth:`open`; then
    :meth:`apply` events (transactions and identity links), :meth:`link` ids, and read
    :meth:`scores`.
    """

    def __init__(self, backend: ProfileBackend, model: CLVModel) -> None:
        self._backend = backend
        self.model = model
        #: Where the store is: its file, or the Redis URL.
        self.location = backend.location
        self._policy = _policy(model)
        self._count_only = model.spend is None
        self._fields = EventFields(
            count_only=self._count_only,
            date_format=model.columns.get("date_format"),
            timezone=model.columns.get("timezone"),
            invoice=model.columns.get("invoice"),
            covariates=tuple(model.covariates),
            quantity=model.columns.get("quantity"),
            price=model.columns.get("price"),
            content=self._policy.duplicates == "drop",
        )

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
        ``transactions`` may also be a Spark DataFrame: the store keeps every profile on this
        machine, so its rows are collected here once (``toPandas``). ``path`` must not exist
        yet. A model of ``time_unit: H`` is a :class:`ConfigError` (see :func:`check_daily`).
        """
        model = as_model(model)
        check_daily(model)
        if type(transactions).__module__.startswith("pyspark."):
            transactions = transactions.toPandas()  # type: ignore[union-attr,operator]
        cut = None if as_of is None else check_arguments(as_of, None)[0]
        backend = connect(path, create=True)
        try:
            store = cls(backend, model)
            with backend.transaction():
                backend.set_meta(
                    {
                        "format": STORE_FORMAT,
                        "clvlab_version": __version__,
                        "model": json.dumps(model.to_dict()),
                        "policy": json.dumps(dataclasses.asdict(_policy(model))),
                        "count_only": json.dumps(model.spend is None),
                    }
                )
                if transactions is not None:
                    store._load_history(transactions, cut, identity_links)
                    if model.segments is not None:  # the segments transitions start from
                        values, _ = store._score(None, cut, None)
                        store._transitions(values, {}, cut)
            backend.ready()
        except BaseException:
            backend.discard()
            raise
        return store

    @classmethod
    def open(cls, path: str | Path, model: CLVModel | str | Path | None = None) -> ProfileStore:
        """The store at ``path``, scored with ``model`` (None: the model it was built with).

        A new model (a new champion, say) scores the stored profiles without re-reading any
        history, if it cleans and reads transactions as the store's model did (and is no
        hourly model: see :func:`check_daily`).
        """
        backend = connect(path, create=False)
        meta = backend.meta()
        if meta.get("format") != STORE_FORMAT:
            backend.close()
            raise DataError(
                f"{backend.location} is a profile store of format {meta.get('format')!r} "
                f"(clvlab {meta.get('clvlab_version')}), and this clvlab {__version__} reads "
                f"{STORE_FORMAT!r}: rebuild it with ProfileStore.build(model, transactions, "
                "path=...)"
            )
        stored = CLVModel.from_dict(json.loads(meta["model"]))
        try:
            chosen = stored if model is None else as_model(model)
            check_daily(chosen)
        except BaseException:
            backend.close()
            raise
        if json.dumps(dataclasses.asdict(_policy(chosen))) != meta["policy"] or (
            chosen.spend is None
        ) != json.loads(meta["count_only"]):
            backend.close()
            raise DataError(
                f"{backend.location} was built for a model that cleans transactions otherwise "
                f"(policy {meta['policy']}, count-only {meta['count_only']}) than "
                f"{chosen.name!r}: rebuild the store for it with ProfileStore.build(model, "
                "transactions, path=...)"
            )
        return cls(backend, chosen)

    def close(self) -> None:
        """Close the store's file."""
        self._backend.close()

    def __enter__(self) -> ProfileStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- events -------------------------------------------------------------------------------

    @overload
    def apply(
        self,
        events: Events,
        *,
        as_of: DateLike | None = None,
        horizon_days: float | None = None,
        on_error: str = "raise",
        as_frame: Literal[True] = True,
    ) -> pd.DataFrame: ...

    @overload
    def apply(
        self,
        events: Events,
        *,
        as_of: DateLike | None = None,
        horizon_days: float | None = None,
        on_error: str = "raise",
        as_frame: Literal[False],
    ) -> AppliedEvents: ...

    def apply(
        self,
        events: Events,
        *,
        as_of: DateLike | None = None,
        horizon_days: float | None = None,
        on_error: str = "raise",
        as_frame: bool = True,
    ) -> pd.DataFrame | AppliedEvents:
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

        With ``as_frame=False`` the same comes as :class:`AppliedEvents`, the score rows as
        dicts of plain values: no table is built, which is most of the time a batch of one
        event takes (what a service answering each event wants).
        """
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error is 'raise' or 'skip', not {on_error!r}")
        as_of_stamp, horizon_days = check_arguments(as_of, horizon_days)
        batch = read_events(events, self._fields)
        if on_error == "raise":
            batch.raise_rejected()
        (outcome,), values, report = self._apply_batches(
            [batch], as_of_stamp, horizon_days, as_records=not as_frame
        )
        if not as_frame:
            return outcome
        table = self._table(values, report)
        table.attrs.update({key: value for key, value in vars(outcome).items() if key != "scores"})
        return table

    def apply_each(
        self,
        batches: list[Events],
        *,
        as_of: DateLike | None = None,
        horizon_days: float | None = None,
    ) -> list[AppliedEvents]:
        """Apply several batches of events, one after the other, in one transaction, and
        score the changed customers once: what a service does with the requests that came
        while it was busy (a batch costs little more than one event).

        Each batch's :class:`AppliedEvents` is what ``apply(batch, on_error="skip",
        as_frame=False)`` would give after the batches before it, but for the scores: those
        of the customers the batch changed, all as of after the last batch (``as_of``: the
        last transaction in the store then, when None). A batch that cannot be read at all
        raises its :class:`DataError`, and nothing is applied.
        """
        as_of_stamp, horizon_days = check_arguments(as_of, horizon_days)
        read = [read_events(events, self._fields) for events in batches]
        outcomes, _, _ = self._apply_batches(read, as_of_stamp, horizon_days)
        return outcomes

    def _apply_batches(
        self,
        batches: list[EventBatch],
        as_of: pd.Timestamp | None,
        horizon_days: float | None,
        *,
        as_records: bool = True,
    ) -> tuple[list[AppliedEvents], ScoreValues, DataReport]:
        """Apply the events of ``batches`` in one transaction (the rejected ones left out),
        score the changed customers; each batch's outcome (its score rows as dicts unless
        ``as_records`` is false and there is one batch), and the scores of all."""
        with self._backend.transaction():
            event_ids = [batch.transactions[EVENT_ID].tolist() for batch in batches]
            link_ids = [batch.links[EVENT_ID].tolist() for batch in batches]
            every_id = [*itertools.chain(*event_ids), *itertools.chain(*link_ids)]
            pending = set(self._new_event_ids(every_id))
            # An id seen before is not applied; one repeated, once (its first), in batch order.
            fresh_events = _first_of(list(itertools.chain(*event_ids)), pending)
            fresh_links = _first_of(list(itertools.chain(*link_ids)), pending)
            transactions = Columns.concat([batch.transactions for batch in batches])
            links = Columns.concat([batch.links for batch in batches])
            changed, merged, last = self._apply(
                transactions.take(fresh_events), links.take(fresh_links)
            )
            records = [(c.customer, len(c.rows) // ROW.itemsize, c.days) for c in changed]
            as_of = as_of or last or self._last_date()
            customers = [c.customer for c in changed]
            values, report = self._score(customers, as_of, horizon_days, records)
            transitions = self._transitions(values, merged, as_of)
            if len(batches) == 1:
                rows = [values.records() if as_records else []]
                applied = [int(fresh_events.sum() + fresh_links.sum())]
                shares = [(merged, transitions)]
            else:
                rows, applied, shares = self._split(
                    batches, values, merged, transitions, fresh_events, fresh_links
                )
        outcomes = [
            AppliedEvents(
                scores=scores,
                applied=count,
                ignored=len(batch.transactions) + len(batch.links) - count,
                rejected=[dataclasses.asdict(item) for item in batch.rejected],
                merged=moved,
                transitions=changes,
            )
            for batch, scores, count, (moved, changes) in zip(
                batches, rows, applied, shares, strict=True
            )
        ]
        return outcomes, values, report

    def _split(
        self,
        batches: list[EventBatch],
        values: ScoreValues,
        merged: dict[str, str],
        transitions: list[dict[str, Any]],
        fresh_events: np.ndarray,
        fresh_links: np.ndarray,
    ) -> tuple[list[list[dict[str, Any]]], list[int], list[tuple[dict[str, str], list[Any]]]]:
        """Each batch's share of the outcome of applying ``batches`` together: the score
        rows, merges and transitions of the customers its applied events changed (by their
        canonical ids now), and the number of its events applied."""
        rows_of = {row[CUSTOMER_ID]: row for row in values.records()}
        merged_into = set(merged.values())
        rows, applied, shares = [], [], []
        event_at = link_at = 0
        for batch in batches:
            kept_events = fresh_events[event_at : event_at + len(batch.transactions)]
            kept_links = fresh_links[link_at : link_at + len(batch.links)]
            event_at, link_at = event_at + len(batch.transactions), link_at + len(batch.links)
            bought = set(batch.transactions[CUSTOMER_ID][kept_events].tolist())
            linked = {
                *batch.links[LEFT][kept_links].tolist(),
                *batch.links[RIGHT][kept_links].tolist(),
            }
            found = self._aliases(bought | linked)
            canonical = {
                alias: found[alias].customer if alias in found else alias
                for alias in bought | linked
            }
            # A link changes a profile only when it merges two (as in apply).
            mine = {canonical[alias] for alias in bought} | {
                canonical[alias] for alias in linked if canonical[alias] in merged_into
            }
            rows.append([rows_of[c] for c in sorted(mine) if c in rows_of])
            applied.append(int(kept_events.sum() + kept_links.sum()))
            moved = {old: new for old, new in merged.items() if new in mine}
            changes = [change for change in transitions if change[CUSTOMER_ID] in mine]
            shares.append((moved, changes))
        return rows, applied, shares

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
        return self._table(*self._score(None, as_of_stamp, horizon_days))

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
        records = list(self._backend.purchase_days([canonical]))
        if not records:
            return None
        days = days_frame(records, self._count_only)
        stored = records[0][1]
        values, _ = self._score([canonical], as_of_stamp, horizon_days, records)
        return {
            "customer_id": canonical,
            "ids": sorted(self._members([canonical]) | {canonical}),
            "transactions": stored,
            "purchase_days": [
                {"date": str(day.date()), "amount": None if pd.isna(value) else float(value)}
                for day, value in zip(days[DATE], days.get(AMOUNT, [None] * len(days)), strict=True)
            ],
            "score": values.records()[0],
        }

    def customers(self) -> int:
        """The number of canonical customers with a transaction."""
        return self._backend.count()

    def _score(
        self,
        customers: list[str] | None,
        as_of: pd.Timestamp | None,
        horizon_days: float | None,
        records: list[DayRecord] | None = None,
    ) -> tuple[ScoreValues, DataReport]:
        """The scores of ``customers`` (None: everyone) as of ``as_of`` (None: the last
        transaction), from their purchase days (``records`` when at hand, else read): RFM
        summaries computed here as :func:`clvlab.rfm` computes them, scored by
        :func:`clvlab.scoring.score_values`; and the data report of the rows scored."""
        if records is None:
            records = sorted(self._backend.purchase_days(customers))
        if not records:  # no one, or ids known from links only
            if customers is not None:
                return ScoreValues.empty(self.model), DataReport(count_only=self._count_only)
            raise DataError("the profile store has no transactions to score yet")
        as_of = as_of or self._last_date()
        assert as_of is not None  # records exist, so does the last transaction
        if customers is None:  # as batch scoring: an as-of before every purchase is an error
            firsts = [unpack_days(blob[: DAY.itemsize])["day"] for _, _, blob in records if blob]
            first = pd.Timestamp(int(np.min(np.concatenate(firsts)))) if firsts else None
            check_as_of(as_of, first)
        summary = summaries(records, as_of, self.model.unit_days, self._count_only)
        gbm_inputs = None
        if self.model.gbm is not None:
            frame = days_frame(records, self._count_only)
            if self.model.covariates:
                frame = self._with_covariates(frame, records)
            gbm_inputs = gbm_inputs_at(self.model, frame[frame[DATE] < day_after(as_of)], as_of)
        unscored = unscored_reasons(summary.no_history, summary.excluded)
        values = score_values(
            self.model, summary.ids, summary.columns, unscored, horizon_days, gbm_inputs
        )
        report = DataReport(
            rows_read=sum(record[1] for record in records),
            rows_kept=len(summary.ids),
            customers=len(summary.ids),
            count_only=self._count_only,
        )
        return values, report

    def _table(self, values: ScoreValues, report: DataReport) -> pd.DataFrame:
        """The score table of ``values``, with the data report in its ``attrs``."""
        table = values.table()
        table.attrs["data_report"] = report.to_dict()
        return table

    def _with_covariates(self, frame: pd.DataFrame, records: list[DayRecord]) -> pd.DataFrame:
        """The purchase days ``frame`` of ``records`` with the GBM's covariate columns: the
        values of each day's last purchase that has some (None: missing)."""
        columns = list(self.model.covariates)
        listed = {
            record[0]: Profile.from_record(record).values
            for record in self._backend.profiles(r[0] for r in records)
        }
        positions = unpack_days(b"".join(record[2] for record in records))["values"]
        blank = [None] * len(columns)
        values = [
            listed[name][position] if position >= 0 else blank
            for name, position in zip(frame[CUSTOMER_ID], positions.tolist(), strict=True)
        ]
        return frame.assign(**dict(zip(columns, zip(*values, strict=True), strict=True)))

    def _transitions(
        self, values: ScoreValues, merged: dict[str, str], at: pd.Timestamp | None
    ) -> list[dict[str, Any]]:
        """The segment changes of the customers of ``values`` since their last scores here
        (a profile merged into another keeps the other's); the new segments are stored."""
        present = [column for column in TRACKED_SEGMENTS if column in values.columns]
        if not present or not len(values):
            return []
        ids = values.columns[CUSTOMER_ID].tolist()
        previous = {
            record[0]: json.loads(record[4]) if record[4] else {}
            for record in self._backend.profiles(ids)
        }
        transitions, rows = [], []
        segments = zip(*(values.columns[column].tolist() for column in present), strict=True)
        for customer, named in zip(ids, segments, strict=True):
            now = {
                c: None if is_missing(v) else str(v) for c, v in zip(present, named, strict=True)
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
        self._backend.put_segments(rows)
        return transitions

    # --- storage ------------------------------------------------------------------------------

    def _new_event_ids(self, ids: list[str]) -> list[str]:
        """The ids not seen before (the first of repeats in ``ids``), now recorded as seen."""
        fresh = self._backend.new_event_ids(ids)
        new = []
        for event in ids:
            if event in fresh:
                new.append(event)
                fresh.discard(event)
        return new

    def _apply(
        self, transactions: Columns, links: Columns
    ) -> tuple[list[Profile], dict[str, str], pd.Timestamp | None]:
        """Store the new transactions and links; recompute the profiles they change. The
        changed profiles (by id), old canonical id -> new for profiles that moved, and the
        store's last transaction now if there were new ones (else None)."""
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
        firsts: dict[str, int] = {}
        sources = transactions[CUSTOMER_ID].tolist()
        stamps = transactions[DATE].astype("datetime64[ns]").astype(np.int64)
        for alias, stamp in zip(sources, stamps.tolist(), strict=True):
            if stamp < firsts.get(alias, stamp + 1):
                firsts[alias] = stamp
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
        self._backend.put_aliases(
            [(alias, entry.customer, entry.first_ns) for alias, entry in entries.items()]
        )
        profiles = self._profiles({*merged, *merged.values()})
        for old, new in merged.items():
            moving = profiles.pop(old, None)
            if moving is not None:
                target = profiles.get(new)
                profiles[new] = moving.renamed(new) if target is None else target.merge(moving)
        canonical_of = {alias: entry.customer for alias, entry in stored.items()}
        canonical_of.update({alias: entry.customer for alias, entry in entries.items()})
        owner_list = [canonical_of.get(alias, alias) for alias in sources]
        missing = set(owner_list) - set(profiles)
        profiles.update(self._profiles(missing))
        amounts = (
            np.asarray(transactions[AMOUNT], dtype=float)
            if AMOUNT in transactions
            else np.full(len(transactions), np.nan)
        )
        # The new transactions in owner order, each owner's appended to its profile's.
        order = sorted(range(len(owner_list)), key=owner_list.__getitem__)
        invoices = transactions[INVOICE].tolist() if INVOICE in transactions else None
        covariates = (
            [
                list(row)
                for row in zip(
                    *(transactions[c].tolist() for c in self.model.covariates), strict=True
                )
            ]
            if self.model.covariates
            else None
        )
        positions = np.empty((3, len(order)), dtype=np.int32)
        for at, position in enumerate(order):
            owner = owner_list[position]
            profile = profiles.get(owner)
            if profile is None:
                profile = profiles[owner] = Profile.new(owner)
            positions[:, at] = (
                profile.position(sources[position]),
                listed_position(profile.invoices, invoices[position] if invoices else None),
                listed_position(profile.values, covariates[position] if covariates else None),
            )
        content = (
            np.asarray(transactions[CONTENT], dtype=np.uint64)[order]
            if CONTENT in transactions
            else 0
        )
        added = new_rows(
            stamps[order], amounts[order], positions[0], positions[1], positions[2], content
        ).tobytes()
        start = 0
        extended: set[str] = set()  # profiles whose new purchases only add days
        simple = self._fields.invoice is None and not merged
        for owner, group in itertools.groupby(owner_list[i] for i in order):
            end = start + sum(1 for _ in group) * ROW.itemsize
            profile = profiles[owner]
            if simple:
                days = appended_days(
                    profile.days,
                    unpack_rows(profile.rows),
                    unpack_rows(added[start:end]),
                    self._count_only,
                )
                if days is not None:
                    profile.days = days
                    extended.add(owner)
            profile.rows += added[start:end]
            start = end
        last = self._set_last(int(stamps.max())) if len(stamps) else None
        changed.update(owner_list)
        changed -= set(merged)
        clean_profiles(
            [profiles[c] for c in changed if c in profiles and c not in extended],
            self._policy,
            self._count_only,
            self._fields.invoice is not None,
        )
        self._backend.delete_profiles(merged)
        self._backend.put_profiles(
            [profile.record() for name, profile in profiles.items() if name not in merged]
        )
        return [profiles[c] for c in sorted(changed) if c in profiles], merged, last

    def _members(self, customers: list[str]) -> set[str]:
        """The linked ids whose canonical id is one of ``customers``."""
        return self._backend.members(customers)

    def _first_of(self, alias: str, stored: dict[str, _Alias]) -> int | None:
        """The first transaction of ``alias`` in the store (before this batch)."""
        entry = stored.get(alias) or self._aliases([alias]).get(alias)
        return self._first_ns(alias) if entry is None else entry.first_ns

    def _aliases(self, ids: Iterable[str]) -> dict[str, _Alias]:
        return {
            alias: _Alias(customer, first)
            for alias, (customer, first) in self._backend.aliases(map(str, ids)).items()
        }

    def _first_ns(self, alias: str) -> int | None:
        """The first transaction of an id not yet linked (its profile is its own)."""
        profile = self._profiles([alias]).get(alias)
        rows = unpack_rows(profile.rows if profile else None)
        return int(rows["ns"].min()) if len(rows) else None

    def _profiles(self, customers: Iterable[str]) -> dict[str, Profile]:
        """The stored profiles of ``customers`` (those that have one)."""
        return {
            record[0]: Profile.from_record(record) for record in self._backend.profiles(customers)
        }

    def _last_date(self) -> pd.Timestamp | None:
        last = self._backend.meta_value("last_ns")
        return None if last is None else pd.Timestamp(int(last))

    def _load_history(
        self, transactions: TransactionSource, cut: pd.Timestamp | None, identity_links: Any
    ) -> None:
        """Profiles of the history, built at once (vectorized): one record per customer."""
        in_frame = transactions.columns if isinstance(transactions, pd.DataFrame) else None
        frame, _ = read_canonical(transactions, **read_columns(self.model, in_frame))
        frame = frame[frame[CUSTOMER_ID].notna()]
        if cut is not None:
            frame = frame[frame[DATE] < day_after(cut)]
        frame = frame.reset_index(drop=True)
        aliases = frame[CUSTOMER_ID]
        owners = aliases
        if identity_links is not None:
            resolved, mapping, _ = resolve_identities(frame, read_links(identity_links))
            owners = resolved[CUSTOMER_ID]
            firsts = frame.groupby(CUSTOMER_ID)[DATE].min()
            self._backend.put_aliases(
                [
                    (str(alias), str(customer), _ns(firsts.get(alias)))
                    for alias, customer in zip(
                        mapping["source_id"], mapping[CUSTOMER_ID], strict=True
                    )
                ],
            )
        # One customer's rows together (each profile's transactions are one piece).
        codes, names = pd.factorize(owners, sort=True)
        by_owner = np.argsort(codes, kind="stable")
        codes = codes[by_owner]
        read = self._fields
        invoice = read.invoice if read.invoice in frame else None
        linked = identity_links is not None
        # The text columns (ids, invoices, covariate values) only when a profile lists them.
        listing = linked or invoice is not None or bool(read.covariates)
        table = (
            pd.DataFrame({CUSTOMER_ID: names[codes]})
            if listing
            else pd.DataFrame(index=pd.RangeIndex(len(codes)))
        )
        if linked:
            table[SOURCE_CUSTOMER_ID] = aliases.astype("string").to_numpy()[by_owner]
        if invoice is not None:
            table[INVOICE] = as_customer_ids(frame[invoice]).to_numpy()[by_owner]
        if read.covariates:  # each row's values as one key (JSON): None when all missing
            table["values"] = [
                None if all(is_missing(v) for v in row) else json.dumps([plain(v) for v in row])
                for row in frame[list(read.covariates)].iloc[by_owner].itertuples(index=False)
            ]
        content: np.ndarray | int = 0
        if read.content:
            other = [c for c in frame.columns if c not in (CUSTOMER_ID, DATE, AMOUNT)]
            content = np.asarray(
                [content_hash(record) for record in frame[other].to_dict("records")],
                dtype=np.uint64,
            )[by_owner]
        ids = (
            per_owner(table, SOURCE_CUSTOMER_ID, own=True)
            if linked
            else (np.zeros(len(table), dtype=np.int32), {})
        )
        invoices = per_owner(table, INVOICE) if invoice is not None else None
        values = per_owner(table, "values") if read.covariates else None
        rows = new_rows(
            frame[DATE].to_numpy(dtype="datetime64[ns]").astype(np.int64)[by_owner],
            np.nan if self._count_only else frame[AMOUNT].to_numpy(dtype=float)[by_owner],
            ids[0],
            -1 if invoices is None else invoices[0],
            -1 if values is None else values[0],
            content,
        )
        ranks = pd.factorize(table[SOURCE_CUSTOMER_ID], sort=True)[0] if linked else codes
        cancelled = None
        if invoice is not None:
            prefix = self._policy.cancellation_prefix
            cancelled = (
                table[INVOICE].astype("string").str.startswith(prefix).fillna(False).to_numpy()
                if prefix
                else np.zeros(len(table), dtype=bool)
            )
        day_owner, days = purchase_days(
            rows, codes, ranks, self._policy, self._count_only, cancelled
        )
        row_blobs = split_records(
            rows.tobytes(), ROW.itemsize, np.bincount(codes, minlength=len(names))
        )
        day_blobs = split_records(
            days.tobytes(), DAY.itemsize, np.bincount(day_owner, minlength=len(names))
        )
        listed = (
            set(ids[1]) | set(invoices[1] if invoices else ()) | set(values[1] if values else ())
        )
        customers = names.tolist()
        keys = [
            profile_keys(
                name,
                ids[1].get(name, [name]),
                invoices[1].get(name, []) if invoices else [],
                [json.loads(v) for v in values[1].get(name, [])] if values else [],
            )
            if name in listed
            else None
            for name in customers
        ]
        self._backend.put_profiles(
            zip(customers, keys, row_blobs, day_blobs, [None] * len(customers), strict=True)
        )
        if len(rows):
            self._set_last(int(rows["ns"].max()))

    def _set_last(self, ns: int) -> pd.Timestamp:
        """Record ``ns`` as the last transaction's instant if it is later; the last now."""
        last = self._last_date()
        if last is None or ns > last.value:
            self._backend.set_meta({"last_ns": str(ns)})
            return pd.Timestamp(ns)
        return last


def check_daily(model: CLVModel) -> None:
    """Raise a :class:`ConfigError` unless ``model`` works at daily resolution (time unit D,
    W or M): the store keeps purchase days, so it cannot score an hourly model as batch
    scoring would."""
    if resolution(model.time_unit)[0] != "D":
        raise ConfigError(
            f"model {model.name!r} has time_unit {model.time_unit!r} (hours): the profile "
            "store keeps purchase days and summarizes in whole days, so it cannot score an "
            "hourly model as clvlab.score does. Score it in batch (clvlab.score, `clvlab "
            "score`), or train the model for live profiles with time_unit D, W or M"
        )


def _ns(stamp: Any) -> int | None:
    return None if stamp is None or pd.isna(stamp) else int(pd.Timestamp(stamp).value)


def _policy(model: CLVModel) -> CleaningPolicy:
    """The model's cleaning policy as the store applies it: without an invoice column, no
    cancellation prefix (as batch scoring)."""
    policy = CleaningPolicy(**model.cleaning)
    if not model.columns.get("invoice"):
        policy = dataclasses.replace(policy, cancellation_prefix=None)
    return policy


def _first_of(ids: list[str], pending: set[str]) -> np.ndarray:
    """Which of ``ids`` are in ``pending``, each the first time only (taken out of it)."""
    mask = np.zeros(len(ids), dtype=bool)
    for position, event in enumerate(ids):
        if event in pending:
            mask[position] = True
            pending.remove(event)
    return mask


def _rank(first_ns: int | None, alias: str) -> tuple[int, str]:
    """Order of the ids of a group: the first transaction first, ties by id; no transaction
    last (the canonical id is the first)."""
    return (np.iinfo(np.int64).max if first_ns is None else first_ns, alias)
