"""Batch scoring in hash partitions: the same table as ``score``, written atomically."""

from __future__ import annotations

import datetime as dt
import json
import stat

import numpy as np
import pandas as pd
import pytest

from clvlab import ClvlabWarning, CLVModel, DataError, score
from clvlab.batch import MANIFEST, SCAN_PARTITIONS, score_to_file
from clvlab.errors import ClvlabError
from clvlab.outputs import umask
from clvlab.scoring import ALL_EXCLUDED, NO_HISTORY, SCORE_COLUMNS

AS_OF = "1997-09-30"


@pytest.fixture(scope="module")
def model(sample_models):
    purchases, spend = sample_models
    return CLVModel(purchases=purchases, spend=spend, time_unit="W", version="batch-test")


@pytest.fixture(scope="module")
def transactions(cdnow_master):
    """CDNOW with what batch scoring must not lose: rows without an id, a customer whose only
    rows are returns (excluded by cleaning), customers whose first purchase is after AS_OF."""
    extra = pd.DataFrame(
        {
            "customer_id": [None, None, "refunds-only", "refunds-only"],
            "date": pd.to_datetime(["1997-03-01", "1997-04-01", "1997-02-01", "1997-02-02"]),
            "amount": [10.0, 20.0, -5.0, -7.0],
        }
    )
    frame = pd.concat([cdnow_master, extra], ignore_index=True)
    return frame.sample(frac=1.0, random_state=1).reset_index(drop=True)  # any row order


@pytest.fixture(scope="module")
def expected(model, transactions):
    with pytest.warns(UserWarning, match="2 transaction rows have no customer id"):
        return score(model, transactions, as_of=AS_OF)


def read_scores(path) -> pd.DataFrame:
    table = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path, dtype=str)
    return table.sort_values("customer_id").reset_index(drop=True)


def assert_same_scores(actual: pd.DataFrame, expected: pd.DataFrame) -> None:
    """Equal values; types as the file format keeps them."""
    expected = expected.astype({"reason": "string"}).reset_index(drop=True)
    actual = actual.astype({"reason": "string"})
    pd.testing.assert_frame_equal(actual, expected, check_dtype=False, rtol=1e-12)


@pytest.mark.parametrize(
    ("partition_rows", "parts"),
    [(30_000, 3), (6_000, 12), (10**9, 1)],
    ids=["scanned parts", "split parts", "one part"],
)
def test_parts_give_the_table_score_gives(
    model, transactions, expected, tmp_path, partition_rows, parts
):
    path = tmp_path / "scores.parquet"
    with pytest.warns(UserWarning, match="2 transaction rows have no customer id"):
        result = score_to_file(
            model, transactions, path, as_of=AS_OF, partition_rows=partition_rows, workers=2
        )
    assert result.partitions == parts
    assert SCAN_PARTITIONS < 12  # so the second case splits a copy of the source
    assert result.customers == len(expected) == transactions["customer_id"].nunique()
    assert_same_scores(read_scores(path), expected)
    # Every customer who got no scores is counted by reason, and every row in the report.
    assert result.reasons == {ALL_EXCLUDED: 1}
    assert result.data_report == expected.attrs["data_report"]
    assert result.data_report["excluded.missing_customer_id"] == 2
    if parts > 1:  # a folder of part files and a manifest; pandas reads it as one table
        assert path.is_dir() and len(result.files) == parts
        mask = umask()  # a shared output, readable as any file the user writes
        assert stat.S_IMODE(path.stat().st_mode) == 0o777 & ~mask
        assert stat.S_IMODE((path / MANIFEST).stat().st_mode) == 0o666 & ~mask
        manifest = json.loads((path / MANIFEST).read_text())
        assert manifest["customers"] == result.customers
        assert manifest["files"] == sorted(file.name for file in path.glob("part-*.parquet"))
    else:
        assert path.is_file() and result.files == [path]
    assert [p.name for p in tmp_path.iterdir()] == ["scores.parquet"]  # nothing left behind


