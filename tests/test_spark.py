"""clvlab.spark against the local path: the same RFM summaries and score tables on Spark.

One Spark session (``local[2]``) serves the whole file: starting one takes about 8 s.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import clvlab
import clvlab.spark
import spark_classes
from clvlab import ClvlabError, ClvlabWarning, CLVModel, DataError
from clvlab.cli import main
from clvlab.data.identity import resolve_identities
from clvlab.data.io import as_customer_ids
from clvlab.models.clv import fit_purchase_model
from clvlab.scoring import NO_HISTORY, score_columns
from clvlab.segments import SEGMENT_COLUMNS, fit_segment_rules
from clvlab.spark import resolve_identities as spark_resolve_identities
from clvlab.spark import runtime
from clvlab.spark.identity import text_ids
from clvlab.spark.statistics import sufficient_statistics
from clvlab.spark.training import training_data

pytestmark = [
    # pyspark 4.3 warns on every pandas conversion that pandas 3 is "not fully supported",
    # and its own code calls pandas APIs that pandas 3 deprecates; the tests below check the
    # conversions clvlab relies on instead.
    pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning"),
    pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning"),
]

#: Small and quiet: as many shuffle partitions as cores, no UI, no progress bars; the JVM
#: options of spark_classes (the quick compiler only; the classes mapped from the archive made
#: when the venv was set up).
CONF = {
    "spark.sql.shuffle.partitions": "2",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.log.level": "ERROR",
    "spark.sql.session.timeZone": "UTC",
    "spark.driver.extraJavaOptions": spark_classes.java_options(),
}


@pytest.fixture(scope="module")
def spark():
    """The file's Spark session; a clear failure (not a skip) when there is no Java 17."""
    try:
        runtime.check_java()
    except ClvlabError as exc:  # says how to install Java
        problem = str(exc)
    else:
        problem = ""
    if problem:
        pytest.fail(f"the Spark tests cannot start Spark: {problem}", pytrace=False)
    with pytest.MonkeyPatch.context() as patch:
        # Python workers run this interpreter, not `python3` from PATH (which may lack
        # pyarrow and clvlab).
        patch.setenv("PYSPARK_PYTHON", sys.executable)
        session = clvlab.spark.session("local[2]", app_name="clvlab-tests", conf=CONF)
    yield session
    session.stop()


@pytest.fixture(scope="module")
def master_on_spark(spark, cdnow_master):
    return spark.createDataFrame(cdnow_master).cache()


def _as_local(result, like: pd.DataFrame) -> pd.DataFrame:
    """A Spark summary as the local function's table: indexed by ``customer_id``, sorted."""
    table = result.toPandas().set_index("customer_id").sort_index()
    table.index = table.index.astype(like.index.dtype)
    return table


@pytest.mark.parametrize(
    ("freq", "freq_multiplier", "as_of", "amounts"),
    [
        ("D", 1, "1998-06-30", True),
        ("D", 7, "1997-09-30", True),  # weeks at daily resolution, as Fader, Hardie and Lee
        ("W", 1, "1998-03-04", True),  # a Wednesday: its whole week counts
        ("M", 1, "1997-12-15", True),  # mid-month: its whole month counts
        ("W", 1, None, False),  # count-only, as of the last transaction
    ],
)
def test_rfm_equals_the_local_summary_on_cdnow(
    master_on_spark, cdnow_master, freq, freq_multiplier, as_of, amounts
):
    local_tx = cdnow_master if amounts else cdnow_master.drop(columns="amount")
    spark_tx = master_on_spark if amounts else master_on_spark.drop("amount")
    local = clvlab.rfm(
        local_tx, as_of or cdnow_master["date"].max(), freq=freq, freq_multiplier=freq_multiplier
    )
    result = clvlab.spark.rfm(spark_tx, as_of, freq=freq, freq_multiplier=freq_multiplier)
    assert result.columns == ["customer_id", *local.columns]
    got = _as_local(result, local)
    # Counts and periods are the same divisions; only the sums of amounts may differ in the
    # last bits (compensated summation in DuckDB, plain in Spark).
    pd.testing.assert_frame_equal(got, local, check_exact=False, rtol=1e-12, atol=0)
    exact = ["frequency", "recency", "T"]
    pd.testing.assert_frame_equal(got[exact], local[exact], check_exact=True)


