"""The README tells the truth: its "Use" commands run as written, in order, from a fresh copy
of the project, and what it says the GBM needs is what the code requires."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from clvlab.config import GBMConfig
from clvlab.scoring import SCORE_COLUMNS
from clvlab.segments import SEGMENT_COLUMNS

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
VENV = Path(sys.executable).parents[1]


def section(title: str) -> str:
    """The README's text from ``## title`` to the next ``## `` heading."""
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end > 0 else None]


def shell_blocks(text: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", text, flags=re.DOTALL)


def test_the_use_section_runs_as_written(tmp_path: Path):
    """A fresh copy of the project (its configs; the venv that `make train` built), clvlab's
    default store in a private home, no MLFLOW_TRACKING_URI: the commands of "Use" in order,
    as one bash script that stops at the first failure."""
    if shutil.which("curl") is None:
        pytest.fail("the README's Use section calls curl, which is not installed")
    project = tmp_path / "clvlab"
    shutil.copytree(ROOT / "configs", project / "configs")
    (project / ".venv").symlink_to(VENV)
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["CLVLAB_HOME"] = str(tmp_path / "home")
    script = "\n".join(shell_blocks(section("Use")))
    assert "clvlab train" in script and "clvlab serve" in script
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"

    scores = pd.read_parquet(project / "scores.parquet")
    assert list(scores.columns) == SCORE_COLUMNS + SEGMENT_COLUMNS and len(scores) == 23_570
    assert set(scores["model_version"]) == {"models:/cdnow/1"}
    by_part = pd.read_parquet(project / "parts.parquet")
    assert len(list((project / "parts.parquet").glob("*.parquet"))) > 1
    pd.testing.assert_frame_equal(
        by_part.sort_values("customer_id").reset_index(drop=True), scores, check_dtype=False
    )
    assert "champion: moved to version 1" in done.stdout
    assert "cdnow: champion -> version 2" in done.stdout
    # The served answer is strict JSON for the one posted customer.
    assert '"customer_id":"7"' in done.stdout.replace(" ", "")
    assert (tmp_path / "home" / "mlruns" / "mlflow.db").is_file()
    assert not (project / "mlruns").exists()


def test_the_readme_states_what_the_gbm_needs():
    gbm = GBMConfig()
    holdout = (pd.Timestamp("1998-06-30") - pd.Timestamp("1997-09-30")).days
    before = (pd.Timestamp("1997-09-30") - pd.Timestamp("1997-01-01")).days
    needed = 2 * holdout + gbm.origin_step_days + gbm.min_history_days
    text = " ".join(README.split())
    assert "2 H + 56" in text and gbm.origin_step_days + gbm.min_history_days == 56
    assert f"{before} days of data precede a {holdout}-day holdout ({needed} would" in text
    assert f"shortened, to {before // 2} days" in text


def test_the_set_up_says_what_it_installs_and_how_long_it_takes():
    """`make train` and `make test` first set up .venv: that step announces itself (it runs
    about a minute without other output) and ends by naming the installed version."""
    planned = subprocess.run(
        ["make", "-n", "-B", ".venv/.installed"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.splitlines()
    install = next(i for i, line in enumerate(planned) if "pip install" in line and "-e" in line)
    announce = next(i for i, line in enumerate(planned) if "Setting up .venv" in line)
    assert announce < install and "about 1 minute" in planned[announce]
    assert any("clvlab --version" in line for line in planned[install:])
