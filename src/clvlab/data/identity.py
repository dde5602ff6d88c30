"""Identity resolution: map every transaction to one canonical customer id.

A customer is often seen under several identifiers (email, loyalty card, device). A table of
links, pairs of ids known to belong to the same person, joins them into groups (connected
components, so chains and cycles of links end in one group), and every id of a group is
replaced by the group's canonical id.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from clvlab.data.io import CUSTOMER_ID, DATE, as_customer_ids, load_table
from clvlab.data.validate import parse_dates, require_columns
from clvlab.errors import DataError

#: The canonical names of the two id columns of a links table (see :func:`read_links`).
LEFT, RIGHT = "id_a", "id_b"
#: The column of the resolved transactions that keeps the id each row was recorded under.
SOURCE_CUSTOMER_ID = "source_customer_id"
#: The column of the mapping table that holds an id seen in the links.
SOURCE_ID = "source_id"
#: The column of :func:`link_groups` that holds the key of an id's group.
GROUP_ID = "group_id"

LinkSource = str | Path | pd.DataFrame


@dataclass
class IdentityReport:
    """What identity resolution did: every link and every remapped row is counted."""

    links_read: int = 0
    """Rows of the links table."""
    links_missing_id: int = 0
    """Link rows with either id missing; they link nothing and are left out."""
    links_ignored: int = 0
    """Self-links (``a == b``) and pairs given more than once (in either order); harmless."""
    ids_linked: int = 0
    """Distinct ids appearing in the usable links."""
    groups: int = 0
    """Groups (connected components) of two or more ids."""
    customers_before: int = 0
    """Distinct customer ids in the transactions before resolution."""
    customers_after: int = 0
    """Distinct customer ids in the transactions after resolution."""
    transactions_remapped: int = 0
    """Transactions whose customer id changed."""

    def to_dict(self) -> dict[str, int]:
        """The report as a flat, JSON-friendly dict."""
        return asdict(self)


def read_links(source: LinkSource, *, left: str = LEFT, right: str = RIGHT) -> pd.DataFrame:
    """Read a table of identifier links.

    Parameters
    ----------
    source
        A CSV or Parquet file path, or a DataFrame. CSV ids are read as strings, never as
        numbers: ``"007"`` stays ``"007"``.
    left, right
        Names of the two columns of ``source`` that hold the linked ids.

    Returns
    -------
    pandas.DataFrame
        Columns ``id_a`` and ``id_b`` (string), one row per row of ``source`` in the order
        read, so that ``resolve_identities(transactions, read_links(...))`` needs no column
        names. Rows with a missing id are kept: :func:`resolve_identities` counts them in
        ``links_missing_id`` of its report, so none is lost unnoticed.

    Raises
    ------
    DataError
        If the file cannot be read or a link column is missing. The message names the
        columns wanted and the columns present.
    """
    frame, where = load_table(source, "links")
    id_a, id_b = _link_ids(frame, left, right, where)
    return pd.DataFrame({LEFT: id_a.array, RIGHT: id_b.array})


def resolve_identities(
    transactions: pd.DataFrame,
    links: pd.DataFrame,
    *,
    left: str = LEFT,
    right: str = RIGHT,
) -> tuple[pd.DataFrame, pd.DataFrame, IdentityReport]:
    """Replace every customer id by the canonical id of its group of linked ids.

    Links join ids into groups: a-b and b-c put a, b and c in one group, whatever the order
    or direction of the links. The canonical id of a group is the id with the earliest first
    transaction; ties go to the smallest id in string order, and so does a group none of
    whose ids has a transaction. The result does not depend on the order of the rows of
    either table. Ids are compared as strings and never stripped: ``"007"`` is not ``"7"``.

    Parameters
    ----------
    transactions
        Canonical transactions (see :func:`clvlab.read_transactions`): at least the columns
        ``customer_id`` and ``date``. Other columns are kept as they are.
    links
        Pairs of ids known to be the same customer, one pair a row (see :func:`read_links`).
        Ids may be missing from the transactions: they still join groups. Rows with a missing
        id, self-links and repeated pairs are counted in the report and otherwise ignored.
    left, right
        Names of the two columns of ``links`` that hold the linked ids.

    Returns
    -------
    (pandas.DataFrame, pandas.DataFrame, IdentityReport)
        The transactions, same rows, order and index, with ``customer_id`` (string) replaced
        by the canonical id and the id recorded kept in a new column ``source_customer_id``;
        the mapping table with columns ``source_id`` and ``customer_id``, one row per id
        appearing in the usable links, sorted by ``source_id``; and the report.

    Raises
    ------
    DataError
        If a column is missing from either table, the dates cannot be read as dates, or the
        transactions already have a ``source_customer_id`` column.
    """
    ids, dates = _transaction_ids(transactions)
    link_a, link_b = _link_ids(links, left, right, "links")
    graph = _link_graph(link_a, link_b)

    # Factorizing the linked ids first gives them codes 0..n-1, the same as in the graph;
    # one pass over the transactions is much faster than looking each row up in an index.
    codes, uniques = pd.factorize(pd.concat([pd.Series(graph.ids), ids], ignore_index=True))
    codes = codes[len(graph.ids) :]
    canonical = _canonical(graph.labels, _first_dates(codes, dates, len(graph.ids)))
    resolved = _remap(codes, canonical)

    out = transactions.assign(
        **{
            CUSTOMER_ID: uniques.array.take(resolved, allow_fill=True),
            SOURCE_CUSTOMER_ID: ids.array,
        }
    )
    mapping = pd.DataFrame(
        {SOURCE_ID: graph.ids.array, CUSTOMER_ID: graph.ids.array.take(canonical)}
    )
    report = IdentityReport(
        links_read=len(links),
        links_missing_id=graph.missing,
        links_ignored=graph.ignored,
        ids_linked=len(graph.ids),
        groups=int(np.count_nonzero(np.bincount(graph.labels) >= 2)),
        customers_before=_distinct(codes),
        customers_after=_distinct(resolved),
        transactions_remapped=int(np.count_nonzero(resolved != codes)),
    )
    return out, mapping, report


def link_groups(links: pd.DataFrame, *, left: str = LEFT, right: str = RIGHT) -> pd.DataFrame:
    """Each id of the usable links with a key of its group: the group's smallest id in string
    order, which depends on the links only.

    Splitting transactions by this key (and by the id itself for ids without links) keeps
    every group in one part, so resolving each part with :func:`resolve_identities` gives
    the same canonical ids as resolving them all at once.

    Returns
    -------
    pandas.DataFrame
        Columns ``source_id`` and ``group_id`` (string), sorted by ``source_id``.
    """
    id_a, id_b = _link_ids(links, left, right, "links")
    graph = _link_graph(id_a, id_b)
    # The ids are sorted, so the first id of each group is its smallest.
    first = pd.Series(np.arange(len(graph.ids))).groupby(graph.labels).transform("min")
    return pd.DataFrame(
        {SOURCE_ID: graph.ids.array, GROUP_ID: graph.ids.array.take(first.to_numpy())}
    )


class _LinkGraph(NamedTuple):
    ids: pd.Index  # every id of the usable links, sorted: position is string order
    labels: np.ndarray  # group (connected component) of each id
    missing: int
    ignored: int


def _link_graph(id_a: pd.Series, id_b: pd.Series) -> _LinkGraph:
    """Group the linked ids into connected components, counting the unusable links."""
    # Imported here: only identity links need them, and scipy.sparse takes a tenth of a
    # second to import in every process that reads data.
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    missing = id_a.isna().to_numpy() | id_b.isna().to_numpy()
    pairs = pd.concat([id_a[~missing], id_b[~missing]], ignore_index=True)
    codes, ids = pd.factorize(pairs, sort=True)
    code_a, code_b = np.split(codes, 2)
    edges = pd.DataFrame({"lo": np.minimum(code_a, code_b), "hi": np.maximum(code_a, code_b)})
    # Dropping repeated pairs also keeps the adjacency free of summed duplicate entries.
    useful = (code_a != code_b) & ~edges.duplicated().to_numpy()
    edges = edges[useful]
    adjacency = coo_matrix(
        (np.ones(len(edges), dtype=np.int8), (edges["lo"], edges["hi"])),
        shape=(len(ids), len(ids)),
    )
    _, labels = connected_components(adjacency, directed=False)
    return _LinkGraph(
        ids=ids,
        labels=labels,
        missing=int(missing.sum()),
        ignored=int(len(useful) - useful.sum()),
    )


def _first_dates(codes: np.ndarray, dates: pd.Series, n_linked: int) -> np.ndarray:
    """First transaction date of each linked id as sortable integers; none sorts last."""
    linked = (codes >= 0) & (codes < n_linked)
    first = (
        pd.Series(dates.to_numpy()[linked])
        .groupby(codes[linked])
        .min()  # skips NaT: an id whose dates are all missing ranks as if it had none
        .reindex(range(n_linked))
        .to_numpy()
    )
    return np.where(np.isnat(first), np.iinfo(np.int64).max, first.view(np.int64))


def _canonical(labels: np.ndarray, first_dates: np.ndarray) -> np.ndarray:
    """For each linked id, the position of its group's canonical id.

    Ids are numbered in string order, so sorting by (group, first date, number) puts each
    group's canonical id first.
    """
    if len(labels) == 0:
        return np.empty(0, dtype=np.intp)
    order = np.lexsort((np.arange(len(labels)), first_dates, labels))
    sorted_labels = labels[order]
    leads = np.ones(len(order), dtype=bool)
    leads[1:] = sorted_labels[1:] != sorted_labels[:-1]
    chosen = np.empty(sorted_labels[-1] + 1, dtype=np.intp)
    chosen[sorted_labels[leads]] = order[leads]
    return chosen[labels]


def _remap(codes: np.ndarray, canonical: np.ndarray) -> np.ndarray:
    """The codes of the transactions' ids after resolution; unlinked and missing ids stay."""
    linked = (codes >= 0) & (codes < len(canonical))
    resolved = codes.copy()
    resolved[linked] = canonical[codes[linked]]
    return resolved


