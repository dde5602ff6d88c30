"""Synthetic "buy till you die" transactions for benchmarks.

Each customer follows the BG/NBD process with Gamma-Gamma spend:

- the first purchase is at a uniformly random time in the observation window (``days`` days
  from ``start``), with a time of day;
- while alive, purchases arrive as a Poisson process of rate ``lambda ~ Gamma(r, 1/alpha)``
  per day;
- after each repeat purchase the customer drops out for good with probability
  ``p ~ Beta(a, b)`` (not after the first: a customer without repeats is alive, as in the model);
- every purchase is worth ``z ~ Gamma(p_spend, 1/nu)`` with ``nu ~ Gamma(q, 1/gamma)`` per
  customer, rounded to cents.

The repeat purchases in the window are simulated exactly and without a loop: with ``M`` arrivals
of the Poisson process in the customer's remaining window of length ``L`` and ``N`` repeat
purchases before dropout (geometric), the customer makes ``K = min(N, M)`` of them, at the
first ``K`` order statistics of ``M`` uniforms on ``(0, L)``. Those are
``L * (E_1 + ... + E_i) / (E_1 + ... + E_K + G)`` with ``E`` standard exponentials and
``G ~ Gamma(M + 1 - K)`` standing for the ``M + 1 - K`` spacings not drawn.

With the default parameters a customer has about 5.5 transactions over two years, so 1M
customers give about 5.5M rows and 18.1M customers about 100M rows.

Usage::

    python benchmarks/synthetic.py --customers 1000000 --out /tmp/tx.parquet     # one file
    python benchmarks/synthetic.py --rows 100000000 --out /tmp/tx_big             # a folder
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

#: Customers simulated (and, for a folder, written to one file) at a time.
BLOCK_CUSTOMERS = 1_000_000
#: Mean transactions per customer with the default parameters (5.54 measured on 4M customers).
ROWS_PER_CUSTOMER = 5.54

SCHEMA = pa.schema(
    [
        pa.field("customer_id", pa.string(), nullable=False),
        pa.field("date", pa.timestamp("us"), nullable=False),
        pa.field("amount", pa.float64(), nullable=False),
    ]
)


@dataclass(frozen=True)
class Params:
    """Parameters of the BG/NBD purchase process and the Gamma-Gamma spend, rates per day."""

    r: float = 0.6
    alpha: float = 20.0
    a: float = 0.9
    b: float = 5.0
    p_spend: float = 6.0
    q: float = 3.8
    gamma: float = 15.0
    start: str = "2024-01-01"
    days: int = 730

    @property
    def end(self) -> pd.Timestamp:
        """The end of the observation window (exclusive): the natural as-of date."""
        return pd.Timestamp(self.start) + pd.Timedelta(days=self.days)


DEFAULT = Params()


def customer_ids(first: int, count: int, width: int) -> pa.Array:
    """Ids ``c`` + zero-padded numbers ``first + 1 .. first + count``, e.g. ``c0000001``."""
    numbers = pa.array(np.arange(first + 1, first + count + 1, dtype=np.int64))
    padded = pc.utf8_lpad(pc.cast(numbers, pa.string()), width=width, padding="0")
    return pc.binary_join_element_wise("c", padded, "")


def id_width(n_customers: int) -> int:
    """Digits in the ids of a population of ``n_customers`` (at least 7)."""
    return max(7, len(str(n_customers)))


def simulate_block(
    first: int, count: int, rng: np.random.Generator, params: Params = DEFAULT, width: int = 7
) -> pa.Table:
    """Simulate customers ``first + 1 .. first + count``: a table sorted by date."""
    start = np.datetime64(params.start, "us")
    first_day = rng.uniform(0.0, params.days, count)
    remaining = params.days - first_day
    rate = rng.gamma(params.r, 1.0 / params.alpha, count)
    dropout = np.clip(rng.beta(params.a, params.b, count), 1e-12, 1.0)
    before_dropout = rng.geometric(dropout)  # repeat purchases, the last followed by dropout
    arrivals = rng.poisson(rate * remaining)  # purchases in the window if the customer stays
    repeats = np.minimum(before_dropout, arrivals)

    owner = np.repeat(np.arange(count), repeats)
    spacings = rng.standard_exponential(len(owner))
    cumulative = np.cumsum(spacings)
    group_start = np.cumsum(repeats) - repeats
    before = np.concatenate(([0.0], cumulative))[group_start]
    within = cumulative - before[owner]
    drawn = np.add.reduceat(spacings, group_start[repeats > 0]) if len(owner) else spacings
    total = np.zeros(count)
    total[repeats > 0] = drawn
    total += rng.standard_gamma(arrivals + 1 - repeats)
    repeat_day = first_day[owner] + remaining[owner] * within / total[owner]

    customer = np.concatenate((np.arange(count), owner))
    day = np.concatenate((first_day, repeat_day))
    nu = rng.gamma(params.q, 1.0 / params.gamma, count)
    amount = np.maximum(np.round(rng.gamma(params.p_spend, 1.0 / nu[customer]), 2), 0.01)

    order = np.argsort(day, kind="stable")
    micros = np.round(day[order] * 86_400.0) * 1_000_000
    dates = start + micros.astype("timedelta64[us]")
    ids = pc.take(customer_ids(first, count, width), pa.array(customer[order]))
    return pa.Table.from_arrays([ids, pa.array(dates), pa.array(amount[order])], schema=SCHEMA)


def blocks(
    n_customers: int,
    seed: int = 0,
    params: Params = DEFAULT,
    block_customers: int = BLOCK_CUSTOMERS,
):
    """Yield the population in tables of ``block_customers`` customers; block i is seeded by
    ``(seed, i)``, so a population is the same whatever is done with earlier blocks."""
    width = id_width(n_customers)
    for index, first in enumerate(range(0, n_customers, block_customers)):
        count = min(block_customers, n_customers - first)
        rng = np.random.default_rng([seed, index])
        yield simulate_block(first, count, rng, params, width)


def generate(n_customers: int, seed: int = 0, params: Params = DEFAULT) -> pd.DataFrame:
    """Transactions of ``n_customers`` customers as a canonical DataFrame.

    Columns ``customer_id`` (string), ``date`` (naive ``datetime64[us]``) and ``amount``
    (float64); the same rows as :func:`write_parquet` with the same arguments.
    """
    tables = list(blocks(n_customers, seed, params))
    return pa.concat_tables(tables).to_pandas()


def write_parquet(
    n_customers: int,
    out: str | Path,
    seed: int = 0,
    params: Params = DEFAULT,
    block_customers: int = BLOCK_CUSTOMERS,
) -> dict[str, object]:
    """Write the transactions of ``n_customers`` customers to Parquet, one block at a time.

    ``out`` ending in ``.parquet`` is one file with a row group per block; otherwise ``out`` is
    a folder with a file ``part-NNNNN.parquet`` per block and, written last, ``_meta.json``
    describing the data (its presence means the folder is complete). Memory holds one block.

    Returns
    -------
    dict
        ``rows``, ``customers``, ``files``, ``seed``, ``seconds``, ``as_of`` and the parameters.
    """
    out = Path(out)
    began = time.perf_counter()
    rows = 0
    parts = blocks(n_customers, seed, params, block_customers)
    if out.suffix == ".parquet":
        out.parent.mkdir(parents=True, exist_ok=True)
        with pq.ParquetWriter(out, SCHEMA) as writer:
            for table in parts:
                writer.write_table(table, row_group_size=1 << 20)
                rows += table.num_rows
        files = 1
    else:
        out.mkdir(parents=True, exist_ok=True)
        files = 0
        for files, table in enumerate(parts, start=1):
            pq.write_table(table, out / f"part-{files - 1:05d}.parquet", row_group_size=1 << 20)
            rows += table.num_rows
    meta = {
        "rows": rows,
        "customers": n_customers,
        "files": files,
        "seed": seed,
        "seconds": round(time.perf_counter() - began, 2),
        "as_of": str(params.end.date()),
        "params": asdict(params),
    }
    if out.suffix != ".parquet":
        (out / "_meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def ensure_data(path: Path, n_customers: int, seed: int) -> dict:
    """Generate the transactions to ``path`` unless a complete copy is there; its metadata."""
    meta_path = path / "_meta.json" if path.suffix != ".parquet" else path.with_suffix(".json")
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        print(f"data: {path} (reused: {meta['rows']:,} rows, {meta['customers']:,} customers)")
        return meta
    print(f"data: generating {n_customers:,} customers to {path} ...", flush=True)
    meta = write_parquet(n_customers, path, seed)
    if path.suffix == ".parquet":
        meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    print(f"data: {meta['rows']:,} rows in {meta['seconds']} s")
    return meta


def customers_for_rows(rows: int) -> int:
    """Customers that give about ``rows`` transactions with the default parameters."""
    return math.ceil(rows / ROWS_PER_CUSTOMER)


def main(argv: list[str] | None = None) -> None:
    """Command line: write synthetic transactions to a Parquet file or folder."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--customers", type=int, default=1_000_000, help="customers to simulate")
    size.add_argument("--rows", type=int, help="about this many rows (sets --customers)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out", required=True, help="a .parquet file, or a folder of one file per block"
    )
    parser.add_argument("--block-customers", type=int, default=BLOCK_CUSTOMERS)
    args = parser.parse_args(argv)
    n_customers = customers_for_rows(args.rows) if args.rows else args.customers
    meta = write_parquet(n_customers, args.out, args.seed, block_customers=args.block_customers)
    print(
        f"wrote {meta['rows']:,} rows of {n_customers:,} customers to {args.out} "
        f"({meta['files']} file(s), {meta['seconds']} s); as-of date {meta['as_of']}"
    )


if __name__ == "__main__":
    main()
