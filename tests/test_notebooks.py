"""The notebooks run top to bottom without error."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path: Path, in_tmp: Path):
    # A copy of the project's configs beside a copy of the notebook, so that nothing the
    # notebook writes (MLflow store, model export) lands in the repository.
    shutil.copytree(ROOT / "configs", in_tmp / "configs")
    (in_tmp / "notebooks").mkdir()
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(in_tmp / "notebooks")}},
    )
    client.execute()
    errors = [
        output
        for cell in notebook.cells
        for output in cell.get("outputs", [])
        if output.get("output_type") == "error"
    ]
    assert not errors
    images = [
        output
        for cell in notebook.cells
        for output in cell.get("outputs", [])
        if "image/png" in output.get("data", {})
    ]
    assert images, "the holdout plot was not shown"
    assert (in_tmp / "models" / "cdnow" / "MLmodel").is_file()