def test_parquet_glob_and_csv_in_and_out(model, transactions, expected, tmp_path):
    folder = tmp_path / "tx"
    folder.mkdir()
    for number in range(3):
        transactions.iloc[number::3].to_parquet(folder / f"chunk-{number}.parquet")
    csv_in = tmp_path / "tx.csv"
    transactions.to_csv(csv_in, index=False)
    with pytest.warns(UserWarning):
        score_to_file(
            model, str(folder / "*.parquet"), tmp_path / "a.csv", as_of=AS_OF, partition_rows=25_000
        )
    with pytest.warns(UserWarning):
        score_to_file(model, csv_in, tmp_path / "b.parquet", as_of=AS_OF, partition_rows=25_000)
    from_csv_output = read_scores(tmp_path / "a.csv")
    assert list(from_csv_output.columns) == SCORE_COLUMNS
    assert len(from_csv_output) == len(expected)
    numbers = ["frequency", "T", "p_alive", "clv"]
    np.testing.assert_allclose(
        from_csv_output[numbers].astype(float), expected[numbers], rtol=1e-12
    )
    assert_same_scores(read_scores(tmp_path / "b.parquet"), expected)


def test_as_of_defaults_to_the_last_date_over_all_parts(model, transactions, tmp_path):
    complete = transactions.dropna(subset=["customer_id"])
    whole = score(model, complete)
    result = score_to_file(model, complete, tmp_path / "s.parquet", partition_rows=20_000)
    assert result.partitions == 4
    assert result.as_of == pd.Timestamp("1998-06-30")
    assert_same_scores(read_scores(tmp_path / "s.parquet"), whole)


def test_linked_ids_are_resolved_across_parts(model, cdnow_master, tmp_path):
    rng = np.random.default_rng(0)
    ids = cdnow_master["customer_id"].unique()
    pairs = rng.choice(ids, size=(400, 2), replace=False)
    links = pd.DataFrame({"id_a": pairs[:, 0], "id_b": pairs[:, 1]})
    links.loc[len(links)] = [pairs[0, 1], "never-bought"]  # an id without transactions
    expected = score(model, cdnow_master, as_of=AS_OF, identity_links=links)
    result = score_to_file(
        model,
        cdnow_master,
        tmp_path / "s.parquet",
        as_of=AS_OF,
        identity_links=links,
        partition_rows=15_000,
    )
    assert result.partitions == 5
    assert len(expected) == cdnow_master["customer_id"].nunique() - 400
    assert_same_scores(read_scores(tmp_path / "s.parquet"), expected)


def test_unscorable_customers_keep_a_row_with_the_reason(model, tmp_path):
    frame = pd.DataFrame(
        {
            "customer_id": ["a", "a", "b", "c", "d"],
            "date": ["1997-01-01", "1997-02-01", "1997-12-01", "1997-01-05", "1997-01-09"],
            "amount": [10.0, 12.0, 3.0, -4.0, 0.5],
        }
    )
    result = score_to_file(
        model, frame, tmp_path / "s.parquet", as_of="1997-06-30", partition_rows=2
    )
    table = read_scores(tmp_path / "s.parquet").set_index("customer_id")
    assert table["reason"].to_dict() == {"a": None, "b": NO_HISTORY, "c": ALL_EXCLUDED, "d": None}
    assert result.reasons == {NO_HISTORY: 1, ALL_EXCLUDED: 1} and result.unscored == 2
    assert table.loc[["b", "c"], "clv"].isna().all() and table.loc[["a", "d"], "clv"].notna().all()


