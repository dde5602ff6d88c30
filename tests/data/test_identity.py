import numpy as np
import pandas as pd
import pytest

from clvlab.data.identity import IdentityReport, read_links, resolve_identities
from clvlab.errors import DataError


def transactions(*rows: tuple[str, str]) -> pd.DataFrame:
    """Canonical transactions from (customer_id, date) pairs, with a distinct amount per row."""
    ids, dates = zip(*rows, strict=True) if rows else ((), ())
    return pd.DataFrame(
        {
            "customer_id": pd.array(ids, dtype="string"),
            "date": pd.to_datetime(list(dates)),
            "amount": np.arange(len(rows), dtype="float64"),
        }
    )


def links(*pairs: tuple[object, object]) -> pd.DataFrame:
    left, right = zip(*pairs, strict=True) if pairs else ((), ())
    return pd.DataFrame({"id_a": list(left), "id_b": list(right)}, dtype=object)


def as_dict(mapping: pd.DataFrame) -> dict[str, str]:
    return dict(zip(mapping["source_id"], mapping["customer_id"], strict=True))


# The hand example: a-b-c is a chain closed into a cycle by c-a, d-e joins an id without
# transactions, f-g has no transactions at all, x is unlinked; plus a self-link, a pair given
# again in reverse and verbatim, and a row with a missing id.
HAND_TX = transactions(
    ("a", "2021-03-01"),
    ("a", "2021-04-01"),
    ("b", "2021-01-15"),
    ("c", "2021-02-01"),
    ("x", "2021-01-01"),
    ("e", "2021-05-01"),
)
HAND_LINKS = links(
    ("a", "b"),
    ("b", "c"),
    ("c", "a"),
    ("d", "e"),
    ("e", "e"),
    ("b", "a"),
    ("a", "b"),
    (None, "a"),
    ("f", "g"),
)


def test_report_exact_for_hand_example():
    out, mapping, report = resolve_identities(HAND_TX, HAND_LINKS)
    assert report == IdentityReport(
        links_read=9,
        links_missing_id=1,
        links_ignored=3,  # e-e, b-a, the second a-b
        ids_linked=7,  # a b c d e f g
        groups=3,  # {a,b,c} {d,e} {f,g}
        customers_before=5,  # a b c x e
        customers_after=3,  # b x e
        transactions_remapped=3,  # two rows of a, one of c
    )
    assert report.to_dict() == {
        "links_read": 9,
        "links_missing_id": 1,
        "links_ignored": 3,
        "ids_linked": 7,
        "groups": 3,
        "customers_before": 5,
        "customers_after": 3,
        "transactions_remapped": 3,
    }
    # b has the earliest first transaction of {a,b,c}; e is the only one of {d,e} with any.
    assert out["customer_id"].tolist() == ["b", "b", "b", "b", "x", "e"]
    assert as_dict(mapping) == {
        "a": "b",
        "b": "b",
        "c": "b",
        "d": "e",
        "e": "e",
        "f": "f",
        "g": "f",
    }
    assert mapping["source_id"].tolist() == sorted(mapping["source_id"])


def test_nothing_dropped_and_source_customer_id_kept():
    tx = HAND_TX.set_index(pd.Index([10, 20, 30, 40, 50, 60]))
    out, _, _ = resolve_identities(tx, HAND_LINKS)
    assert len(out) == len(tx)
    assert list(out.columns) == ["customer_id", "date", "amount", "source_customer_id"]
    assert out.index.tolist() == tx.index.tolist()
    assert out["source_customer_id"].tolist() == tx["customer_id"].tolist()
    pd.testing.assert_series_equal(out["date"], tx["date"])
    pd.testing.assert_series_equal(out["amount"], tx["amount"])
    assert out["customer_id"].dtype == "string"
    assert tx.columns.tolist() == ["customer_id", "date", "amount"]  # input not modified


def test_chain_ends_in_one_group():
    tx = transactions(("a", "2021-01-04"), ("b", "2021-01-03"), ("c", "2021-01-02"))
    tx = pd.concat([tx, transactions(("d", "2021-01-01"))], ignore_index=True)
    out, mapping, report = resolve_identities(tx, links(("a", "b"), ("b", "c"), ("c", "d")))
    assert set(out["customer_id"]) == {"d"}
    assert as_dict(mapping) == dict.fromkeys("abcd", "d")
    assert (report.groups, report.customers_after, report.transactions_remapped) == (1, 1, 3)