@pytest.mark.parametrize("freq", ["D", "W"])
def test_calibration_holdout_equals_the_local_one_on_cdnow(master_on_spark, cdnow_master, freq):
    local = clvlab.calibration_holdout(cdnow_master, "1997-09-30", "1998-06-30", freq=freq)
    result = clvlab.spark.calibration_holdout(
        master_on_spark, "1997-09-30", "1998-06-30", freq=freq
    )
    assert result.columns == ["customer_id", *local.columns]
    got = _as_local(result, local)
    pd.testing.assert_frame_equal(got, local, check_exact=False, rtol=1e-12, atol=0)


@pytest.mark.parametrize("freq", ["D", "W", "M"])
def test_rfm_equals_the_local_summary_on_online_retail(spark, online_retail_cleaned, freq):
    """Online Retail's purchases as cleaned by its config (netted invoices, with amounts
    that are sums of lines): the same summaries for days, weeks and months."""
    local_tx, on_spark = online_retail_cleaned
    local = clvlab.rfm(local_tx, "2011-12-09", freq=freq)
    got = _as_local(clvlab.spark.rfm(on_spark, "2011-12-09", freq=freq), local)
    assert len(got) == 4_324
    pd.testing.assert_frame_equal(got, local, check_exact=False, rtol=1e-12, atol=0)


@pytest.fixture(scope="module")
def online_retail_cleaned(spark):
    source = Path(__file__).parents[2] / "shared" / "data" / "online_retail.parquet"
    if not source.exists():
        pytest.skip(f"shared data not found at {source}")
    config = clvlab.load_config(Path(__file__).parents[1] / "configs" / "online_retail.yaml")
    transactions = clvlab.read_transactions(source, **config.data.columns())
    cleaned, _ = clvlab.clean_transactions(
        transactions, policy=config.cleaning, invoice=config.data.invoice, until="2011-12-09"
    )
    canonical = cleaned[["customer_id", "date", "amount"]]
    return canonical, spark.createDataFrame(canonical).cache()


#: Timestamped purchases around a cutoff, a missing amount, and a customer seen only after it.
TIMED = pd.DataFrame(
    {
        "customer_id": ["a", "a", "a", "a", "b", "b", "c"],
        "date": pd.to_datetime(
            [
                "2011-09-01 09:00",
                "2011-09-09 15:30",  # on the cutoff day, after midnight
                "2011-09-12 10:00",
                "2011-09-20 00:00",
                "2011-09-05 23:59:59.999999",
                "2011-09-09 23:59:59",
                "2011-09-15 08:00",
            ],
            format="ISO8601",
        ),
        "amount": [10.0, np.nan, 5.0, 7.5, 3.0, 4.0, 1.0],
    }
)


@pytest.mark.parametrize("cutoff", ["2011-09-09", "2011-09-09 12:00"])
def test_a_date_cutoff_covers_its_day_as_locally(spark, cutoff):
    """A date covers its whole day, a time only up to it; missing amounts are left out."""
    transactions = spark.createDataFrame(TIMED)
    local = clvlab.calibration_holdout(TIMED, cutoff, "2011-09-30", freq="D")
    got = _as_local(
        clvlab.spark.calibration_holdout(transactions, cutoff, "2011-09-30", freq="D"), local
    )
    pd.testing.assert_frame_equal(got, local, check_exact=False, rtol=1e-12, atol=0)
    assert local.loc["a", "frequency_cal"] == (1 if cutoff == "2011-09-09" else 0)
    local_rfm = clvlab.rfm(TIMED, cutoff, freq="W")
    got_rfm = _as_local(clvlab.spark.rfm(transactions, cutoff, freq="W"), local_rfm)
    pd.testing.assert_frame_equal(got_rfm, local_rfm, check_exact=False, rtol=1e-12, atol=0)


def test_bad_periods_and_cutoffs_are_data_errors(spark):
    transactions = spark.createDataFrame(TIMED)
    with pytest.raises(DataError, match="freq must be one of"):
        clvlab.spark.rfm(transactions, "2011-09-30", freq="Q")  # type: ignore[arg-type]
    with pytest.raises(DataError, match="must be after the cutoff"):
        clvlab.spark.calibration_holdout(transactions, "2011-09-30", "2011-09-01")
    with pytest.raises(DataError, match="no transactions on or before the calibration cutoff"):
        clvlab.spark.calibration_holdout(transactions, "2011-08-01", "2011-09-30")
    with pytest.raises(DataError, match=r"lack the column\(s\) \['date'\]"):
        clvlab.spark.rfm(transactions.drop("date"), "2011-09-30")


