"""Data sets that ship inside installed packages (no network needed)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd

from clvlab.errors import DataError

#: ``lifetimes:NAME`` sources: file name inside lifetimes' datasets folder and its columns.
_LIFETIMES_FILES = {
    "CDNOW_master": ("CDNOW_master.txt", ["customer_id", "date", "n_cds", "amount"]),
    "CDNOW_sample": ("CDNOW_sample.txt", ["master_id", "customer_id", "date", "n_cds", "amount"]),
}


def is_packaged_source(source: object) -> bool:
    """Whether ``source`` names a packaged data set such as ``lifetimes:CDNOW_master``."""
    return isinstance(source, str) and source.startswith("lifetimes:")


def load_packaged(source: str) -> pd.DataFrame:
    """Load a packaged data set as transactions with ``customer_id, date, amount`` columns.

    ``lifetimes:CDNOW_master`` holds 23,570 customers' 69,659 transactions (1997-01-01 to
    1998-06-30); ``lifetimes:CDNOW_sample`` the 2,357-customer sample of Fader, Hardie and Lee
    (2005), identified by its sample id 1..2357. The files are read from lifetimes' package
    folder directly: ``lifetimes.datasets`` imports ``pkg_resources``, which current setuptools
    no longer ships (and the folder is found without importing lifetimes, which would import
    its fitters, autograd and scipy.optimize).
    """
    name = source.removeprefix("lifetimes:")
    if name not in _LIFETIMES_FILES:
        known = ", ".join(f"lifetimes:{key}" for key in _LIFETIMES_FILES)
        raise DataError(f"unknown packaged data set {source!r}; known: {known}")
    file_name, columns = _LIFETIMES_FILES[name]
    spec = importlib.util.find_spec("lifetimes")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"{source} needs the package lifetimes, which is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / file_name
    with path.open() as handle:
        frame = pd.read_csv(
            handle,
            sep=r"\s+",
            header=None,
            skiprows=1 if name == "CDNOW_master" else 0,
            names=columns,
            dtype={"customer_id": str, "master_id": str, "date": str},
        )
    frame["customer_id"] = frame["customer_id"].str.lstrip("0")
    frame["date"] = pd.to_datetime(frame["date"], format="%Y%m%d")
    return frame[["customer_id", "date", "amount", "n_cds"]]