def test_cycle_ends_in_one_group():
    tx = transactions(("a", "2021-01-02"), ("b", "2021-01-01"), ("c", "2021-01-03"))
    out, _, report = resolve_identities(tx, links(("a", "b"), ("b", "c"), ("c", "a")))
    assert out["customer_id"].tolist() == ["b", "b", "b"]
    assert (report.groups, report.links_ignored) == (1, 0)


def test_two_separate_groups_and_unlinked_customer():
    tx = transactions(
        ("a", "2021-01-02"),
        ("b", "2021-01-01"),
        ("p", "2021-01-01"),
        ("q", "2021-01-05"),
        ("z", "2020-01-01"),  # unlinked, and earlier than everyone: must not attract anyone
    )
    out, mapping, report = resolve_identities(tx, links(("a", "b"), ("q", "p")))
    assert out["customer_id"].tolist() == ["b", "b", "p", "p", "z"]
    assert "z" not in set(mapping["source_id"])
    assert (report.groups, report.customers_before, report.customers_after) == (2, 5, 3)


def test_self_link_and_duplicate_pairs_are_ignored_but_counted():
    tx = transactions(("a", "2021-01-01"), ("b", "2021-01-02"), ("s", "2021-01-03"))
    lk = links(("a", "b"), ("a", "b"), ("b", "a"), ("s", "s"), ("s", "s"))
    out, mapping, report = resolve_identities(tx, lk)
    assert report.links_ignored == 4  # two repeats of a-b, two self-links
    assert report.groups == 1  # s alone is not a group
    assert report.ids_linked == 3  # s appears in the links
    assert as_dict(mapping) == {"a": "a", "b": "a", "s": "s"}
    assert out["customer_id"].tolist() == ["a", "a", "s"]


def test_link_rows_with_a_missing_id_are_counted_not_used():
    tx = transactions(("a", "2021-01-01"), ("b", "2021-01-02"))
    lk = links(("a", None), (None, "b"), (None, None), (np.nan, "a"))
    out, mapping, report = resolve_identities(tx, lk)
    assert report.links_read == 4
    assert report.links_missing_id == 4
    assert report.ids_linked == 0
    assert out["customer_id"].tolist() == ["a", "b"]
    assert mapping.empty


def test_missing_ids_in_a_links_csv_reach_the_report(tmp_path):
    path = tmp_path / "links.csv"
    path.write_text("id_a,id_b\na,b\n,b\nc,\n")
    lk = read_links(path)
    assert len(lk) == 3  # read_links keeps them; resolve_identities counts them
    _, _, report = resolve_identities(transactions(("a", "2021-01-01")), lk)
    assert (report.links_read, report.links_missing_id, report.ids_linked) == (3, 2, 2)


def test_canonical_is_the_earliest_first_transaction_not_the_first_row_or_smallest_id():
    tx = transactions(
        ("a", "2021-06-01"),
        ("z", "2021-05-01"),
        ("a", "2021-07-01"),
        ("m", "2021-08-01"),
        ("z", "2021-09-01"),
    )
    out, _, _ = resolve_identities(tx, links(("a", "m"), ("m", "z")))
    assert set(out["customer_id"]) == {"z"}


def test_ties_go_to_the_smallest_id_in_string_order():
    # "10" < "9" as strings, though not as numbers.
    tx = transactions(("9", "2021-01-01"), ("10", "2021-01-01"), ("2", "2021-02-01"))
    out, _, _ = resolve_identities(tx, links(("9", "10"), ("10", "2")))
    assert set(out["customer_id"]) == {"10"}


def test_group_without_transactions_takes_its_smallest_id():
    tx = transactions(("x", "2021-01-01"))
    _, mapping, report = resolve_identities(tx, links(("q", "p"), ("p", "r")))
    assert as_dict(mapping) == {"p": "p", "q": "p", "r": "p"}
    assert report.transactions_remapped == 0


def test_id_with_transactions_wins_over_smaller_id_without():
    tx = transactions(("z", "2021-01-01"))
    out, mapping, _ = resolve_identities(tx, links(("a", "z")))
    assert as_dict(mapping) == {"a": "z", "z": "z"}
    assert out["customer_id"].tolist() == ["z"]