def test_hourly_periods_are_refused_naming_the_local_functions(spark):
    transactions = spark.createDataFrame(TIMED)
    with pytest.raises(DataError, match=r"freq 'H' \(hours\) is not supported on Spark") as info:
        clvlab.spark.rfm(transactions, "2011-09-30", freq="H")
    assert "clvlab.rfm" in str(info.value)
    with pytest.raises(DataError, match=r"not supported on Spark.*calibration_holdout"):
        clvlab.spark.calibration_holdout(transactions, "2011-09-09", "2011-09-30", freq="H")


@pytest.fixture(scope="module")
def model(sample_models, cdnow_sample) -> CLVModel:
    """BG/NBD and Gamma-Gamma of the CDNOW sample, in weeks, with segment rules."""
    purchases, spend = sample_models
    plain = CLVModel(purchases=purchases, spend=spend, time_unit="W", version="spark-test")
    rules = fit_segment_rules(
        clvlab.score(plain, cdnow_sample), unit_days=7, horizon_days=plain.horizon_days
    )
    return dataclasses.replace(plain, segments=rules)


def _scores_as_local(result, local: pd.DataFrame) -> pd.DataFrame:
    """A Spark score table as :func:`clvlab.score`'s: its dtypes (``toPandas`` gives the
    nullable segment scores as floats, text as ``str``), sorted by id as it is."""
    table = result.toPandas().astype(local.dtypes.to_dict())
    return table.sort_values("customer_id", ignore_index=True)


def test_scores_equal_the_local_ones_row_for_row(spark, model, cdnow_sample):
    # A customer whose only purchase is after as_of keeps a row, with the reason.
    late = pd.DataFrame(
        {
            "customer_id": ["late"],
            "date": [pd.Timestamp("1998-07-01 12:00")],
            "amount": [5.0],
            "n_cds": [1],
        }
    )
    transactions = pd.concat([cdnow_sample, late], ignore_index=True)
    # More partitions of customers than Spark's shuffle partitions: several to a task.
    result = clvlab.spark.score(
        model, spark.createDataFrame(transactions), as_of="1998-06-30", partitions=5
    )
    assert result.columns == score_columns(model)
    assert result.schema["customer_id"].dataType.typeName() == "string"
    local = clvlab.score(model, transactions, as_of="1998-06-30")
    got = _scores_as_local(result, local)
    pd.testing.assert_frame_equal(got, local, check_exact=True)
    row = got.set_index("customer_id").loc["late"]
    assert row["reason"] == NO_HISTORY and np.isnan(row["clv"])
    assert got["reason"].notna().sum() == 1
    assert row[SEGMENT_COLUMNS].isna().all()
    assert got[SEGMENT_COLUMNS].notna().sum().tolist() == [len(got) - 1] * len(SEGMENT_COLUMNS)


def test_an_hourly_model_scores_on_spark_as_locally(spark, model, cdnow_sample):
    """Spark scoring runs the local scoring on each partition, so a model of time_unit H
    scores per hour there too (its training, which counts days on Spark, is refused)."""
    hourly = dataclasses.replace(model, time_unit="H")
    minutes = np.random.default_rng(1).integers(0, 24 * 60, len(cdnow_sample))
    timed = cdnow_sample.assign(date=cdnow_sample["date"] + pd.to_timedelta(minutes, unit="min"))
    as_of = "1998-06-30T12:30"
    result = clvlab.spark.score(hourly, spark.createDataFrame(timed), as_of=as_of, partitions=3)
    local = clvlab.score(hourly, timed, as_of=as_of)
    pd.testing.assert_frame_equal(_scores_as_local(result, local), local, check_exact=True)
    hours = clvlab.rfm(timed, as_of, freq="H")
    assert local.set_index("customer_id")["T"].to_dict() == hours["T"].to_dict()


def test_as_of_defaults_to_the_last_date_and_integer_ids_stay_integers(
    spark, model, cdnow_sample, tmp_path
):
    """The model as a file, loaded on the driver; ids of a Spark long column come back as
    longs; with no as_of, every partition scores as of the last date of the whole data."""
    path = tmp_path / "clv_model.json"
    model.save(path)
    transactions = cdnow_sample.assign(customer_id=cdnow_sample["customer_id"].astype("int64"))
    transactions.loc[0, "date"] = pd.Timestamp("1998-07-02 10:00")  # one customer's last
    result = clvlab.spark.score(str(path), spark.createDataFrame(transactions), horizon_days=100)
    assert result.schema["customer_id"].dataType.typeName() == "long"
    local = clvlab.score(model, transactions, horizon_days=100)
    got = _scores_as_local(result, local)
    pd.testing.assert_frame_equal(got, local, check_exact=True)
    assert got["customer_id"].dtype == np.int64 and got["reason"].isna().all()


