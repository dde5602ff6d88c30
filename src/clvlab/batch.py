"""Batch scoring of data larger than memory: hash partitions of customers, written atomically.

:func:`score_to_file` scores the transactions in parts of about ``partition_rows`` rows. Each
customer's rows land in one part (chosen by a hash of the id, or of the id's group when
identity links are given), so each part is read, cleaned and scored on its own as
:func:`clvlab.score` scores the whole: the same rows, values and reasons. The ids are read
alike in every part (a float id column is rendered as for the whole column), and every part
gives them back in the dtype :func:`clvlab.score` gives for the whole source (integer ids
stay integers). Memory holds the parts being scored, one per worker:

- up to :data:`SCAN_PARTITIONS` parts, each part is a filtered scan of the source (DuckDB
  reads Parquet fast and in parallel, so scanning a few times costs less than a copy);
- beyond that, or for CSV, the source is first split once into Parquet files per part in a
  temporary folder beside the output, which DuckDB does in a streaming way.

The output is written to a temporary name beside the target and renamed into place, so it is
never half-written (:func:`clvlab.outputs.publish`). A new file replaces an old one in one
rename; otherwise the old output is renamed aside first and put back if the new one cannot
be put in place, so only a crash between the two renames leaves it beside the target
(``.NAME.old-*``) rather than in place:

- a ``.parquet`` target is one file when there is one part, else a folder of one Parquet file
  per part (``part-00000.parquet``, ...; rows sorted by customer id within each, integer ids
  in numeric order), with a manifest ``_clvlab_scores.json``. pandas, DuckDB and Spark read
  the folder as one table;
- a ``.csv`` target is always one file.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar, cast

import duckdb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from clvlab.data import DataReport, read_links
from clvlab.data.datasets import is_packaged_source, load_packaged
from clvlab.data.identity import GROUP_ID, SOURCE_ID, LinkSource, link_groups
from clvlab.data.io import (
    IdDtype,
    TransactionSource,
    arrow_to_pandas,
    id_dtype,
    parquet_glob,
    sql_string,
)
from clvlab.data.validate import require_columns
from clvlab.errors import ClvlabError, DataError
from clvlab.features.rfm import DateLike
from clvlab.models.clv import CLVModel
from clvlab.models.contractual.model import ContractualModel
from clvlab.outputs import make_folder, publish, write_json, write_table
from clvlab.scoring import (
    PreparedTransactions,
    as_scoring_model,
    check_arguments,
    check_as_of,
    check_contractual_arguments,
    check_customer_ids,
    column_names,
    interval_level,
    prepare,
    read_columns,
    score_columns,
    score_prepared,
)
from clvlab.scoring_contractual import score_subscriptions

#: Rows per part by default: scoring 5M rows at once peaks at about 1 GB.
DEFAULT_PARTITION_ROWS = 5_000_000
#: Up to this many parts, each is a filtered scan of the source; beyond it, a copy is split.
SCAN_PARTITIONS = 8
#: The manifest of a multi-part output folder.
MANIFEST = "_clvlab_scores.json"
_BUCKET = "__clvlab_part"
#: DuckDB's integer types, as NumPy reads them.
_DUCKDB_INTEGERS = {
    "TINYINT": "int8",
    "SMALLINT": "int16",
    "INTEGER": "int32",
    "BIGINT": "int64",
    "UTINYINT": "uint8",
    "USMALLINT": "uint16",
    "UINTEGER": "uint32",
    "UBIGINT": "uint64",
}
_T = TypeVar("_T")


@dataclasses.dataclass
class BatchResult:
    """What :func:`score_to_file` wrote."""

    output: Path
    """The score file, or the folder of part files."""
    files: list[Path]
    """The Parquet or CSV files holding the scores."""
    customers: int
    """Rows written: one per customer id in the input."""
    reasons: dict[str, int]
    """Customers that could not be scored, by reason."""
    partitions: int
    """Parts the customers were scored in."""
    as_of: pd.Timestamp
    """The date the scores are for."""
    model: str
    """The model column: which model gave each target."""
    data_report: dict[str, Any]
    """Every row read, kept or excluded (by a cleaning step, or ``excluded.after_as_of``),
    summed over the parts (see :class:`clvlab.data.DataReport`)."""

    @property
    def unscored(self) -> int:
        """Customers with a row but no scores."""
        return sum(self.reasons.values())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly summary (the manifest of a multi-part output)."""
        return {
            "files": [path.name for path in self.files],
            "customers": self.customers,
            "unscored": self.reasons,
            "partitions": self.partitions,
            "as_of": str(self.as_of),
            "model": self.model,
            "data_report": self.data_report,
        }