def test_ids_are_compared_as_strings_never_stripped(tmp_path):
    tx = transactions(("007", "2021-01-02"), ("7", "2021-01-01"), (" 8", "2021-01-01"))
    path = tmp_path / "links.csv"
    path.write_text("id_a,id_b\n007,x\n8,y\n")
    lk = read_links(path)
    assert lk["id_a"].tolist() == ["007", "8"]
    out, _, report = resolve_identities(tx, lk)
    # 007 links to x, which has no transactions, so 007 stays; 7 and " 8" are untouched.
    assert out["customer_id"].tolist() == ["007", "7", " 8"]
    assert report.transactions_remapped == 0
    # Integer ids in a links DataFrame match the string ids of the transactions.
    out, _, _ = resolve_identities(tx, pd.DataFrame({"id_a": [7], "id_b": [100]}))
    assert out["customer_id"].tolist() == ["007", "7", " 8"]
    out, _, _ = resolve_identities(tx, pd.DataFrame({"id_a": [7], "id_b": [7]}))
    assert out["customer_id"].tolist() == ["007", "7", " 8"]
    tx7 = transactions(("7", "2021-01-02"), ("100", "2021-01-01"))
    out, _, _ = resolve_identities(tx7, pd.DataFrame({"id_a": [7], "id_b": [100]}))
    assert out["customer_id"].tolist() == ["100", "100"]


def test_empty_links_leave_transactions_unchanged():
    out, mapping, report = resolve_identities(HAND_TX, links())
    assert out["customer_id"].tolist() == HAND_TX["customer_id"].tolist()
    assert out["source_customer_id"].tolist() == HAND_TX["customer_id"].tolist()
    assert mapping.empty
    assert list(mapping.columns) == ["source_id", "customer_id"]
    assert report == IdentityReport(customers_before=5, customers_after=5)


def test_missing_customer_ids_stay_missing():
    tx = transactions(("a", "2021-01-02"), ("b", "2021-01-01"))
    tx.loc[2] = [pd.NA, pd.Timestamp("2021-01-03"), 9.0]
    out, _, report = resolve_identities(tx, links(("a", "b")))
    assert out["customer_id"].tolist()[:2] == ["b", "b"]
    assert out["customer_id"].isna().tolist() == [False, False, True]
    assert (report.customers_before, report.customers_after) == (2, 1)


def test_result_does_not_depend_on_row_order():
    rng = np.random.default_rng(7)
    ids = np.char.add("u", rng.integers(0, 400, 3_000).astype(str))
    tx = pd.DataFrame(
        {
            "customer_id": pd.array(ids, dtype="string"),
            # Few distinct dates, so that ties between linked ids are common.
            "date": pd.Timestamp("2021-01-01") + pd.to_timedelta(rng.integers(0, 5, 3_000), "D"),
        }
    )
    lk = pd.DataFrame(
        {
            "id_a": np.char.add("u", rng.integers(0, 500, 300).astype(str)),
            "id_b": np.char.add("u", rng.integers(0, 500, 300).astype(str)),
        }
    )
    out, mapping, report = resolve_identities(tx, lk)
    assert report.groups > 10 and report.transactions_remapped > 100  # not a trivial case

    tx_shuffled = tx.sample(frac=1, random_state=1)
    # Shuffle the rows and swap the sides of every other link.
    lk_shuffled = lk.sample(frac=1, random_state=2).reset_index(drop=True)
    swap = lk_shuffled.index % 2 == 1
    lk_shuffled.loc[swap, ["id_a", "id_b"]] = lk_shuffled.loc[swap, ["id_b", "id_a"]].to_numpy()
    out2, mapping2, report2 = resolve_identities(tx_shuffled, lk_shuffled)

    pd.testing.assert_frame_equal(out2.sort_index(), out)
    pd.testing.assert_frame_equal(mapping2, mapping)
    assert report2 == report


def reference_resolution(tx: pd.DataFrame, lk: pd.DataFrame) -> dict[str, str]:
    """Union-find over the links, then the canonical id of each group by the stated rule."""
    parent: dict[str, str] = {}

    def find(node: str) -> str:
        root = node
        while parent[root] != root:
            root = parent[root]
        while parent[node] != root:
            parent[node], node = root, parent[node]
        return root

    for a, b in zip(lk["id_a"], lk["id_b"], strict=True):
        parent.setdefault(a, a)
        parent.setdefault(b, b)
        parent[find(a)] = find(b)

    first = tx.groupby("customer_id")["date"].min().to_dict()
    never = pd.Timestamp.max
    members: dict[str, list[str]] = {}
    for node in parent:
        members.setdefault(find(node), []).append(node)
    canonical = {}
    for group in members.values():
        chosen = min(group, key=lambda node: (first.get(node, never), node))
        canonical.update(dict.fromkeys(group, chosen))
    return canonical