def test_bad_input_is_a_data_error_on_the_driver(spark, model):
    tx = pd.DataFrame(
        {
            "customer_id": ["a", "b", None],
            "date": pd.to_datetime(["1997-01-01", "1997-01-03", "1997-01-02"]),
            "amount": [1.0, 2.0, 3.0],
        }
    )
    transactions = spark.createDataFrame(tx)
    with pytest.warns(ClvlabWarning, match="1 transaction rows have no customer id"):
        table = clvlab.spark.score(model, transactions, as_of="1997-01-02").toPandas()
    assert sorted(table["customer_id"]) == ["a", "b"]
    with_ids = transactions.where("customer_id IS NOT NULL")
    with pytest.raises(DataError, match="before the first transaction"):
        clvlab.spark.score(model, with_ids, as_of="1996-12-31")
    with pytest.raises(DataError, match="missing amount column 'amount'"):
        clvlab.spark.score(model, with_ids.drop("amount"))
    with pytest.raises(DataError, match="partitions must be a positive whole number"):
        clvlab.spark.score(model, with_ids, partitions=0)
    with pytest.raises(DataError, match="no transactions with a customer id"):
        clvlab.spark.score(model, transactions.where("customer_id IS NULL"), as_of="1997-01-02")
    # Raised while cleaning on an executor (finding the last date), raised again here.
    unreadable = spark.createDataFrame(tx.assign(date=["1997-01-01", "soon", "1997-01-02"]))
    with pytest.raises(DataError, match="cannot be read as dates: row 0: 'soon'"):
        clvlab.spark.score(model, unreadable)


def test_the_conversions_clvlab_relies_on_round_trip(spark):
    """pandas 3 -> Spark -> pandas with pyspark 4.3: text ids (and missing ones), naive
    timestamps to the microsecond, missing amounts, 64-bit integer ids keep their values;
    the dtypes that change are the ones clvlab reads either way."""
    frame = pd.DataFrame(
        {
            "customer_id": pd.array(["007", None, "x y"], dtype="string"),
            "date": pd.to_datetime(
                ["1997-01-01", "1997-03-30 02:30:00.123456", "2038-01-19 03:14:08"],
                format="ISO8601",
            ),
            "amount": [1.5, np.nan, None],
            "number": np.array([2**53 + 1, -(2**63), 2**63 - 1], dtype=np.int64),
        }
    )
    on_spark = spark.createDataFrame(frame)
    back = on_spark.toPandas()
    types = on_spark.schema
    assert [field.dataType.typeName() for field in types] == [
        "string",
        "timestamp",
        "double",
        "long",
    ]
    assert back["customer_id"].tolist()[0::2] == ["007", "x y"]
    assert back["customer_id"].isna().tolist() == [False, True, False]
    assert pd.api.types.is_string_dtype(back["customer_id"])  # `str`, NaN for missing
    assert back["date"].dtype.kind == "M" and back["date"].dt.tz is None
    assert back["date"].tolist() == frame["date"].tolist()
    assert back["amount"].isna().tolist() == [False, True, True]
    assert back["number"].dtype == np.int64 and back["number"].tolist() == frame["number"].tolist()
    # A nullable integer column comes back as floats (pyspark's toPandas): clvlab.spark.score
    # never hands the local code such ids (rows without an id are filtered first).
    nullable = spark.createDataFrame(pd.DataFrame({"id": pd.array([1, None], dtype="Int64")}))
    assert nullable.schema["id"].dataType.typeName() == "long"
    assert nullable.toPandas()["id"].dtype == np.float64


def test_no_java_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", "")
    with pytest.raises(ClvlabError, match=r"Java 17 or later \(no java on PATH\): install a JDK"):
        runtime.check_java()


# --- identity resolution -------------------------------------------------------------------


def _spark_links(spark, links: pd.DataFrame):
    """``links`` (text ids, some missing) as a Spark DataFrame."""
    return spark.createDataFrame(links.astype(object).where(links.notna(), None))