def score_to_file(
    model: CLVModel | str | Path,
    transactions: TransactionSource,
    output: str | Path,
    *,
    as_of: DateLike | None = None,
    horizon_days: float | None = None,
    identity_links: LinkSource | None = None,
    partition_rows: int = DEFAULT_PARTITION_ROWS,
    workers: int | None = None,
    progress: bool | None = None,
    customer_id: str | None = None,
    date: str | None = None,
    amount: str | None = None,
    date_format: str | None = None,
    explain: bool = False,
    intervals: float | bool | None = None,
) -> BatchResult:
    """Score every customer in ``transactions`` into ``output``, one part at a time.

    Parameters
    ----------
    model, transactions, as_of, horizon_days, identity_links
        As for :func:`clvlab.score` (a contractual model scores a subscription table into
        one file). ``transactions`` may be a CSV file, Parquet data (a file,
        a folder or a glob such as ``"dir/*.parquet"``), a packaged data set or a DataFrame.
        Without ``as_of`` the data is read twice when it has several parts: once to find the
        last transaction date, once to score. An ``as_of`` before the first transaction of
        every part is an error, found once the parts are scored (nothing is written then).
    output
        A ``.parquet`` or ``.csv`` path (see the module docstring for the layout).
    partition_rows
        About how many transaction rows are scored at once; memory grows with it (about 1 GB
        for 5M rows), per worker.
    workers
        Parts scored at the same time, in threads (DuckDB, NumPy and SciPy work outside
        Python's lock); by default one per CPU core.
    progress
        Show a progress bar; by default when standard error is a terminal.
    customer_id, date, amount, date_format
        As for :func:`clvlab.score`: read the transactions by these column names (and date
        format) instead of those the model was trained with.
    explain
        As for :func:`clvlab.score`: add each target's reasons in plain words.
    intervals
        As for :func:`clvlab.score`: add intervals at this level (by default the model's).

    Returns
    -------
    BatchResult
        Where the scores are and what happened to the customers and rows.

    Raises
    ------
    ClvlabError
        If ``output`` has another extension or is a folder clvlab did not write, or as
        :func:`clvlab.score` for bad arguments (a date not in ISO 8601, a horizon out of
        range, an ``as_of`` before the data) or data. Nothing is written then.
    """
    as_of, horizon_days = check_arguments(as_of, horizon_days)
    names = column_names(customer_id=customer_id, date=date, amount=amount, date_format=date_format)
    loaded = as_scoring_model(model)
    target = _check_output(Path(output))
    if isinstance(loaded, ContractualModel):  # subscriptions: one table, as clvlab.score
        check_contractual_arguments(
            horizon_days=horizon_days,
            identity_links=identity_links,
            intervals=intervals,
            explain=explain or None,
            **names,
        )
        return _subscriptions_to_file(loaded, transactions, target, as_of)
    model = loaded
    level = interval_level(model, intervals)
    if partition_rows < 1:
        raise ClvlabError(f"partition_rows must be a positive number of rows, got {partition_rows}")
    workers = _cores() if workers is None else workers
    if workers < 1:
        raise ClvlabError(f"workers must be a positive number, got {workers}")
    links = None if identity_links is None else read_links(identity_links)
    show = sys.stderr.isatty() if progress is None else progress
    with _Source(transactions, model, links, target.parent, workers, names) as source:
        parts = max(1, math.ceil(source.rows / partition_rows))
        source.plan(parts)
        with _progress(parts * (2 if as_of is None and parts > 1 else 1), show) as bar:
            if as_of is None:
                as_of = _last_date(source, parts, bar)
            return _score_parts(
                model,
                source,
                parts,
                as_of,
                horizon_days,
                target,
                bar,
                explain=explain,
                intervals=level,
            )


