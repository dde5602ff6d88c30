"""Profile stores: events applied one batch at a time give the scores batch scoring gives on
all the transactions, whatever the order, repeats and identity links."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import clvlab
from clvlab import CLVModel, ConfigError, DataError, ProfileStore
from clvlab.profiles import EVENT_ID
from clvlab.scoring import ALL_EXCLUDED, NO_HISTORY, SCORE_COLUMNS

#: The columns compared with batch scoring (the others are text and compared exactly).
NUMBERS = [c for c in SCORE_COLUMNS if c not in ("customer_id", "model", "model_version", "reason")]


@pytest.fixture(scope="module")
def model(sample_models) -> CLVModel:
    """BG/NBD and Gamma-Gamma of the CDNOW sample, in weeks."""
    purchases, spend = sample_models
    return CLVModel(purchases, spend, time_unit="W")


@pytest.fixture(scope="module")
def events(cdnow_sample) -> pd.DataFrame:
    """The CDNOW sample's transactions as events with ids in the order of the rows."""
    return cdnow_sample.assign(**{EVENT_ID: [f"e{i:06d}" for i in range(len(cdnow_sample))]})


def batch_scores(model, events, as_of, links=None) -> pd.DataFrame:
    """clvlab.score of the events' transactions (in event id order) with the links."""
    transactions = events.sort_values(EVENT_ID)[["customer_id", "date", "amount"]]
    return clvlab.score(model, transactions, as_of=as_of, identity_links=links)


