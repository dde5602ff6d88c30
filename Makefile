# Two commands on a fresh machine with Python 3.11+ and make:
#   make train   bootstrap .venv and run `clvlab train` on configs/cdnow.yaml
#   make test    bootstrap .venv, lint (ruff, mypy), and run the whole test suite
PYTHON ?= python3
# Python's bytecode cache stays on (some machines turn it off): the suite starts many Python
# processes (CLI commands, servers, their workers), and without it each compiles clvlab again.
unexport PYTHONDONTWRITEBYTECODE
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: train test lint lock clean

$(STAMP): pyproject.toml requirements.lock
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "clvlab needs Python 3.11+")'
	@echo "Setting up $(VENV): the pinned dependencies of requirements.lock (about 2 minutes, once)..."
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip==25.3
	$(BIN)/python -m pip install --quiet --progress-bar off -c requirements.lock -e '.[dev]'
	@$(BIN)/python tests/spark_classes.py 2>/dev/null
	@touch $(STAMP)
	@echo "Set up $(VENV) ($$($(BIN)/clvlab --version))."

train: $(STAMP)
	$(BIN)/clvlab train

test: $(STAMP) lint
	@echo "Running the test suite on every core (about 3 minutes on 2 cores; the slowest tests are listed at the end)..."
	$(BIN)/python -m pytest -n auto --dist loadfile --durations=15

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Re-resolve the pinned versions (after changing dependencies in pyproject.toml).
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --upgrade pip==25.3
	.lock-venv/bin/python -m pip install --quiet -e '.[dev]'
	.lock-venv/bin/python -m pip freeze --exclude-editable > requirements.lock
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