def _subscriptions_to_file(
    model: ContractualModel,
    subscriptions: TransactionSource,
    target: Path,
    as_of: pd.Timestamp | None,
) -> BatchResult:
    """:func:`score_to_file` of a contractual model: :func:`clvlab.score`'s table of the
    subscriptions, written atomically."""
    scores = score_subscriptions(model, subscriptions, as_of=as_of)
    write_table(scores, target)
    report = scores.attrs["data_report"]
    reasons = scores["reason"].value_counts().to_dict()
    return BatchResult(
        output=target,
        files=[target],
        customers=len(scores),
        reasons={str(reason): int(count) for reason, count in reasons.items()},
        partitions=1,
        as_of=pd.Timestamp(report["as_of"]),
        model=model.label(),
        data_report=report,
    )


def _score_parts(
    model: CLVModel,
    source: _Source,
    parts: int,
    as_of: pd.Timestamp,
    horizon_days: float | None,
    target: Path,
    bar: Any,
    *,
    explain: bool = False,
    intervals: float | None = None,
) -> BatchResult:
    """Score each part into a temporary file or folder, then move it into place."""
    csv = target.suffix.lower() == ".csv"
    staging = make_folder(target.parent, f".{target.name}.")

    def score_part(number: int) -> _PartResult:
        prepared = source.prepared(number, parts)
        result = _PartResult(None if prepared is None else prepared.report)
        if prepared is not None and not _no_ids(prepared.report):
            result.first_date = prepared.first_date
            scores, result.report = score_prepared(
                model,
                prepared,
                as_of,
                horizon_days,
                source.threads,
                explain=explain,
                intervals=intervals,
            )
            result.path = _write_part(scores, staging, number, csv)
            result.customers = len(scores)
            # The reason column has the string dtype: its values (the keys) are str.
            result.reasons = cast(dict[str, int], scores["reason"].value_counts().to_dict())
            if scores["reason"].isna().any():  # the label of a part with scored customers
                result.label = scores["model"].iloc[0]
        bar.update(1)
        return result

    try:
        done = source.map(score_part, parts)
        report = DataReport.combine([part.report for part in done if part.report is not None])
        check_customer_ids(report, stacklevel=4)  # warns at the caller of score_to_file
        firsts = [part.first_date for part in done if part.first_date is not None]
        check_as_of(as_of, min(firsts) if firsts else None, model.time_unit)
        files = [part.path for part in done if part.path is not None]
        reasons: dict[str, int] = {}
        for part in done:
            for reason, count in part.reasons.items():
                reasons[str(reason)] = reasons.get(str(reason), 0) + int(count)
        result = BatchResult(
            output=target,
            files=[target],
            customers=sum(part.customers for part in done),
            reasons=reasons,
            partitions=parts,
            as_of=as_of,
            model="; ".join(sorted({part.label for part in done if part.label})),
            data_report=report.to_dict(),
        )
        if csv:
            built = _concatenate(
                files,
                staging,
                score_columns(model, explain=explain, intervals=intervals is not None),
            )
        elif len(files) == 1:
            built = files[0]
        else:
            result.files = [target / path.name for path in files]
            write_json(result.to_dict(), staging / MANIFEST)
            built = staging
        publish(built, target)
        return result
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@dataclasses.dataclass
class _PartResult:
    """What scoring one part gave (a part's scores stay on disk, not in memory)."""

    report: DataReport | None
    first_date: pd.Timestamp | None = None
    path: Path | None = None
    customers: int = 0
    reasons: dict[str, int] = dataclasses.field(default_factory=dict)
    label: str | None = None


def _no_ids(report: DataReport) -> bool:
    return report.rows_read == report.steps.get("missing_customer_id", 0)