def assert_same_scores(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    got = got.sort_values("customer_id", ignore_index=True)
    expected = expected.sort_values("customer_id", ignore_index=True)
    assert got["customer_id"].tolist() == expected["customer_id"].astype(str).tolist()
    assert got["reason"].fillna("").tolist() == expected["reason"].fillna("").tolist()
    for column in NUMBERS:
        np.testing.assert_allclose(
            got[column].to_numpy(float), expected[column].to_numpy(float), rtol=1e-9, err_msg=column
        )
    assert (got["model"].to_numpy() == expected["model"].to_numpy()).all()


def test_replaying_cdnow_shuffled_and_repeated_equals_batch(model, events, tmp_path):
    store = ProfileStore.build(model, path=tmp_path / "profiles.db")
    rng = np.random.default_rng(7)
    order = rng.permutation(len(events))
    for chunk in np.array_split(order, 12):
        changed = store.apply(events.iloc[chunk])
        assert changed["customer_id"].is_unique
        assert set(changed["customer_id"]) == set(events.iloc[chunk]["customer_id"])
    again = store.apply(events.iloc[order[:500]])
    assert again.empty and again.attrs["ignored"] == 500 and again.attrs["applied"] == 0
    for as_of in ("1997-09-30", "1998-06-30"):
        assert_same_scores(store.scores(as_of=as_of), batch_scores(model, events, as_of))
    assert store.customers() == events["customer_id"].nunique()


def test_built_from_history_then_events_equals_batch(model, events, tmp_path):
    history = events[events["date"] <= "1997-06-30"]
    later = events[events["date"] > "1997-06-30"]
    store = ProfileStore.build(
        model, history.drop(columns=EVENT_ID), as_of="1997-06-30", path=tmp_path / "p.db"
    )
    assert_same_scores(store.scores(as_of="1997-06-30"), batch_scores(model, history, "1997-06-30"))
    store.apply(later)
    assert_same_scores(store.scores(as_of="1998-06-30"), batch_scores(model, events, "1998-06-30"))
    store.close()
    # Opened again, by another model: rescored from the stored profiles.
    other = dataclasses.replace(model, name="other", annual_discount_rate=0.2)
    with ProfileStore.open(tmp_path / "p.db", model=other) as reopened:
        assert_same_scores(
            reopened.scores(as_of="1998-06-30"), batch_scores(other, events, "1998-06-30")
        )


def late(customer: str, amounts_and_days: list[tuple[float, str]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            EVENT_ID: [f"{customer}-{i}" for i in range(len(amounts_and_days))],
            "customer_id": customer,
            "date": pd.to_datetime([day for _, day in amounts_and_days]),
            "amount": [amount for amount, _ in amounts_and_days],
        }
    )


def test_a_late_event_gives_the_profile_of_in_order_replay(model, tmp_path):
    events = late("a", [(10.0, "2020-01-01"), (20.0, "2020-01-05"), (5.0, "2020-01-03")])
    in_order = ProfileStore.build(model, path=tmp_path / "in-order.db")
    in_order.apply(events.sort_values("date"))
    shuffled = ProfileStore.build(model, path=tmp_path / "late.db")
    shuffled.apply(events.iloc[:2])
    row = shuffled.apply(events.iloc[2:]).iloc[0]
    # Three purchase days: two repeats, 26 days from the first to the last (in weeks).
    assert row["frequency"] == 2 and row["recency"] == pytest.approx(4 / 7)
    assert row["monetary_value"] == pytest.approx(12.5)
    assert_same_scores(shuffled.scores("2020-02-01"), in_order.scores("2020-02-01"))
    assert_same_scores(shuffled.scores("2020-02-01"), batch_scores(model, events, "2020-02-01"))


@pytest.mark.parametrize("returns", ["drop", "net"])
def test_returns_follow_the_models_cleaning_policy(model, tmp_path, returns):
    policy_model = dataclasses.replace(model, cleaning={"returns": returns})
    events = pd.concat(
        [
            late("a", [(10.0, "2020-01-01"), (30.0, "2020-01-05"), (-12.0, "2020-01-06")]),
            late("b", [(-5.0, "2020-01-02")]),  # only a return: every row excluded
        ]
    )
    store = ProfileStore.build(policy_model, path=tmp_path / "p.db")
    for _, event in events.iloc[::-1].iterrows():
        store.apply([event.to_dict()])
    scores = store.scores("2020-02-01").set_index("customer_id")
    expected = 30.0 - 12.0 if returns == "net" else 30.0
    assert scores.loc["a", "monetary_value"] == pytest.approx(expected)
    assert scores.loc["b", "reason"] == ALL_EXCLUDED
    assert_same_scores(store.scores("2020-02-01"), batch_scores(policy_model, events, "2020-02-01"))


def test_identity_links_merge_profiles_as_batch_resolution(model, events, tmp_path):
    links = pd.DataFrame({"id_a": ["1", "3", "10"], "id_b": ["2", "2", "11"]})
    store = ProfileStore.build(model, path=tmp_path / "p.db")
    store.apply(events)
    merged = store.link(links)
    # 1, 2 and 3 are one person, known by 1 (the earliest first purchase); 10 and 11 too.
    assert set(merged["customer_id"]) == {"1", "10"}
    assert merged.attrs["merged"] == {"2": "1", "3": "1", "11": "10"}
    assert_same_scores(store.scores("1998-06-30"), batch_scores(model, events, "1998-06-30", links))


def test_a_late_event_can_make_another_id_of_a_person_canonical(model, tmp_path):
    store = ProfileStore.build(model, path=tmp_path / "p.db")
    events = pd.concat([late("x", [(10.0, "2020-01-05")]), late("y", [(7.0, "2020-01-09")])])
    store.apply(events)
    store.apply([{EVENT_ID: "link-1", "id_a": "y", "id_b": "x"}])
    assert store.scores("2020-02-01")["customer_id"].tolist() == ["x"]
    earlier = late("y", [(3.0, "2020-01-01")]).assign(**{EVENT_ID: "y-early"})
    moved = store.apply(earlier)
    assert moved["customer_id"].tolist() == ["y"] and moved.attrs["merged"] == {"x": "y"}
    links = pd.DataFrame({"id_a": ["y"], "id_b": ["x"]})
    everything = pd.concat([events, earlier])
    assert_same_scores(
        store.scores("2020-02-01"), batch_scores(model, everything, "2020-02-01", links)
    )


def test_customers_with_only_later_events_have_no_history(model, tmp_path):
    store = ProfileStore.build(model, path=tmp_path / "p.db")
    store.apply(pd.concat([late("a", [(1.0, "2020-01-01")]), late("b", [(1.0, "2020-03-01")])]))
    scores = store.scores("2020-02-01").set_index("customer_id")
    assert scores.loc["b", "reason"] == NO_HISTORY and np.isnan(scores.loc["b", "clv"])


def test_bad_events_are_refused_naming_the_field_and_the_event(model, tmp_path):
    store = ProfileStore.build(model, path=tmp_path / "p.db")
    events = [
        {EVENT_ID: "ok", "customer_id": "a", "date": "2020-01-01", "amount": 3.0},
        {EVENT_ID: "no-customer", "date": "2020-01-01", "amount": 3.0},
        {EVENT_ID: "bad-date", "customer_id": "a", "date": "2020-02-30", "amount": 3.0},
        {EVENT_ID: "bad-amount", "customer_id": "a", "date": "2020-01-02", "amount": "three"},
        {"customer_id": "a", "date": "2020-01-02", "amount": 3.0},
    ]
    with pytest.raises(DataError) as refused:
        store.apply(events)
    message = str(refused.value)
    for expected in (
        "'no-customer'",
        "no customer_id",
        "'bad-date'",
        "'2020-02-30' is not a date",
        "'bad-amount'",
        "'three' is not a number",
        "no event_id",
    ):
        assert expected in message
    assert store.customers() == 0  # nothing applied
    applied = store.apply(events, on_error="skip")
    assert applied["customer_id"].tolist() == ["a"] and applied.attrs["applied"] == 1
    assert [item["event_id"] for item in applied.attrs["rejected"]] == [
        "no-customer",
        "bad-date",
        "bad-amount",
        None,
    ]


def test_a_store_of_another_format_or_policy_is_refused(model, tmp_path):
    path = tmp_path / "p.db"
    ProfileStore.build(model, path=path).close()
    with pytest.raises(DataError, match=r"cleans transactions otherwise.*rebuild"):
        ProfileStore.open(path, model=dataclasses.replace(model, cleaning={"returns": "net"}))
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE meta SET value = 'clvlab.ProfileStore/0' WHERE key = 'format'")
    with pytest.raises(DataError, match=r"rebuild it with ProfileStore\.build"):
        ProfileStore.open(path)
    with pytest.raises(DataError, match="exists"):
        ProfileStore.build(model, path=path)


def test_an_hourly_model_is_refused_naming_the_fix(model, events, tmp_path):
    """The store keeps purchase days, so it cannot score a model of time_unit H as batch
    scoring does (per hour): building or opening a store with one is a ConfigError, and no
    store is left behind."""
    hourly = dataclasses.replace(model, time_unit="H", name="bgnbd_gamma_gamma")
    path = tmp_path / "hourly.db"
    with pytest.raises(
        ConfigError, match=r"'bgnbd_gamma_gamma' has time_unit 'H' \(hours\)"
    ) as info:
        ProfileStore.build(hourly, events.head(20), path=path)
    assert "clvlab.score" in str(info.value) and "time_unit D, W or M" in str(info.value)
    assert not path.exists()
    daily = tmp_path / "daily.db"
    ProfileStore.build(model, events.head(20), path=daily).close()
    with pytest.raises(ConfigError, match="cannot score an hourly model"):
        ProfileStore.open(daily, model=hourly)
    with ProfileStore.open(daily) as store:  # the refused open left the store usable
        assert store.customers() > 0


# --- any stream of events: the store equals batch scoring ----------------------------------

CUSTOMERS = ["a", "b", "c", "d", "e"]


@st.composite
def streams(draw):
    """Transactions of a few customers over two months (returns and same-day purchases
    included), some identity links, and a way to deliver them: batches in any order with
    repeats."""
    n = draw(st.integers(1, 14))
    transactions = pd.DataFrame(
        {
            EVENT_ID: [f"t{i:02d}" for i in range(n)],
            "customer_id": draw(st.lists(st.sampled_from(CUSTOMERS), min_size=n, max_size=n)),
            "date": pd.Timestamp("2020-01-01")
            + pd.to_timedelta(
                draw(st.lists(st.integers(0, 24 * 60), min_size=n, max_size=n)), unit="h"
            ),
            "amount": draw(
                st.lists(
                    st.sampled_from([-20.0, -5.0, 0.0, 5.0, 12.5, 40.0]), min_size=n, max_size=n
                )
            ),
        }
    )
    pairs = draw(st.lists(st.tuples(*[st.sampled_from([*CUSTOMERS, "z"])] * 2), max_size=3))
    links = pd.DataFrame(
        {
            EVENT_ID: [f"l{i}" for i in range(len(pairs))],
            "id_a": [a for a, _ in pairs],
            "id_b": [b for _, b in pairs],
        }
    )
    events = [row.dropna().to_dict() for _, row in pd.concat([transactions, links]).iterrows()]
    order = draw(st.permutations(range(len(events))))
    repeats = draw(st.lists(st.integers(0, len(events) - 1), max_size=3))
    delivered = [events[i] for i in [*order, *repeats]]
    cuts = sorted(draw(st.lists(st.integers(0, len(delivered)), max_size=3)))
    batches = [delivered[i:j] for i, j in zip([0, *cuts], [*cuts, len(delivered)], strict=True)]
    returns = draw(st.sampled_from(["drop", "net"]))
    return transactions, links, [b for b in batches if b], returns


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(stream=streams())
def test_any_stream_of_events_equals_batch_scoring(model, tmp_path_factory, stream):
    transactions, links, batches, returns = stream
    policy_model = dataclasses.replace(model, cleaning={"returns": returns})
    store = ProfileStore.build(policy_model, path=tmp_path_factory.mktemp("s") / "p.db")
    as_of = "2020-02-15"
    for batch in batches:
        changed = store.apply(batch, as_of=as_of)
    try:
        expected = batch_scores(policy_model, transactions, as_of, links if len(links) else None)
    except DataError:  # batch refuses (nothing to score): so does the store
        with pytest.raises(DataError):
            store.scores(as_of)
        return
    everyone = store.scores(as_of)
    assert_same_scores(everyone, expected)
    # The last batch's changed customers: the rows of everyone's table.
    if len(changed):
        rows = everyone.set_index("customer_id").loc[changed["customer_id"]].reset_index()
        assert_same_scores(changed, rows)
    store.close()


# --- durability: a store killed while applying a stream -------------------------------------

APPLY_STREAM = """
import sys
import pandas as pd
from clvlab import CLVModel, ProfileStore
events = pd.read_parquet(sys.argv[2])
store = ProfileStore.build(CLVModel.load(sys.argv[1]), path=sys.argv[3])
for start in range(0, len(events), 25):
    store.apply(events.iloc[start : start + 25])
    print(start + 25, flush=True)  # acknowledged: every event up to here is applied
"""


def test_a_store_killed_while_applying_loses_no_acknowledged_event(model, events, tmp_path):
    """SIGKILL in the middle of a stream of batches (a real child process): after a restart
    every acknowledged event is there, none twice; replaying the whole stream applies only
    what was lost, and the scores equal batch scoring."""
    import signal
    import subprocess
    import sys

    model.save(tmp_path / "model.json")
    stream = events.iloc[np.random.default_rng(3).permutation(len(events))]
    stream.to_parquet(tmp_path / "events.parquet")
    path = tmp_path / "p.db"
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            APPLY_STREAM,
            tmp_path / "model.json",
            tmp_path / "events.parquet",
            path,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    acknowledged = 0
    while acknowledged < 1000:  # a good part of the stream, not all of it
        acknowledged = int(child.stdout.readline())
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL
    with ProfileStore.open(path) as store:
        seen = store.apply(stream.iloc[:acknowledged])
        assert seen.attrs["ignored"] == acknowledged and seen.attrs["applied"] == 0
        replayed = store.apply(stream)
        assert replayed.attrs["ignored"] + replayed.attrs["applied"] == len(stream)
        assert replayed.attrs["applied"] <= len(stream) - acknowledged
        assert_same_scores(store.scores("1998-06-30"), batch_scores(model, events, "1998-06-30"))


def test_events_are_read_as_transaction_files_are(model, tmp_path):
    """Dates with zones, datetime objects and numbers of any type: the events read alike on
    the quick path (small batches of plain dicts) and the general one."""
    import datetime as dt

    events = [
        {EVENT_ID: "1", "customer_id": "a", "date": "2020-01-01T23:30:00-02:00", "amount": 3},
        {EVENT_ID: "2", "customer_id": "a", "date": dt.datetime(2020, 1, 3, 12), "amount": 2.5},
        {EVENT_ID: "3", "customer_id": "b", "date": "2020-01-02", "amount": 1.0},
    ]
    quick = ProfileStore.build(model, path=tmp_path / "quick.db")
    quick.apply(events)
    general = ProfileStore.build(model, path=tmp_path / "general.db")
    general.apply(pd.DataFrame(events))
    assert_same_scores(quick.scores("2020-02-01"), general.scores("2020-02-01"))
    # 23:30 at UTC-2 is 01:30 UTC the next day: two purchase days for a.
    assert quick.customer("a")["purchase_days"] == [
        {"date": "2020-01-02", "amount": 3.0},
        {"date": "2020-01-03", "amount": 2.5},
    ]
    odd = [
        {EVENT_ID: "4", "customer_id": {"a": 1}, "date": "2020-01-02", "amount": 1.0},
        {EVENT_ID: "5", "customer_id": "a", "date": "2020-01-02", "amount": True},
        {EVENT_ID: "6", "customer_id": "a", "date": "2020-01-02", "amount": float("inf")},
        {EVENT_ID: "7", "customer_id": 17.5, "date": "2020-01-02", "amount": 1.0},
    ]
    rejected = quick.apply(odd, on_error="skip").attrs["rejected"]
    assert [item["event_id"] for item in rejected] == ["4", "5", "6", "7"]
    assert "is not an id" in rejected[0]["reason"] and "is not an id" in rejected[3]["reason"]


def test_transitions_start_from_the_segments_at_build(model, events, tmp_path):
    """A customer of the history who buys again reports the move from the segment they had
    when the store was built (the comeback a marketer acts on), not from nothing."""
    from clvlab.segments import fit_segment_rules

    history = events[events["date"] <= "1997-09-30"]
    rules = fit_segment_rules(
        clvlab.score(model, history.drop(columns=EVENT_ID), as_of="1997-09-30"),
        unit_days=model.unit_days,
        horizon_days=model.horizon_days,
    )
    segmented = dataclasses.replace(model, segments=rules)
    store = ProfileStore.build(
        segmented, history.drop(columns=EVENT_ID), as_of="1997-09-30", path=tmp_path / "p.db"
    )
    before = store.scores("1997-09-30").set_index("customer_id").loc["1"]
    event = {EVENT_ID: "x", "customer_id": "1", "date": "1997-10-01", "amount": 40.0}
    changed = store.apply([event])
    after = changed.set_index("customer_id").loc["1"]
    moves = {t["segment"]: (t["from"], t["to"]) for t in changed.attrs["transitions"]}
    for column in ("rfm_segment", "value_tier", "churn_tier"):
        if before[column] != after[column]:
            assert moves[column] == (before[column], after[column])
        else:
            assert column not in moves
    assert moves, "a purchase after months of silence moves the customer somewhere"


def test_an_as_of_before_every_purchase_is_an_error_as_in_batch(model, tmp_path):
    store = ProfileStore.build(model, path=tmp_path / "p.db")
    store.apply(late("a", [(5.0, "2020-03-01")]))
    with pytest.raises(DataError, match="before the first transaction"):
        store.scores("2020-02-01")
    with pytest.raises(DataError, match="before the first transaction"):
        batch_scores(model, late("a", [(5.0, "2020-03-01")]), "2020-02-01")


# --- Online Retail: invoices, cancellations, duplicates, quantity x price --------------------

ONLINE_RETAIL = Path(__file__).resolve().parents[2] / "shared" / "data" / "online_retail.parquet"


def test_online_retail_replayed_as_events_equals_batch(tmp_path):
    """A quarter of the customers of UCI Online Retail (about 100k invoice lines), half as
    history and half as shuffled events in batches, with the policy of
    configs/online_retail.yaml: lines merged by invoice, "C" invoices netted against the
    latest purchase, exact duplicates (judged on every field) and zero amounts dropped."""
    if not ONLINE_RETAIL.exists():
        pytest.skip(f"shared data not found at {ONLINE_RETAIL}")
    from clvlab import BetaGeo, GammaGamma
    from clvlab.config import load_config
    from clvlab.scoring import prepare

    config = load_config(Path(__file__).resolve().parents[1] / "configs" / "online_retail.yaml")
    lines = pd.read_parquet(ONLINE_RETAIL)
    lines = lines[lines["CustomerID"].notna() & (lines["CustomerID"] % 4 == 0)]
    columns = {
        role: getattr(config.data, role)
        for role in ("customer_id", "date", "quantity", "price", "invoice")
    }
    cleaning = dataclasses.asdict(config.cleaning)
    bare = CLVModel(BetaGeo(), GammaGamma(), time_unit="W", columns=columns, cleaning=cleaning)
    canonical = prepare(bare, lines).canonical
    summary = clvlab.rfm(canonical, "2011-12-09", freq="D", freq_multiplier=7)
    repeat = summary[(summary["frequency"] > 0) & (summary["monetary_value"] > 0)]
    model = dataclasses.replace(
        bare, purchases=BetaGeo().fit(summary), spend=GammaGamma().fit(repeat)
    )

    history = lines[lines["InvoiceDate"] < "2011-06-01"]
    later = lines[lines["InvoiceDate"] >= "2011-06-01"]
    store = ProfileStore.build(model, history, as_of="2011-05-31", path=tmp_path / "p.db")
    events = later.rename(columns={"CustomerID": "customer_id", "InvoiceDate": "date"})
    events = events.assign(**{EVENT_ID: [f"r{i}" for i in range(len(events))]})
    shuffled = events.sample(frac=1.0, random_state=5)
    for part in np.array_split(np.arange(len(shuffled)), 4):
        store.apply(shuffled.iloc[part])
    store.apply(shuffled.iloc[:1000])  # seen before: ignored
    # Batch scoring sees the lines in the order the store takes them (instant, then amount).
    ordered = lines.assign(_amount=lines["Quantity"] * lines["UnitPrice"]).sort_values(
        ["InvoiceDate", "_amount"], kind="stable"
    )
    expected = clvlab.score(model, ordered.drop(columns="_amount"), as_of="2011-12-09")
    assert_same_scores(store.scores("2011-12-09"), expected)
    assert expected["reason"].notna().any()  # customers with nothing but cancellations


@pytest.mark.parametrize("champion", ["gbm", "ensemble"])
def test_a_gbm_champion_reads_the_covariates_of_the_latest_purchase(
    sample_models, tmp_path, champion
):
    """A GBM with a static covariate (each customer's segment on their latest transaction)
    as the churn champion, alone or in an ensemble with BG/NBD and the historical formula:
    the store's scores equal batch scoring, the later half of the transactions applied as
    events (some customers change segment)."""
    import simulators
    from clvlab.features.windows import PurchaseDays, customer_covariates
    from clvlab.models.clv import TargetSource
    from clvlab.models.gbm import GBMPredictor

    transactions = simulators.simulate_transactions(np.random.default_rng(11), 600)
    # Some customers change segment halfway: their latest purchase says which.
    later = (transactions["date"] > transactions["date"].median()) & transactions[
        "customer_id"
    ].isin([f"c{i}" for i in range(0, 600, 5)])
    transactions.loc[later, "segment"] = transactions.loc[later, "segment"].map(
        {"A": "B", "B": "A"}
    )
    cutoff = transactions["date"].max().normalize() - pd.Timedelta(days=30)
    seen = transactions[transactions["date"] <= cutoff]
    gbm = GBMPredictor(90, unit_days=1.0, max_origins=2, learning_rate=0.3).fit(
        PurchaseDays.from_transactions(seen), cutoff, customer_covariates(seen, ["segment"])
    )
    purchases, spend = sample_models
    churn = TargetSource("gbm", purchases)
    if champion == "ensemble":
        members = ((churn, 0.5), (TargetSource("btyd", purchases), 0.3))
        members += ((TargetSource("historical", purchases), 0.2),)
        churn = TargetSource("ensemble", purchases, members)
    model = CLVModel(
        purchases,
        spend,
        time_unit="D",
        horizon_days=90,
        gbm=gbm,
        covariates=("segment",),
        sources={"churn": churn},
    )
    events = transactions.assign(**{EVENT_ID: [f"s{i:05d}" for i in range(len(transactions))]})
    half = len(events) // 2
    store = ProfileStore.build(
        model, events.iloc[:half].drop(columns=EVENT_ID), path=tmp_path / "p.db"
    )
    store.apply(events.iloc[half:].sample(frac=1.0, random_state=1))
    as_of = transactions["date"].max()
    got = store.scores(as_of)
    assert f"churn={churn.label('churn')}" in got["model"].iloc[0]
    assert_same_scores(got, clvlab.score(model, transactions, as_of=as_of))


def test_batches_applied_together_as_one_after_the_other(model, events, tmp_path):
    """apply_each (what the service does with requests that come while it is busy) leaves
    the store as applying the batches in turn, and tells each batch its own outcome."""
    history = events[events["date"] <= "1997-06-30"].drop(columns=EVENT_ID)
    later = events[events["date"] > "1997-06-30"].head(40).to_dict("records")
    for event in later:
        event["date"] = event["date"].isoformat()
    a, b, c = pd.unique(pd.Series([event["customer_id"] for event in later]))[:3]
    batches = [
        later[:5],
        [*later[5:9], later[0]],  # an event id of the first batch: ignored here
        [
            {"event_id": "link-1", "id_a": a, "id_b": b},  # two customers become one
            {"event_id": "link-2", "id_a": c, "id_b": c},  # a link that changes nothing
            {**later[9], "amount": "lots"},  # rejected
        ],
        [{**later[10], "event_id": "x1", "customer_id": c}],  # a customer of another batch
        later[11:40],
    ]
    one, together = (
        ProfileStore.build(model, history, as_of="1997-06-30", path=tmp_path / f"{name}.db")
        for name in ("one", "together")
    )
    in_turn = [one.apply(batch, on_error="skip", as_frame=False) for batch in batches]
    outcomes = together.apply_each(batches)
    final = together.scores().set_index("customer_id")
    assert_same_scores(together.scores(), one.scores())
    for alone, grouped in zip(in_turn, outcomes, strict=True):
        assert (grouped.applied, grouped.ignored) == (alone.applied, alone.ignored)
        assert grouped.rejected == alone.rejected
        # The same customers, by their canonical ids after the last batch (a link in a
        # later batch may have made two of them one).
        now = {together.customer(r["customer_id"])["customer_id"] for r in alone.scores}
        assert [r["customer_id"] for r in grouped.scores] == sorted(now)
        for row in grouped.scores:  # each as of after the last batch
            assert row["clv"] == pytest.approx(final.at[row["customer_id"], "clv"], rel=1e-12)
    assert outcomes[1].ignored == 1 and outcomes[2].rejected[0]["position"] == 2
    assert outcomes[2].merged == in_turn[2].merged and outcomes[2].merged
    with pytest.raises(DataError):  # a batch that cannot be read at all: nothing applied
        together.apply_each([later[:1], [{"no": "event id"}]])


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(
    old=st.lists(
        st.tuples(st.integers(0, 40), st.sampled_from([5.0, -5.0, 0.0, 7.25])), min_size=1
    ),
    new=st.lists(st.tuples(st.integers(1, 12), st.floats(0.5, 50.0)), min_size=1, max_size=4),
    values=st.lists(st.integers(-1, 2), min_size=5, max_size=5),
    count_only=st.booleans(),
)
def test_purchases_after_the_last_extend_the_days_as_cleaning_all_does(
    old, new, values, count_only
):
    """The shortcut for events after a profile's last purchase (a day added to or started)
    gives the purchase days cleaning every transaction again gives."""
    from clvlab.data.clean import CleaningPolicy
    from clvlab.profiles.history import appended_days, new_rows, purchase_days

    hours = 3_600 * 10**9
    old_ns = np.asarray([step * 7 * hours for step, _ in old])
    last = int(old_ns.max())
    new_ns = last + np.cumsum([step * 5 * hours for step, _ in new])
    rows = new_rows(
        np.concatenate([old_ns, new_ns]),
        np.asarray([a for _, a in old] + [a for _, a in new]),
        0,
        -1,
        np.resize(np.asarray(values), len(old) + len(new)),
    )
    policy = CleaningPolicy(duplicates="drop", zero_amounts="drop", returns="net")
    owner = np.zeros(len(rows), dtype=np.int64)
    cleaned = purchase_days(
        rows[: len(old)], owner[: len(old)], owner[: len(old)], policy, count_only
    )
    every = purchase_days(rows, owner, owner, policy, count_only)[1]
    got = appended_days(cleaned[1].tobytes(), rows[: len(old)], rows[len(old) :], count_only)
    if not len(cleaned[1]):
        assert got is None  # nothing to extend: cleaned whole
        return
    assert got == every.tobytes()  # to the bit (NaN values of count-only days included)
