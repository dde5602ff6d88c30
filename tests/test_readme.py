"""The README tells the truth: what it says the GBM needs is what the code requires, and its
set-up says what it does. (Its "Use" commands run as written in test_end_to_end.py, whose
other tests use the model they train.)"""

from __future__ import annotations

import subprocess

import pandas as pd

from clvlab.config import GBMConfig
from readme import README, ROOT


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
    about two minutes without other output) and ends by naming the installed version."""
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
    assert announce < install and "about 2 minutes" in planned[announce]
    assert any("clvlab --version" in line for line in planned[install:])
