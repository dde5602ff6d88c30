"""Identity resolution on Spark: the rule of :func:`clvlab.resolve_identities`, computed in
the cluster.

Links join ids into groups, the connected components of the graph whose edges they are. The
components are found by iterating two steps of Spark SQL, *large-star* and *small-star*
(Kiveris, Lattanzi, Mirrokni, Rastogi and Vassilvitskii, "Connected components in MapReduce
and beyond", SoCC 2014): each step re-points edges towards the smallest id it can see, which
keeps the components and turns each into a star around its smallest id in O(log² n) rounds
(10 for a chain of 1,500 ids in random order, measured), not one round per link. No GraphFrames:
it is a separate package (and jar) that a cluster may not have, and its connected components
run the same two steps.

The canonical id of a group is then chosen as locally: the id with the earliest first
transaction, ties (and groups without transactions) to the smallest id in string order.
Spark compares strings by their UTF-8 bytes, which is the order of their code points, as
Python's; ids are compared as strings, as :func:`clvlab.data.io.as_customer_ids` renders them.
"""

from __future__ import annotations

import pandas as pd
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import FractionalType

from clvlab.data.identity import (
    LEFT,
    RIGHT,
    SOURCE_CUSTOMER_ID,
    SOURCE_ID,
    IdentityReport,
    check_link_columns,
    check_transaction_columns,
)
from clvlab.data.io import CUSTOMER_ID, DATE
from clvlab.errors import DataError

#: The column of :func:`link_components` holding the smallest id of an id's component.
COMPONENT = "component"
#: Rounds of large-star and small-star after which :func:`link_components` gives up (their
#: number grows with the logarithm of the longest chain of links).
MAX_ROUNDS = 100


def text_ids(frame: DataFrame, name: str) -> Column:
    """The column ``name`` of ``frame`` as text ids, as :func:`clvlab.data.io.as_customer_ids`
    renders them: floating-point ids (integers stored so because of missing values) by their
    digits when every one is a whole number (17850.0 -> "17850"; one aggregation decides),
    else as Spark writes them; NaN is a missing id."""
    column = F.col(name)
    if not isinstance(frame.schema[name].dataType, FractionalType):
        return column.cast("string")
    present = column.isNotNull() & ~F.isnan(column)
    odd = frame.agg(
        F.count(F.when(present & ((F.floor(column) != column) | (F.abs(column) >= 1e38)), 1))
    ).first()
    as_text = column.cast("string") if odd is None or odd[0] else column.cast("decimal(38,0)")
    return F.when(present, as_text.cast("string"))


def link_components(links: DataFrame, *, left: str = LEFT, right: str = RIGHT) -> DataFrame:
    """Each id of the usable links (both ids present) with the smallest id (string order) of
    its connected component: columns ``source_id`` and ``component``.

    An id whose only link is to itself is its own component, as locally.
    """
    check_link_columns(_columns(links), left, right, "links")
    pairs = links.select(text_ids(links, left).alias("a"), text_ids(links, right).alias("b"))
    pairs = pairs.where(F.col("a").isNotNull() & F.col("b").isNotNull())
    nodes = pairs.select(F.col("a").alias(SOURCE_ID)).union(pairs.select("b")).distinct()
    edges = (
        pairs.where(F.col("a") != F.col("b"))
        .select(F.greatest("a", "b").alias("u"), F.least("a", "b").alias("v"))
        .distinct()
    )
    stars = _stars(edges)
    return (
        nodes.join(stars, nodes[SOURCE_ID] == stars["u"], "left")
        .select(SOURCE_ID, F.coalesce(F.col("v"), F.col(SOURCE_ID)).alias(COMPONENT))
        .orderBy(SOURCE_ID)
    )


def _stars(edges: DataFrame) -> DataFrame:
    """The edges ``(u, v)`` (``u > v``) re-pointed until every component is a star: each id
    but the component's smallest has one edge ``(id, smallest id)``. A round that changes
    nothing (same edges: count and checksum) ends it."""

    def fingerprint(frame: DataFrame) -> tuple[int, int]:
        row = frame.agg(F.count(F.lit(1)), F.sum(F.xxhash64("u", "v") % (1 << 40))).first()
        assert row is not None
        return int(row[0]), int(row[1] or 0)

    edges = edges.localCheckpoint()
    seen = fingerprint(edges)
    for _ in range(MAX_ROUNDS):
        edges = _small_star(_large_star(edges)).localCheckpoint()
        now = fingerprint(edges)
        if now == seen and _is_star_forest(edges):  # checked: a checksum could collide
            return edges
        seen = now
    raise DataError(
        f"identity links: the connected components did not settle in {MAX_ROUNDS} rounds "
        "of large-star and small-star; this should not happen, please report it"
    )


def _is_star_forest(edges: DataFrame) -> bool:
    """Whether every id has at most one edge ``(id, parent)`` and no parent has one."""
    parents = edges.groupBy("u").agg(F.count("v").alias("parents"))
    several = parents.where(F.col("parents") > 1).limit(1).count()
    chained = edges.join(parents.select(F.col("u").alias("v")), "v").limit(1).count()
    return not several and not chained


def _large_star(edges: DataFrame) -> DataFrame:
    """Large-star: each id's larger neighbours are linked to the smallest id of its
    neighbourhood (itself included)."""
    both = edges.union(edges.select(F.col("v").alias("u"), F.col("u").alias("v")))
    smallest = F.least(F.min("v").over(Window.partitionBy("u")), F.col("u"))
    return (
        both.select("u", "v", smallest.alias("m"))
        .where(F.col("v") > F.col("u"))
        .select(F.col("v").alias("u"), F.col("m").alias("v"))
        .distinct()
    )


