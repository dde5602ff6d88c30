"""New MLflow stores for tests, fast: a new SQLite store runs MLflow's schema migrations (about
2 s); each test process makes one empty store once and every other is a copy of it (a
millisecond). Tests of how clvlab itself creates its default store do not use this."""

from __future__ import annotations

import shutil
from pathlib import Path

_EMPTY: list[Path] = []


def make_empty(database: Path) -> None:
    """Create the empty store that :func:`new_store` copies (once per test process)."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    SqlAlchemyStore(f"sqlite:///{database}", str(database.parent / "artifacts")).engine.dispose()
    _EMPTY[:] = [database]


def new_store(database: Path) -> str:
    """A new, empty MLflow SQLite store at ``database``, as its tracking URI."""
    if not _EMPTY:
        raise RuntimeError("conftest's session fixture has not made the empty store yet")
    database.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_EMPTY[0], database)
    return f"sqlite:///{database}"