def test_identity_resolution_equals_the_local_union_find(spark, cdnow_sample):
    """Random links between CDNOW customers, with ids that never bought, a self-link, a pair
    given twice (reversed), a link with a missing id, a chain through 60 customers and two
    chains of 200 ids that never bought, all linked in random order (their smallest ids far
    from either end): the same canonical ids, mapping and report as
    :func:`clvlab.resolve_identities` (union-find), after a few rounds, not 200."""
    rng = np.random.default_rng(5)
    ids = cdnow_sample["customer_id"].unique()
    chains = [
        [*rng.permutation(ids[:60]), "never-bought-1", "never-bought-2"],
        *(rng.permutation([f"{name}{i:03d}" for i in range(200)]).tolist() for name in "ab"),
    ]
    links = pd.DataFrame(
        {
            "id_a": [*rng.choice(ids, 150), *(i for c in chains for i in c[:-1]), "5", None, "7"],
            "id_b": [*rng.choice(ids, 150), *(i for c in chains for i in c[1:]), "5", "9", "8"],
        },
        dtype="string",
    )
    links = pd.concat([links, links.iloc[[-1]].set_axis(["id_b", "id_a"], axis=1)])
    local, local_mapping, local_report = resolve_identities(cdnow_sample, links)
    transactions = spark.createDataFrame(cdnow_sample)
    resolved, mapping, report = spark_resolve_identities(transactions, _spark_links(spark, links))

    assert report == local_report
    assert report.groups > 10 and report.links_ignored == 2 and report.links_missing_id == 1
    spark_mapping = mapping.toPandas()
    pd.testing.assert_frame_equal(spark_mapping, local_mapping.astype(object), check_dtype=False)
    assert set(spark_mapping["customer_id"]) >= {"a000", "b000"}
    order = ["source_customer_id", "date", "amount"]
    theirs = local.sort_values(order).reset_index(drop=True)
    ours = resolved.toPandas().sort_values(order).reset_index(drop=True)
    assert ours.columns.tolist() == theirs.columns.tolist()
    assert ours["customer_id"].tolist() == theirs["customer_id"].tolist()


def test_float_ids_are_read_as_the_local_path_reads_them(spark):
    """Ids stored as floating point (integers with missing values): whole numbers by their
    digits, NaN a missing id, as :func:`clvlab.data.io.as_customer_ids`; with one fraction
    among them, every id as the number it is."""
    ids = pd.DataFrame({"whole": [17850.0, 2.0, np.nan], "mixed": [17850.0, 2.5, np.nan]})
    frame = spark.createDataFrame(ids)
    got = frame.select(*(text_ids(frame, name).alias(name) for name in ids)).toPandas()
    for column in ids:
        expected = as_customer_ids(ids[column])
        assert got[column].tolist()[:2] == expected.tolist()[:2]
        assert got[column].isna().tolist() == expected.isna().tolist() == [False, False, True]


def test_the_command_line_scores_on_spark_into_a_whole_parquet_folder(
    spark, model, cdnow_sample, tmp_path, capsys
):
    """``clvlab score --engine spark`` (in this process, on this file's session): the table
    clvlab.score gives, as a Parquet folder put in place whole; a run that fails leaves the
    previous output as it was, and no temporary folder."""
    model_file = tmp_path / "clv_model.json"
    model.save(model_file)
    cdnow_sample.to_parquet(tmp_path / "tx.parquet")
    output = tmp_path / "scores.parquet"
    command = ["score", "--engine", "spark", "--model", str(model_file), "--as-of", "1998-06-30"]
    into = ["--output", str(output)]
    assert main([*command, "--transactions", str(tmp_path / "tx.parquet"), *into]) == 0
    assert "Scored 2,357 customers (0 could not be scored) on Spark" in capsys.readouterr().out
    local = clvlab.score(model, cdnow_sample, as_of="1998-06-30")
    written = pd.read_parquet(output).astype(local.dtypes.to_dict())
    pd.testing.assert_frame_equal(written.sort_values("customer_id", ignore_index=True), local)
    before = sorted(path.name for path in output.iterdir())
    assert main([*command, "--transactions", str(tmp_path / "none.parquet"), *into]) == 2
    assert "none.parquet' cannot be read: [PATH_NOT_FOUND]" in capsys.readouterr().err
    # A date no one can read, found by a partition while the output is being written.
    spoiled = cdnow_sample.astype({"date": str})
    spoiled.loc[5, "date"] = "soon"
    spoiled.to_csv(tmp_path / "spoiled.csv", index=False)
    assert main([*command, "--transactions", str(tmp_path / "spoiled.csv"), *into]) == 2
    assert "cannot be read as dates" in capsys.readouterr().err
    assert sorted(path.name for path in output.iterdir()) == before
    assert {path.name for path in tmp_path.iterdir()} == {
        "clv_model.json",
        "scores.parquet",
        "spoiled.csv",
        "tx.parquet",
    }