def _small_star(edges: DataFrame) -> DataFrame:
    """Small-star: each id and its smaller neighbours are linked to the smallest of them."""
    with_smallest = edges.select("u", "v", F.min("v").over(Window.partitionBy("u")).alias("m"))
    linked = with_smallest.select(F.col("v").alias("u"), F.col("m").alias("v"))
    own = with_smallest.select("u", F.col("m").alias("v"))
    return linked.union(own).where(F.col("u") != F.col("v")).distinct()


def resolve_identities(
    transactions: DataFrame,
    links: DataFrame,
    *,
    left: str = LEFT,
    right: str = RIGHT,
) -> tuple[DataFrame, DataFrame, IdentityReport]:
    """:func:`clvlab.resolve_identities` on Spark DataFrames: every customer id replaced by
    the canonical id of its group of linked ids.

    Parameters
    ----------
    transactions
        Canonical transactions: at least ``customer_id`` and ``date`` (a timestamp or date);
        other columns are kept.
    links
        Pairs of ids known to be the same customer (columns ``left`` and ``right``).

    Returns
    -------
    (DataFrame, DataFrame, IdentityReport)
        The transactions with ``customer_id`` (text) replaced by the canonical id and the
        recorded id in ``source_customer_id``; the mapping (``source_id``, ``customer_id``)
        of every id in the usable links, sorted by ``source_id``; and the report, whose
        counts are those of the local function.

    Raises
    ------
    DataError
        A column is missing from either table, or the transactions already have a
        ``source_customer_id`` column.
    """
    check_transaction_columns(_columns(transactions))
    components = link_components(links, left=left, right=right).localCheckpoint()
    ids = text_ids(transactions, CUSTOMER_ID)
    recorded = transactions.withColumn(SOURCE_CUSTOMER_ID, ids)
    firsts = (
        recorded.where(F.col(SOURCE_CUSTOMER_ID).isNotNull())
        .groupBy(F.col(SOURCE_CUSTOMER_ID).alias(SOURCE_ID))
        .agg(F.min(DATE).alias("first"))
    )
    # Per component, the id with the earliest first transaction (none last), then the smallest.
    ranked = components.join(firsts, SOURCE_ID, "left")
    canonical = ranked.groupBy(COMPONENT).agg(
        F.min(F.struct(F.col("first").isNull().alias("none"), "first", SOURCE_ID))
        .getField(SOURCE_ID)
        .alias(CUSTOMER_ID)
    )
    mapping = (
        components.join(canonical, COMPONENT)
        .select(SOURCE_ID, CUSTOMER_ID)
        .orderBy(SOURCE_ID)
        .localCheckpoint()
    )
    lookup = mapping.select(
        F.col(SOURCE_ID).alias(SOURCE_CUSTOMER_ID), F.col(CUSTOMER_ID).alias("_canonical")
    )
    columns = [
        F.coalesce("_canonical", SOURCE_CUSTOMER_ID).alias(CUSTOMER_ID)
        if name == CUSTOMER_ID
        else F.col(name)
        for name in recorded.columns
    ]
    resolved = recorded.join(lookup, SOURCE_CUSTOMER_ID, "left").select(*columns)
    return resolved, mapping, _report(links, left, right, components, recorded, resolved)


def _report(
    links: DataFrame,
    left: str,
    right: str,
    components: DataFrame,
    recorded: DataFrame,
    resolved: DataFrame,
) -> IdentityReport:
    """The counts of :class:`IdentityReport`, as the local function makes them."""
    pairs = links.select(text_ids(links, left).alias("a"), text_ids(links, right).alias("b"))
    present = F.col("a").isNotNull() & F.col("b").isNotNull()
    link_counts = pairs.agg(
        F.count(F.lit(1)).alias("read"),
        F.count(F.when(~present, 1)).alias("missing"),
    ).first()
    assert link_counts is not None
    distinct_pairs = (
        pairs.where(present & (F.col("a") != F.col("b")))
        .select(F.least("a", "b"), F.greatest("a", "b"))
        .distinct()
        .count()
    )
    usable = link_counts["read"] - link_counts["missing"]
    sizes = components.groupBy(COMPONENT).count()
    id_counts = sizes.agg(
        F.sum("count").alias("ids"), F.count(F.when(F.col("count") >= 2, 1)).alias("groups")
    ).first()
    assert id_counts is not None
    counts = resolved.select(
        F.countDistinct(SOURCE_CUSTOMER_ID).alias("before"),
        F.countDistinct(CUSTOMER_ID).alias("after"),
        F.count(F.when(F.col(CUSTOMER_ID) != F.col(SOURCE_CUSTOMER_ID), 1)).alias("moved"),
    ).first()
    assert counts is not None
    return IdentityReport(
        links_read=int(link_counts["read"]),
        links_missing_id=int(link_counts["missing"]),
        links_ignored=int(usable - distinct_pairs),
        ids_linked=int(id_counts["ids"] or 0),
        groups=int(id_counts["groups"]),
        customers_before=int(counts["before"]),
        customers_after=int(counts["after"]),
        transactions_remapped=int(counts["moved"]),
    )


def _columns(frame: DataFrame) -> pd.DataFrame:
    """An empty table with ``frame``'s columns, for the local path's column checks."""
    return pd.DataFrame(columns=frame.columns)