def test_large_random_case_matches_union_find():
    rng = np.random.default_rng(2024)
    n_links, n_ids, n_tx = 200_000, 300_000, 400_000
    lk = pd.DataFrame(
        {
            "id_a": np.char.add("c", rng.integers(0, n_ids, n_links).astype(str)),
            "id_b": np.char.add("c", rng.integers(0, n_ids, n_links).astype(str)),
        }
    )
    tx = pd.DataFrame(
        {
            "customer_id": pd.array(
                np.char.add("c", rng.integers(0, n_ids // 2, n_tx).astype(str)), dtype="string"
            ),
            "date": pd.Timestamp("2020-01-01")
            + pd.to_timedelta(rng.integers(0, 700, n_tx), "D"),  # many ties
        }
    )
    out, mapping, report = resolve_identities(tx, lk)

    expected = reference_resolution(tx, lk)
    assert as_dict(mapping) == expected
    want = tx["customer_id"].map(lambda c: expected.get(c, c))
    assert out["customer_id"].tolist() == want.tolist()
    assert report.customers_before == tx["customer_id"].nunique()
    assert report.customers_after == out["customer_id"].nunique()
    assert report.transactions_remapped == int((want != tx["customer_id"]).sum())
    assert report.ids_linked == len(expected)
    assert report.groups == sum(size >= 2 for size in pd.Series(expected).value_counts().to_numpy())
    unordered = pd.DataFrame(np.sort(lk.to_numpy(), axis=1))
    self_links = int((lk["id_a"] == lk["id_b"]).sum())
    repeats = int(unordered[lk["id_a"] != lk["id_b"]].duplicated().sum())
    assert report.links_ignored == self_links + repeats


def test_missing_link_columns_name_them_and_list_the_columns():
    lk = pd.DataFrame({"email": ["a"], "card": ["b"]})
    with pytest.raises(
        DataError, match=r"missing left link id column 'id_a', right link id column 'id_b'"
    ) as info:
        resolve_identities(HAND_TX, lk)
    assert "['email', 'card']" in str(info.value)
    with pytest.raises(DataError, match=r"'card2'.*\['email', 'card'\]"):
        read_links(lk, left="email", right="card2")
    with pytest.raises(DataError, match="both 'email'"):
        read_links(lk, left="email", right="email")


def test_read_links_custom_names_and_parquet(tmp_path):
    frame = pd.DataFrame({"email": ["a@x", "b@x"], "card": ["0042", None], "other": [1, 2]})
    path = tmp_path / "links.parquet"
    frame.to_parquet(path)
    lk = read_links(path, left="email", right="card")
    assert list(lk.columns) == ["id_a", "id_b"]
    assert lk["id_a"].dtype == "string"
    assert lk["id_b"].tolist()[0] == "0042"
    assert lk["id_b"].isna().tolist() == [False, True]
    pd.testing.assert_frame_equal(read_links(frame, left="email", right="card"), lk)


def test_read_links_bad_sources(tmp_path):
    with pytest.raises(DataError, match="links file not found"):
        read_links(tmp_path / "nope.csv")
    path = tmp_path / "links.json"
    path.write_text("{}")
    with pytest.raises(DataError, match=r"unknown file type '\.json'"):
        read_links(path)


def test_transactions_problems_raise_data_error():
    out, _, _ = resolve_identities(HAND_TX, HAND_LINKS)
    with pytest.raises(DataError, match="already have a column 'source_customer_id'"):
        resolve_identities(out, HAND_LINKS)
    with pytest.raises(DataError, match="missing date column 'date'"):
        resolve_identities(HAND_TX.drop(columns="date"), HAND_LINKS)
    bad_dates = HAND_TX.assign(date=["2021-01-01", "nope", "2021-01-01", "x", "y", "z"])
    with pytest.raises(DataError, match="date column 'date'"):
        resolve_identities(bad_dates, HAND_LINKS)