def _distinct(codes: np.ndarray) -> int:
    """Number of distinct ids among factorized codes, a missing id (-1) not counted."""
    present = codes[codes >= 0]
    return int(np.count_nonzero(np.bincount(present))) if len(present) else 0


def check_transaction_columns(transactions: pd.DataFrame) -> None:
    """Raise a :class:`DataError` unless ``transactions`` (a table, or an empty one with a
    Spark DataFrame's columns) has the columns identity resolution reads and none it writes."""
    require_columns(transactions, {"customer id": CUSTOMER_ID, "date": DATE}, "transactions")
    if SOURCE_CUSTOMER_ID in transactions.columns:
        raise DataError(
            f"transactions: already have a column {SOURCE_CUSTOMER_ID!r}, which identity "
            "resolution would overwrite (were identities resolved twice?). Resolve the "
            f"original transactions, or rename or drop {SOURCE_CUSTOMER_ID!r}."
        )


def check_link_columns(frame: pd.DataFrame, left: str, right: str, where: str) -> None:
    """Raise a :class:`DataError` unless ``frame`` (a table, or an empty one with a Spark
    DataFrame's columns) has the two different link columns ``left`` and ``right``."""
    if left == right:
        raise DataError(
            f"{where}: the two link columns are both {left!r}; name two different columns "
            "with left= and right=."
        )
    require_columns(
        frame,
        {"left link id": left, "right link id": right},
        where,
        fix="Rename the columns, or give their names with left= and right= "
        "(e.g. left='email', right='loyalty_card').",
    )


def _transaction_ids(transactions: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """The customer ids (as strings) and dates of the transactions, checked."""
    check_transaction_columns(transactions)
    # Dates are only ranked here; the transactions keep their own date column untouched.
    dates = parse_dates(transactions[DATE], DATE, None, "transactions")
    return as_customer_ids(transactions[CUSTOMER_ID]), dates


def _link_ids(
    frame: pd.DataFrame, left: str, right: str, where: str
) -> tuple[pd.Series, pd.Series]:
    """The two id columns of a links table as strings; missing ids stay missing."""
    check_link_columns(frame, left, right, where)
    return as_customer_ids(frame[left]), as_customer_ids(frame[right])