def _last_date(source: _Source, parts: int, bar: Any) -> pd.Timestamp:
    """The last transaction date after cleaning, over all parts (the default ``as_of``)."""

    def last_date(number: int) -> tuple[DataReport | None, pd.Timestamp | None]:
        prepared = source.prepared(number, parts)  # with one part, kept for scoring
        if parts > 1:
            bar.update(1)
        if prepared is None:
            return None, None
        return prepared.report, prepared.last_date if len(prepared.canonical) else None

    found = source.map(last_date, parts)
    check_customer_ids(
        DataReport.combine([report for report, _ in found if report is not None]), warn=False
    )
    dates = [date for _, date in found if date is not None]
    if not dates:
        raise DataError("every transaction was excluded by cleaning; nothing to score")
    return max(dates)


class _Source:
    """The transactions as DuckDB sees them, and their parts as prepared transactions."""

    def __init__(
        self,
        transactions: TransactionSource,
        model: CLVModel,
        links: pd.DataFrame | None,
        workdir: Path,
        workers: int,
        names: dict[str, str] | None = None,
    ) -> None:
        self.transactions = transactions
        self.where = "transactions" if isinstance(transactions, pd.DataFrame) else str(transactions)
        self.model = model
        #: Column names given for scoring (see :func:`clvlab.scoring.read_columns`).
        self.names = names
        self.links = links
        self.workdir = workdir
        self.workers = workers
        #: DuckDB threads per query (see :meth:`plan`).
        self.threads: int | None = None
        self._whole: PreparedTransactions | None = None
        self._split: Path | None = None
        self._registered: dict[str, pd.DataFrame] = {}
        self._local = threading.local()
        self.con = duckdb.connect(config={"preserve_insertion_order": False})
        try:
            self._open()
        except BaseException:
            self.con.close()
            raise

    def _open(self) -> None:
        self.con.execute("SET TimeZone = 'UTC'")
        source = self.transactions
        if isinstance(source, str | Path) and is_packaged_source(source):
            source = load_packaged(str(source))
        self._frame = source if isinstance(source, pd.DataFrame) else None
        if isinstance(source, pd.DataFrame):
            self._register("source_frame", source)
            self.relation, self.csv = "source_frame", False
        else:
            self.relation, self.csv = self._reader(source)
        described = self._query(f"DESCRIBE SELECT * FROM {self.relation}").fetchall()
        self.rows = self._query(f"SELECT count(*) FROM {self.relation}").fetchall()[0][0]
        if self.rows == 0:
            raise DataError(f"{self.where}: no transactions (the table has no rows).")
        self.columns = {row[0]: row[1] for row in described}
        in_frame = list(self.columns) if isinstance(source, pd.DataFrame) else None
        id_name = read_columns(self.model, in_frame, self.names)["customer_id"]
        require_columns(
            pd.DataFrame(columns=list(self.columns)), {"customer id": id_name}, self.where
        )
        self.id_name = id_name
        self.id_column = _quote(id_name)
        self.id_type = self.columns[id_name]
        #: SQL for the id as text and for the part a row hashes to (see :meth:`plan`).
        self.id_text = self.key = ""
        #: The dtype every part gives the ids back in (see :meth:`_id_dtype`).
        self.id_dtype: IdDtype = None

    def __enter__(self) -> _Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.con.close()
        if self._split is not None:
            shutil.rmtree(self._split, ignore_errors=True)

    def _reader(self, source: str | Path) -> tuple[str, bool]:
        """The DuckDB table function that reads ``source``, and whether it is CSV. A glob is
        resolved to its files once, so that files written later (this run's output beside
        them, say) are not read."""
        text = str(source)
        if Path(text).suffix.lower() in {".csv", ".txt", ".gz"}:
            if not Path(text).exists():
                raise DataError(f"transactions file not found: {text}")
            # All columns as text, as clvlab.read_transactions reads CSV: "00042" stays "00042".
            return f"read_csv({sql_string(text)}, header = true, all_varchar = true)", True
        pattern = sql_string(parquet_glob(text))
        files = [row[0] for row in self._query(f"SELECT file FROM glob({pattern})").fetchall()]
        if not files:
            raise DataError(f"{text}: no Parquet file matches")
        listed = ", ".join(sql_string(file) for file in sorted(files))
        return f"read_parquet([{listed}])", False

    def _query(self, sql: str) -> duckdb.DuckDBPyConnection:
        """Run ``sql`` on the source, with DuckDB's errors (unreadable files, ids that cannot
        be converted) as :class:`DataError`."""
        try:
            return self.con.execute(sql)
        except duckdb.Error as exc:
            raise DataError(f"{self.where}: cannot read transactions: {exc}") from None

    def _register(self, name: str, frame: pd.DataFrame) -> None:
        self._registered[name] = frame
        self.con.register(name, frame)

    def _id_text(self, column_type: str) -> str:
        """SQL for the customer id as text, as :func:`clvlab.data.io.as_customer_ids` reads
        the whole column: floats that are all whole numbers without the ".0" (17850.0 is
        "17850"). Decided once for the source, so that every part reads ids alike."""
        column = self.id_column
        text = f"CAST({column} AS VARCHAR)"
        if column_type not in ("FLOAT", "DOUBLE"):
            return text
        whole = self._query(
            f"SELECT coalesce(bool_and({column} = trunc({column})), true) FROM {self.relation}"
        ).fetchall()[0][0]
        return f"CAST(CAST({column} AS HUGEINT) AS VARCHAR)" if whole else text

    def _id_dtype(self) -> IdDtype:
        """The dtype :func:`clvlab.score` gives the whole source's ids back in (see
        :func:`clvlab.data.io.id_dtype`). Parts read their ids as text, so it is decided here,
        once, and every part file has it."""
        if self._frame is not None:
            return id_dtype(self._frame[self.id_name])
        if self.csv:  # read as text
            return None
        # The id column's dtype as clvlab.read_transactions reads the Parquet data: with
        # pyarrow and pandas' metadata (an Int64 dtype, say) for one file, with DuckDB for
        # several (integers as NumPy integers; anything else is text for id_dtype).
        text = str(self.transactions)
        if parquet_glob(text) == text and not any(char in text for char in "*?["):
            empty = arrow_to_pandas(pq.read_schema(text).empty_table())
            dtype = empty[self.id_name].dtype
        else:
            dtype = np.dtype(_DUCKDB_INTEGERS.get(self.id_type, object))
        if not isinstance(dtype, np.dtype) or dtype.kind not in "iu":
            return id_dtype(pd.Series([], dtype=dtype))
        # Integers with missing values are read as Python integers: Int64 if they fit.
        missing, low, high = self._query(
            f"SELECT count(*) - count({self.id_column}), min({self.id_column}), "
            f"max({self.id_column}) FROM {self.relation}"
        ).fetchall()[0]
        if not missing:
            return dtype
        return id_dtype(pd.Series([low, high, None], dtype=object))

    def _key(self) -> str:
        """SQL for the hash that assigns a row to a part: of its id, or of its id's group."""
        if self.links is None:
            return f"hash({self.id_text})"
        self._register("link_groups", link_groups(self.links))
        return (
            f"hash(coalesce((SELECT {GROUP_ID} FROM link_groups "
            f"WHERE {SOURCE_ID} = {self.id_text}), {self.id_text}))"
        )

    def _rows(self) -> str:
        """The source's rows with the id as text (see :meth:`_id_text`)."""
        return f"SELECT * REPLACE ({self.id_text} AS {self.id_column}) FROM {self.relation}"

    def plan(self, parts: int) -> None:
        """Get ready to read ``parts`` parts (nothing to do for one: the source is read as
        :func:`clvlab.score` reads it). The id's text and the hash of each row's part are
        decided; a copy of the source is split when scanning it once per part would cost
        more (many parts, or CSV, which is parsed on every scan); and parts scored at once
        share the cores: each query gets its share of DuckDB's threads."""
        if parts == 1:
            return
        self.id_dtype = self._id_dtype()
        self.id_text = self._id_text(self.id_type)
        self.key = self._key()
        if (parts > SCAN_PARTITIONS or self.csv) and self._split is None:
            self._split = make_folder(self.workdir, ".clvlab-parts-")
            self.con.execute(f"SET temp_directory = {sql_string(str(self._split / 'spill'))}")
            self._query(
                f"COPY (SELECT *, {self.key} % {parts} AS {_BUCKET} FROM ({self._rows()})) "
                f"TO {sql_string(str(self._split / 'parts'))} "
                f"(FORMAT parquet, PARTITION_BY ({_BUCKET}))"
            )
        if self.workers > 1:
            self.threads = max(1, _cores() // min(self.workers, parts))
            self.con.execute(f"SET threads = {self.threads}")

    def prepared(self, number: int, parts: int) -> PreparedTransactions | None:
        """Part ``number`` of ``parts`` read and prepared as :func:`clvlab.score` prepares
        transactions (None if no row hashed to it). With one part, the whole source,
        prepared once and kept."""
        if parts > 1:
            rows = self._part(number, parts)
            if rows is None:
                return None
            prepared = prepare(self.model, rows, self.links, self.names)
            return dataclasses.replace(prepared, id_dtype=self.id_dtype)
        if self._whole is None:
            self._whole = prepare(self.model, self.transactions, self.links, self.names)
        return self._whole

    def map(self, work: Callable[[int], _T], parts: int) -> list[_T]:
        """``work`` on every part number, :attr:`workers` parts at a time; results in order.
        The first failure cancels the parts not yet started."""
        if self.workers == 1 or parts == 1:
            return [work(number) for number in range(parts)]
        with ThreadPoolExecutor(self.workers, thread_name_prefix="clvlab-part") as pool:
            futures = [pool.submit(work, number) for number in range(parts)]
            try:
                return [future.result() for future in futures]
            except BaseException:
                for future in futures:
                    future.cancel()
                raise

    def _part(self, number: int, parts: int) -> pd.DataFrame | None:
        """The rows of part ``number`` (ids as text, the other columns as stored), or None."""
        if self._split is None:
            query = f"SELECT * FROM ({self._rows()}) WHERE {self.key} % {parts} = {number}"
        else:
            folder = self._split / "parts" / f"{_BUCKET}={number}"
            if not folder.exists():
                return None
            files = sql_string(str(folder / "*.parquet"))
            query = f"SELECT * FROM read_parquet({files}, hive_partitioning = false)"
        try:
            table = self._cursor().sql(query).to_arrow_table()
        except duckdb.Error as exc:
            raise DataError(f"{self.where}: cannot read transactions: {exc}") from None
        return arrow_to_pandas(table) if table.num_rows else None

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        """This thread's connection (threads must not share one DuckDB connection)."""
        cursor = getattr(self._local, "cursor", None)
        if cursor is None:
            cursor = self._local.cursor = self.con.cursor()
            for name, frame in self._registered.items():
                cursor.register(name, frame)
        return cursor


def _cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _write_part(table: pd.DataFrame, folder: Path, number: int, csv: bool) -> Path:
    """Write one part's scores (not atomically: the folder is renamed into place at the end).
    CSV parts have no header: :func:`_concatenate` writes one."""
    path = folder / f"part-{number:05d}.{'csv' if csv else 'parquet'}"
    if csv:
        table.to_csv(path, index=False, header=False)
    else:
        table.to_parquet(path, index=False)
    return path


def _concatenate(files: list[Path], folder: Path, columns: list[str]) -> Path:
    """The CSV parts as one file, with the header of the score table's ``columns``."""
    whole = folder / "scores.csv"
    with whole.open("wb") as out:
        out.write((",".join(columns) + "\n").encode())
        for path in files:
            with path.open("rb") as part:
                shutil.copyfileobj(part, out)
    return whole


def _check_output(target: Path) -> Path:
    """The output path, checked before any work is done."""
    if target.suffix.lower() not in {".parquet", ".csv"}:
        raise ClvlabError(f"output {target}: use a name ending in .parquet or .csv")
    if target.is_dir() and not (target / MANIFEST).exists():
        raise ClvlabError(
            f"output {target} is a folder that clvlab did not write (it has no {MANIFEST}); "
            "choose another name or remove it"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    return target


@contextmanager
def _progress(total: int, show: bool) -> Iterator[Any]:
    """A progress bar over the parts on standard error (a silent one when not shown)."""
    from tqdm import tqdm

    with tqdm(total=total, desc="scoring", unit="part", disable=not show, file=sys.stderr) as bar:
        yield bar