def test_identity_links_and_other_column_names_score_as_locally(
    spark, model, cdnow_sample, tmp_path, capsys
):
    """``clvlab score --engine spark --identity-links ... --customer-id ... --date ...
    --amount ...`` on integer ids: the table clvlab.score gives with the same links and
    names, one row per person, ids still integers."""
    ids = cdnow_sample["customer_id"].unique()
    pd.DataFrame({"id_a": ids[:60:2], "id_b": ids[1:60:2]}).to_csv(tmp_path / "links.csv")
    renamed = cdnow_sample.rename(columns={"customer_id": "cust", "date": "when"})
    renamed.assign(cust=renamed["cust"].astype("int64")).to_parquet(tmp_path / "tx.parquet")
    names = {"customer_id": "cust", "date": "when", "amount": "amount"}
    local = clvlab.score(
        model,
        tmp_path / "tx.parquet",
        as_of="1998-06-30",
        identity_links=tmp_path / "links.csv",
        **names,
    )
    assert len(local) == 2_357 - 30 and local["customer_id"].dtype == "int64"
    output = tmp_path / "scores.parquet"
    command = ["score", "--engine", "spark", "--model", str(tmp_path / "clv_model.json")]
    model.save(tmp_path / "clv_model.json")
    options = ["--customer-id", "cust", "--date", "when", "--amount", "amount"]
    links = ["--identity-links", str(tmp_path / "links.csv"), "--as-of", "1998-06-30"]
    transactions = ["--transactions", str(tmp_path / "tx.parquet"), "--output", str(output)]
    assert main([*command, *options, *links, *transactions]) == 0
    assert "Scored 2,327 customers (0 could not be scored)" in capsys.readouterr().out
    written = pd.read_parquet(output).sort_values("customer_id", ignore_index=True)
    pd.testing.assert_frame_equal(written.astype(local.dtypes.to_dict()), local)
    assert written["customer_id"].dtype == "int64"


# --- reading and cleaning ------------------------------------------------------------------

#: Invoice lines of a small shop, as a CSV gives them (text): lines of one invoice, an exact
#: duplicate, a free sample, cancellations ("C...") netted against earlier purchases (one in
#: full, one with nothing before it), two purchases at one minute (the return nets against
#: the later line of the file, as locally), a line without a customer, one after the end.
SHOP_LINES = [
    ("1", "a", "2021-01-01 10:00", "2", "5.0", "UK"),
    ("1", "a", "2021-01-01 10:00", "1", "4.5", "UK"),
    ("1", "a", "2021-01-01 10:00", "1", "4.5", "UK"),
    ("2", "a", "2021-01-05 09:30", "3", "0", "UK"),
    ("3", "a", "2021-01-08 12:00", "1", "30.0", "UK"),
    ("C4", "a", "2021-01-09 12:00", "-1", "10.0", "UK"),
    ("5", "b", "2021-01-02 12:00", "2", "4.0", "FR"),
    ("C6", "b", "2021-01-03 12:00", "-2", "4.0", "FR"),
    ("7", "c", "2021-01-01 08:00", "1", "7.0", "DE"),
    ("8", "c", "2021-01-01 08:00", "2", "3.0", "DE"),
    ("C9", "c", "2021-01-01 08:00", "-1", "3.0", "DE"),
    ("C10", "d", "2021-01-01 08:00", "-1", "3.0", "DE"),
    ("11", "d", "2021-01-04 08:00", "1", "3.0", "DE"),
    ("12", "", "2021-01-09 08:00", "1", "7.0", "UK"),
    ("13", "b", "2021-03-09 08:00", "1", "7.0", "FR"),
]
SHOP_READING = {"customer_id": "customer", "date": "when", "amount": None}
SHOP_POLICY = clvlab.CleaningPolicy(
    duplicates="drop", zero_amounts="drop", cancellation_prefix="C", returns="net"
)


