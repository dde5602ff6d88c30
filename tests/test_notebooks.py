"""The notebooks run top to bottom without error."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

import stores

ROOT = Path(__file__).resolve().parents[1]
#: The shared data beside the repository (../shared/data, see its README).
SHARED = ROOT.parent / "shared"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path: Path, in_tmp: Path, monkeypatch: pytest.MonkeyPatch):
    # A copy of the project's configs beside a copy of the notebook, so that nothing the
    # notebook writes lands in the repository; clvlab's default store in a private home.
    shutil.copytree(ROOT / "configs", in_tmp / "configs")
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.setenv("CLVLAB_HOME", str(in_tmp / "home"))
    (in_tmp / "notebooks").mkdir()
    notebook = nbformat.read(path, as_version=4)
    code = [cell.source for cell in notebook.cells if cell.cell_type == "code"]
    if any("shared/data/" in source for source in code):
        # The copy is laid out as the repository: the shared data beside it.
        if not (SHARED / "data" / "online_retail.parquet").is_file():
            pytest.skip(f"{path.name} reads Online Retail: {SHARED / 'data'} has no copy")
        beside = in_tmp.parent / "shared"
        if not beside.exists():
            beside.symlink_to(SHARED)
    trains = any("clvlab.train(" in source for source in code)
    default_store = in_tmp / "home" / "mlruns" / "mlflow.db"
    if trains:
        # clvlab's default store, made empty in advance (a copy, not MLflow's migrations: how
        # training creates it is tested by test_tracking_store and the README's commands);
        # the notebook must log its run there, wherever it runs from.
        stores.new_store(default_store)
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
    assert images, "the notebook shows no plot"
    # One store, wherever the notebook runs from: clvlab's default, not notebooks/mlruns; and
    # none at all from a notebook that does not train.
    if trains:
        import mlflow

        logged = mlflow.MlflowClient(tracking_uri=f"sqlite:///{default_store}")
        experiments = [e.experiment_id for e in logged.search_experiments()]
        assert logged.search_runs(experiments), "the notebook's run is not in the default store"
    else:
        assert not (in_tmp / "home" / "mlruns").exists()
    assert not list(in_tmp.glob("**/mlruns/**/mlflow.db"))[1:]
    assert not (in_tmp / "notebooks" / "mlruns").exists()
    assert not (in_tmp / "models").exists(), "training exported a model it was not asked to"