def test_a_failure_leaves_the_old_output_and_no_partial_file(
    model, transactions, tmp_path, monkeypatch
):
    import clvlab.batch

    path = tmp_path / "scores.parquet"
    path.write_bytes(b"the previous scores")
    calls = []

    def fail_on_second_part(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("killed half-way")
        return score_prepared(*args, **kwargs)

    score_prepared = clvlab.batch.score_prepared
    monkeypatch.setattr(clvlab.batch, "score_prepared", fail_on_second_part)
    with pytest.raises(RuntimeError, match="killed half-way"):
        score_to_file(model, transactions, path, as_of=AS_OF, partition_rows=30_000, workers=1)
    assert path.read_bytes() == b"the previous scores"
    assert [p.name for p in tmp_path.iterdir()] == ["scores.parquet"]


def test_outputs_replace_each_other_but_not_foreign_folders(model, transactions, tmp_path):
    path = tmp_path / "scores.parquet"
    complete = transactions.dropna(subset=["customer_id"])
    score_to_file(model, complete, path, as_of=AS_OF, partition_rows=30_000)
    assert path.is_dir()
    score_to_file(model, complete, path, as_of=AS_OF)  # one part: a file replaces the folder
    assert path.is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["scores.parquet"]

    foreign = tmp_path / "mine.parquet"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(ClvlabError, match="a folder that clvlab did not write"):
        score_to_file(model, complete, foreign, as_of=AS_OF)
    with pytest.raises(ClvlabError, match=r"use a name ending in \.parquet or \.csv"):
        score_to_file(model, complete, tmp_path / "scores.txt", as_of=AS_OF)
    with pytest.raises(DataError, match="horizon_days must be a positive number"):
        score_to_file(model, complete, path, as_of=AS_OF, horizon_days=0)
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_missing_id_column_is_named(model, tmp_path):
    frame = pd.DataFrame({"client": ["a"], "date": ["1997-01-01"], "amount": [1.0]})
    with pytest.raises(DataError, match="customer_id"):
        score_to_file(model, frame, tmp_path / "s.parquet")
    assert not list(tmp_path.iterdir())


def test_progress_bar_only_when_asked(model, transactions, tmp_path, capsys):
    complete = transactions.dropna(subset=["customer_id"])
    score_to_file(model, complete, tmp_path / "a.parquet", as_of=AS_OF, partition_rows=30_000)
    assert capsys.readouterr().err == ""  # not a terminal
    score_to_file(
        model, complete, tmp_path / "b.parquet", as_of=AS_OF, partition_rows=30_000, progress=True
    )
    shown = capsys.readouterr().err
    assert "scoring: 100%" in shown and "3/3" in shown


def test_parts_without_rows_or_without_ids_are_skipped(model, tmp_path):
    frame = pd.DataFrame(
        {
            "customer_id": ["a", "a", "b", None, None, None],
            "date": ["1997-01-01", "1997-02-01", "1997-01-05"] + ["1997-01-09"] * 3,
            "amount": [10.0, 12.0, 3.0, 1.0, 2.0, 3.0],
        }
    )
    for rows in (1, 2):  # 6 and 3 parts: some get no row, one only rows without an id
        with pytest.warns(UserWarning, match="3 transaction rows have no customer id"):
            result = score_to_file(model, frame, tmp_path / "s.parquet", partition_rows=rows)
        assert result.customers == 2 and result.data_report["rows_read"] == 6
        with pytest.warns(UserWarning):
            assert_same_scores(read_scores(tmp_path / "s.parquet"), score(model, frame))
    no_ids = frame.assign(customer_id=None)
    for as_of in (None, AS_OF):
        with pytest.raises(DataError, match="no transactions with a customer id"):
            score_to_file(model, no_ids, tmp_path / "t.parquet", as_of=as_of, partition_rows=2)
    assert not (tmp_path / "t.parquet").exists()


def test_ids_read_alike_in_every_part(model, tmp_path):
    """Integer ids with missing values keep every digit (and their Int64 dtype); float ids are
    rendered as for the whole column, whichever part they land in."""
    big = 2**53 + 1  # not a float
    ids = pd.array([big, big - 1, big, None, 7, 7], dtype="Int64")
    dates = ["1997-01-01", "1997-01-02", "1997-03-01", "1997-01-01", "1997-01-04", "1997-02-04"]
    frame = pd.DataFrame({"customer_id": ids, "date": dates, "amount": 5.0})
    path = tmp_path / "tx.parquet"
    frame.to_parquet(path)
    for rows in (2, 10**6):
        with pytest.warns(UserWarning, match="1 transaction rows have no customer id"):
            score_to_file(model, path, tmp_path / "s.parquet", partition_rows=rows)
        written = read_scores(tmp_path / "s.parquet")
        assert written["customer_id"].dtype == "Int64"
        assert written["customer_id"].tolist() == [7, big - 1, big]
    with pytest.warns(UserWarning):
        assert score(model, path)["customer_id"].tolist() == [7, big - 1, big]

    floats = pd.DataFrame(
        {"customer_id": [1.0, 2.0, 2.5, 1.0], "date": dates[:4], "amount": [1.0, 2.0, 3.0, 4.0]}
    )
    expected = score(model, floats)
    assert sorted(expected["customer_id"]) == ["1.0", "2.0", "2.5"]
    score_to_file(model, floats, tmp_path / "f.parquet", partition_rows=1)
    assert_same_scores(read_scores(tmp_path / "f.parquet"), expected)


def test_output_beside_the_input_files_is_not_read_as_input(model, transactions, tmp_path):
    complete = transactions.dropna(subset=["customer_id"])
    for number in range(2):
        complete.iloc[number::2].to_parquet(tmp_path / f"tx-{number}.parquet")
    result = score_to_file(
        model, tmp_path, tmp_path / "scores.parquet", as_of=AS_OF, partition_rows=30_000
    )
    assert result.partitions == 3 and result.customers == complete["customer_id"].nunique()


def test_files_are_read_by_the_trained_column_names(sample_models, cdnow_sample, tmp_path):
    purchases, spend = sample_models
    model = CLVModel(
        purchases=purchases,
        spend=spend,
        time_unit="W",
        columns={"customer_id": "cid", "date": "day", "amount": "value"},
    )
    path = tmp_path / "canonical.parquet"
    cdnow_sample[["customer_id", "date", "amount"]].to_parquet(path)
    with pytest.raises(DataError, match="cid"):
        score(model, path)
    for rows in (1_000, 10**6):
        with pytest.raises(DataError, match="cid"):
            score_to_file(model, path, tmp_path / "s.parquet", partition_rows=rows)


def test_the_cli_default_is_the_librarys():
    from clvlab import batch, cli

    assert cli.DEFAULT_PARTITION_ROWS == batch.DEFAULT_PARTITION_ROWS


SMALL = pd.DataFrame(
    {
        "customer_id": ["a", "a", "b", "c", "d", "a"],
        "date": [f"1997-{day}" for day in ("01-01", "02-01", "12-01", "01-05", "01-09", "07-02")],
        "amount": [10.0, 12.0, 3.0, -4.0, 0.5, 8.0],
    }
)


def test_as_of_before_the_first_transaction_of_every_part_is_an_error(model, tmp_path):
    path = tmp_path / "s.parquet"
    for rows in (2, 100):  # 3 parts, 1 part
        with pytest.raises(
            DataError,
            match=r"as_of 1996-12-31 is before the first transaction "
            r"\(1997-01-01\)",
        ):
            score_to_file(model, SMALL, path, as_of="1996-12-31", partition_rows=rows)
        assert list(tmp_path.iterdir()) == []
    # Before some parts' first transaction only: their customers get the reason.
    result = score_to_file(model, SMALL, path, as_of="1997-01-01", partition_rows=2)
    assert result.partitions == 3 and result.reasons == {NO_HISTORY: 2, ALL_EXCLUDED: 1}


def test_rows_after_as_of_are_counted_over_all_parts(model, tmp_path):
    path = tmp_path / "s.parquet"
    result = score_to_file(model, SMALL, path, as_of="1997-06-30", partition_rows=2, workers=2)
    # 6 rows: c's return dropped; after 1997-06-30 a's 07-02 and b's 12-01; kept a's two
    # and d's one, of customers a and d.
    report = result.data_report
    assert result.partitions == 3 and report["rows_read"] == 6
    assert report["excluded.returns_dropped"] == 1 and report["excluded.after_as_of"] == 2
    assert report["rows_kept"] == 3 and report["customers"] == 2
    assert report["last_date"] == "1997-02-01 00:00:00"
    assert json.loads((path / MANIFEST).read_text())["data_report"] == report
    assert report == score(model, SMALL, as_of="1997-06-30").attrs["data_report"]


@pytest.mark.parametrize(
    ("as_of", "expected"),
    [
        ("1997-06-30", "1997-06-30"),
        ("1997-06-30T08:00+02:00", "1997-06-30 06:00"),
        (pd.Timestamp("1997-06-30 12:00"), "1997-06-30 12:00"),
        (dt.date(1997, 6, 30), "1997-06-30"),
    ],
)
def test_iso_dates_and_date_objects_are_taken(model, tmp_path, as_of, expected):
    result = score_to_file(model, SMALL, tmp_path / "s.csv", as_of=as_of, partition_rows=2)
    assert result.as_of == pd.Timestamp(expected)


@pytest.mark.parametrize("as_of", ["06/30/1997", "1997-6-30", "2", 2])
def test_other_dates_are_errors_before_anything_is_read_or_written(model, tmp_path, as_of):
    with pytest.raises(DataError, match=r"is not a date: give it as YYYY-MM-DD") as info:
        score_to_file(model, tmp_path / "none.csv", tmp_path / "s.parquet", as_of=as_of)
    assert str(info.value).startswith(f"as_of {as_of!r}")
    assert list(tmp_path.iterdir()) == []


def test_horizon_beyond_the_maximum_is_an_error(model, tmp_path):
    from clvlab.scoring import MAX_HORIZON_DAYS

    for days in (MAX_HORIZON_DAYS + 1, 1e9):
        with pytest.raises(DataError, match=f"at most {MAX_HORIZON_DAYS}"):
            score_to_file(model, SMALL, tmp_path / "s.parquet", horizon_days=days)
    assert list(tmp_path.iterdir()) == []


def test_columns_can_be_named_for_batch_scoring(model, tmp_path):
    expected = score(model, SMALL, as_of="1997-06-30")
    other = SMALL.rename(columns={"customer_id": "client", "date": "when", "amount": "paid"})
    other["when"] = pd.to_datetime(other["when"]).dt.strftime("%d.%m.%Y")
    source = tmp_path / "other.parquet"
    other.to_parquet(source)
    names = {"customer_id": "client", "date": "when", "amount": "paid", "date_format": "%d.%m.%Y"}
    for rows in (2, 100):
        path = tmp_path / f"s{rows}.parquet"
        score_to_file(model, source, path, as_of="1997-06-30", partition_rows=rows, **names)
        assert_same_scores(read_scores(path), expected)


# The clvlab score command: the same checks, exit status 2 and nothing written.


@pytest.fixture
def cli_files(model, tmp_path):
    """The model as a JSON file and SMALL as a CSV with other column names."""
    model.save(tmp_path / "model.json")
    other = SMALL.rename(columns={"customer_id": "client", "date": "when", "amount": "paid"})
    other["when"] = pd.to_datetime(other["when"]).dt.strftime("%d/%m/%Y")
    other.to_csv(tmp_path / "other.csv", index=False)
    SMALL.to_csv(tmp_path / "tx.csv", index=False)
    return tmp_path


def clvlab_score(folder, *args: str) -> int:
    from clvlab.cli import main

    model = str(folder / "model.json")
    return main(["score", "--model", model, "--output", str(folder / "out.parquet"), *args])


@pytest.mark.parametrize("as_of", ["01/02/1998", "1998-1-2", "2", "yesterday"])
def test_cli_rejects_dates_not_in_iso_8601(cli_files, capsys, as_of):
    tx = str(cli_files / "tx.csv")
    assert clvlab_score(cli_files, "--transactions", tx, "--as-of", as_of) == 2
    error = capsys.readouterr().err
    assert f"as_of {as_of!r} is not a date: give it as YYYY-MM-DD" in error
    assert not (cli_files / "out.parquet").exists()


def test_cli_as_of_before_the_data_horizon_and_future_dates(cli_files, capsys):
    tx = str(cli_files / "tx.csv")
    assert clvlab_score(cli_files, "--transactions", tx, "--as-of", "1996-01-01") == 2
    assert "before the first transaction (1997-01-01)" in capsys.readouterr().err
    assert clvlab_score(cli_files, "--transactions", tx, "--horizon", "1e9") == 2
    assert "at most 36525" in capsys.readouterr().err
    assert not (cli_files / "out.parquet").exists()
    future = str(dt.date.today() + dt.timedelta(days=30))
    with pytest.warns(ClvlabWarning, match=f"as_of {future} is after today"):
        assert clvlab_score(cli_files, "--transactions", tx, "--as-of", future) == 0


def test_cli_reports_rows_after_as_of(cli_files, capsys):
    tx = str(cli_files / "tx.csv")
    assert clvlab_score(cli_files, "--transactions", tx, "--as-of", "1997-06-30") == 0
    out = capsys.readouterr().out
    assert 'Rows excluded: {"excluded.returns_dropped": 1, "excluded.after_as_of": 2}' in out


def test_cli_names_the_columns(model, cli_files, capsys):
    other = str(cli_files / "other.csv")
    assert clvlab_score(cli_files, "--transactions", other) == 2
    error = capsys.readouterr().err
    assert "missing customer id column 'customer_id'" in error
    assert "clvlab score --customer-id COL --date COL --amount COL" in error
    assert not (cli_files / "out.parquet").exists()
    names = ["--customer-id", "client", "--date", "when", "--amount", "paid"]
    names += ["--date-format", "%d/%m/%Y", "--as-of", "1997-06-30"]
    assert clvlab_score(cli_files, "--transactions", other, *names) == 0
    expected = score(model, SMALL, as_of="1997-06-30")
    assert_same_scores(read_scores(cli_files / "out.parquet"), expected)


def test_the_cli_help_names_the_librarys_horizon_limit(capsys):
    from clvlab import cli
    from clvlab.scoring import MAX_HORIZON_DAYS

    with pytest.raises(SystemExit):
        cli.main(["score", "--help"])
    assert f"horizon in days, at most {MAX_HORIZON_DAYS}" in " ".join(
        capsys.readouterr().out.split()
    )


# Ids keep the type they came in (issue 14, item 5): in every part file, Parquet or CSV.

BIG = 2**53 + 1  # not a float
#: SMALL with int64 ids: a -> BIG, b -> 10 (only after as_of), c -> 9 (only a return), d -> 100.
INT_SMALL = SMALL.assign(customer_id=np.array([BIG, BIG, 10, 9, 100, BIG], dtype=np.int64))


@pytest.mark.parametrize("source", ["frame", "parquet"])
@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
@pytest.mark.parametrize("rows", [2, 100], ids=["3 parts", "1 part"])
def test_integer_ids_stay_integers_in_every_file(model, tmp_path, source, suffix, rows):
    transactions = INT_SMALL
    if source == "parquet":
        transactions = tmp_path / "tx.parquet"
        INT_SMALL.to_parquet(transactions)
    expected = score(model, INT_SMALL, as_of="1997-06-30")
    assert expected["customer_id"].tolist() == [9, 10, 100, BIG]
    path = tmp_path / f"scores{suffix}"
    result = score_to_file(model, transactions, path, as_of="1997-06-30", partition_rows=rows)
    assert result.partitions == (3 if rows == 2 else 1)
    if suffix == ".csv":
        written = pd.read_csv(path)  # pandas reads the ids back as integers, every digit
        assert written["customer_id"].dtype == "int64"
    else:
        for file in result.files:  # one dtype in every part, ids in numeric order in each
            ids = pd.read_parquet(file)["customer_id"]
            assert ids.dtype == "int64" and ids.is_monotonic_increasing
        if rows == 2:
            manifest = json.loads((path / MANIFEST).read_text())
            assert manifest["files"] == [file.name for file in result.files]
            assert manifest["customers"] == 4
        written = pd.read_parquet(path)
    written = written.sort_values("customer_id", ignore_index=True)
    assert written["customer_id"].tolist() == [9, 10, 100, BIG]
    assert written.merge(INT_SMALL, on="customer_id")["customer_id"].nunique() == 4
    assert_same_scores(written, expected)


def test_nullable_ids_stay_nullable_in_every_part(model, tmp_path):
    frame = INT_SMALL.assign(customer_id=pd.array([BIG, BIG, 10, None, 100, BIG], "Int64"))
    with pytest.warns(UserWarning, match="1 transaction rows have no customer id"):
        expected = score(model, frame, as_of="1997-06-30")
    assert expected["customer_id"].dtype == "Int64"
    path = tmp_path / "s.parquet"
    with pytest.warns(UserWarning, match="1 transaction rows have no customer id"):
        result = score_to_file(model, frame, path, as_of="1997-06-30", partition_rows=2)
    assert result.partitions == 3 and result.data_report["excluded.missing_customer_id"] == 1
    dtypes = {str(pd.read_parquet(file)["customer_id"].dtype) for file in result.files}
    assert dtypes == {"Int64"}
    assert_same_scores(read_scores(path), expected)


def test_linked_integer_ids_across_parts_keep_their_dtype(model, cdnow_master, tmp_path):
    numbered = cdnow_master.assign(customer_id=cdnow_master["customer_id"].astype("int64"))
    ids = numbered["customer_id"].unique()
    pairs = np.random.default_rng(0).choice(ids, size=(300, 2), replace=False)
    links = pd.DataFrame({"id_a": pairs[:, 0], "id_b": pairs[:, 1]})
    expected = score(model, numbered, as_of=AS_OF, identity_links=links)
    assert expected["customer_id"].dtype == "int64"
    assert expected["customer_id"].is_monotonic_increasing
    path = tmp_path / "s.parquet"
    result = score_to_file(
        model, numbered, path, as_of=AS_OF, identity_links=links, partition_rows=15_000
    )
    assert result.partitions == 5
    dtypes = {str(pd.read_parquet(file)["customer_id"].dtype) for file in result.files}
    assert dtypes == {"int64"}
    assert_same_scores(read_scores(path), expected)