@pytest.fixture(scope="module")
def shop_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("shop") / "lines.csv"
    columns = ["invoice", "customer", "when", "quantity", "price", "country"]
    pd.DataFrame(SHOP_LINES * 3, columns=columns).assign(
        # three copies of the shop: customers a, a2, a3 ... (the same rules, more partitions)
        customer=lambda t: (
            t["customer"]
            .where(t.index < 15, t["customer"] + (t.index // 15).astype(str))
            .where(t["customer"] != "", "")
        )
    ).to_csv(path, index=False)
    return path


def _local_read_clean(source, links=None, *, reading, **cleaning):
    transactions = clvlab.read_transactions(source, **reading)
    identity = None
    if links is not None:
        transactions, _, identity = resolve_identities(transactions, links)
    kept, report = clvlab.clean_transactions(transactions, **cleaning)
    return kept, report, identity


def _same_rows(spark_frame, local: pd.DataFrame) -> None:
    """The cleaned Spark rows are the local ones (order aside)."""
    ours = spark_frame.toPandas()
    assert ours.columns.tolist() == local.columns.tolist()
    key = local.columns.tolist()
    ours = ours.astype(str).sort_values(key, ignore_index=True)
    pd.testing.assert_frame_equal(ours, local.astype(str).sort_values(key, ignore_index=True))


def test_reading_resolving_and_cleaning_equal_the_local_path(spark, shop_csv):
    """Invoice lines (quantity x price) read from CSV, customers linked across the copies of
    the shop, lines merged into invoices, cancellations netted, duplicates, zero amounts,
    rows without a customer and after the end counted: the same rows, canonical ids,
    identity counts and data report as read_transactions, resolve_identities and
    clean_transactions."""
    reading = {**SHOP_READING, "quantity": "quantity", "price": "price"}
    cleaning = {"policy": SHOP_POLICY, "invoice": "invoice", "until": "2021-02-28"}
    links = pd.DataFrame({"id_a": ["a", "b1", "x"], "id_b": ["b1", "c2", "d"]}, dtype="string")
    local, local_report, local_identity = _local_read_clean(
        shop_csv, links, reading=reading, **cleaning
    )
    ours = clvlab.spark.read_transactions(
        spark,
        str(shop_csv),
        **reading,
        cleaning=SHOP_POLICY,
        invoice="invoice",
        until="2021-02-28",
        identity_links=_spark_links(spark, links),
    )
    try:
        assert ours.identity == local_identity and local_identity.transactions_remapped == 9
        assert ours.report == local_report
        assert local_report.steps == {
            "missing_customer_id": 3,
            "duplicates": 3,
            "after_end": 3,
            "zero_amounts": 3,
            "invoice_lines_merged": 3,
            "returns_netted": 9,
            "returns_unmatched": 3,
            "purchases_fully_returned": 3,
        }
        _same_rows(ours.frame, local)
    finally:
        ours.unpersist()


def test_unreadable_dates_are_counted_over_the_whole_table(spark, shop_csv, tmp_path):
    """Bad dates in several Arrow batches: one DataError on the driver that counts them over
    the whole table, with examples (labelled by customer: Spark has no row numbers); the
    first problem is the dates', as locally."""
    lines = pd.read_csv(shop_csv, dtype=str)
    lines.loc[[2, 20, 40], "when"] = ["soon", "later", "never"]
    lines.loc[30, "price"] = "free"
    lines.to_csv(tmp_path / "bad.csv", index=False)
    reading = {**SHOP_READING, "quantity": "quantity", "price": "price"}
    with pytest.raises(DataError) as local:
        clvlab.read_transactions(tmp_path / "bad.csv", **reading)
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "8")
    try:
        with pytest.raises(DataError) as ours:
            clvlab.spark.read_transactions(spark, str(tmp_path / "bad.csv"), **reading)
    finally:
        spark.conf.unset("spark.sql.execution.arrow.maxRecordsPerBatch")
    head = f"{tmp_path / 'bad.csv'}: 3 of 45 rows of date column 'when' cannot be read as dates: "
    assert str(local.value).startswith(head + "row 2: 'soon', row 20: 'later'")
    assert str(ours.value).startswith(head) and "customer a: 'soon'" in str(ours.value)
    assert str(ours.value).split(": 'never'")[0].endswith("customer c2")
    assert str(ours.value).endswith(str(local.value).split("'never'")[1])
    # A policy the columns cannot follow is refused on the driver too, before any job.
    with pytest.raises(DataError, match="returns='net' needs amounts"):
        policy = clvlab.CleaningPolicy(returns="net")
        clvlab.spark.read_transactions(spark, str(shop_csv), **SHOP_READING, cleaning=policy)


# --- training --------------------------------------------------------------------------------

#: CDNOW's sample with a 91-day holdout, so that the GBM (small here) is a candidate too.
TRAIN_CONFIG = {
    "name": "spark_cdnow",
    "data": {"source": "lifetimes:CDNOW_sample", "amount": "amount"},
    "split": {"calibration_end": "1998-03-31", "holdout_end": "1998-06-30"},
    "tracking": {"figures": False},
    "models": {"gbm": {"n_estimators": 40, "max_origins": 3, "learning_rate": 0.2}},
    "scoring": {"horizon_days": 91},
}


@pytest.fixture(scope="module")
def trained_locally():
    return clvlab.train(TRAIN_CONFIG)


def test_training_on_spark_equals_the_local_run(spark, trained_locally, tmp_path, capsys):
    """``clvlab train --engine spark`` (in this process, on this file's session), with fewer
    customers than the sample: the same champions, metrics, parameters, data report and
    data fingerprint as the local run; the BTYD fits on the statistics counted in Spark."""
    config = tmp_path / "spark_cdnow.yaml"
    config.write_text(clvlab.load_config(TRAIN_CONFIG).model_dump_json())
    report = tmp_path / "report.json"
    assert (
        main(["train", "--config", str(config), "--engine", "spark", "--report", str(report)]) == 0
    )
    assert "count the statistics on Spark as of 1998-03-31" in capsys.readouterr().err
    ours = json.loads(report.read_text())  # every digit (pandas' parser rounds)
    local = trained_locally
    assert ours["champions"] == local.backtest.champions
    assert "gbm" in local.metrics.index
    metrics = pd.DataFrame(ours["holdout_metrics"]).T.loc[
        local.metrics.index, local.metrics.columns
    ]
    pd.testing.assert_frame_equal(
        metrics, local.metrics, check_exact=False, rtol=1e-9, atol=0, check_names=False
    )
    for stage in ("calibration", "full"):
        expected = pd.Series(local.params[stage])
        pd.testing.assert_series_equal(
            pd.Series(ours["params"][stage])[expected.index], expected, rtol=1e-12, atol=0
        )
    assert ours["data_report"] == {**local.data_report, "spark.customers_sampled": 2_357}
    assert ours["tags"]["clvlab.data_fingerprint"] == local.tags["clvlab.data_fingerprint"]


def test_a_customer_sample_comes_to_the_driver_and_every_customer_is_counted(spark):
    """With a sample of about a third of the customers: their transactions, whole, come to
    the driver (what the backtest judges and the GBM learns from); the statistics that the
    BTYD models are fitted on count every customer, and fit what the local summary of all
    customers fits; the data report counts every row."""
    config = clvlab.load_config(
        {**TRAIN_CONFIG, "engine": "spark", "spark": {"sample_customers": 800}}
    )
    loaded = training_data(config)
    try:
        transactions = clvlab.read_transactions("lifetimes:CDNOW_sample")
        local, report = clvlab.clean_transactions(transactions, until="1998-06-30")
        assert loaded.report == report
        sampled = loaded.extra["spark.customers_sampled"]
        assert 700 < sampled < 900 and loaded.transactions["customer_id"].nunique() == sampled
        theirs = local[local["customer_id"].isin(loaded.transactions["customer_id"])]
        pd.testing.assert_frame_equal(loaded.transactions, theirs.reset_index(drop=True))
        end = pd.Timestamp("1998-06-30")
        statistics = loaded.statistics(end)
        assert statistics.customers == 2_357 and statistics.spend is not None
        every = clvlab.rfm(local, end, freq="D", freq_multiplier=7)
        fitted = fit_purchase_model(statistics, "bgnbd").params_
        assert fitted.to_dict() == fit_purchase_model(every, "bgnbd").params_.to_dict()
        # With litt (MBG/CNBD-k): Spark's sum in days, converted to weeks, is the local one.
        counted = sufficient_statistics(spark.createDataFrame(local), end, unit_days=7, litt=True)
        every = clvlab.rfm(local, end, freq="D", freq_multiplier=7, litt=True)
        assert counted.litt == pytest.approx(every["litt"].sum(), rel=1e-12)
        ours, theirs = (fit_purchase_model(s, "mbgcnbd") for s in (counted, every))
        assert ours.k_ == theirs.k_
        assert ours.params_.to_dict() == pytest.approx(theirs.params_.to_dict(), rel=1e-9)
    finally:
        loaded.close()


def test_a_profile_store_is_built_from_a_spark_dataframe(spark, model, cdnow_sample, tmp_path):
    """ProfileStore.build takes a Spark DataFrame (collected once): its scores are the store's
    built from the same rows locally, and clvlab.score's."""
    ours = clvlab.ProfileStore.build(
        model, spark.createDataFrame(cdnow_sample), as_of="1998-06-30", path=tmp_path / "s.db"
    )
    scores = ours.scores(as_of="1998-06-30").sort_values("customer_id", ignore_index=True)
    local = clvlab.score(model, cdnow_sample, as_of="1998-06-30")
    assert len(scores) == 2_357
    pd.testing.assert_frame_equal(scores[local.columns], local, check_exact=False, rtol=1e-9)
