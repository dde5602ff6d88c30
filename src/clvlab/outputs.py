"""Atomic writers: an output file is either complete or absent, never half-written."""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from clvlab.errors import ClvlabError


def write_table(table: pd.DataFrame, path: str | Path) -> Path:
    """Write a table to Parquet or CSV, chosen by the file extension."""
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix == ".parquet":
        return _write_atomically(target, lambda tmp: table.to_parquet(tmp, index=False))
    if suffix == ".csv":
        return _write_atomically(target, lambda tmp: table.to_csv(tmp, index=False))
    raise ClvlabError(f"output {target}: use a file name ending in .parquet or .csv")


def write_json(document: object, path: str | Path) -> Path:
    """Write a JSON document; NaN and infinities become null."""
    text = json.dumps(_json_safe(document), indent=2, default=str)
    return _write_atomically(Path(path), lambda tmp: Path(tmp).write_text(text + "\n"))


def write_text(text: str, path: str | Path) -> Path:
    """Write a text file (UTF-8), such as an HTML report."""
    return _write_atomically(Path(path), lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def _json_safe(value: object) -> object:
    if isinstance(value, dict):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _write_atomically(target: Path, write: Callable[[str], object]) -> Path:
    """Let ``write`` fill a temporary file beside ``target``, then rename it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.close(handle)
    os.chmod(temporary, 0o666 & ~umask())  # mkstemp makes it private; outputs are not
    try:
        write(temporary)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target


def umask() -> int:
    """The process's file mode creation mask (permissions new files do not get)."""
    try:  # Linux: read it; setting it to read it back would race with other threads
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def make_folder(parent: Path, prefix: str) -> Path:
    """A new temporary folder in ``parent``, with the permissions of an ordinary folder."""
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    folder.chmod(0o777 & ~umask())
    return folder


def write_folder(target: Path, write: Callable[[Path], object]) -> Path:
    """Let ``write`` fill a new folder (the path it is given does not exist yet) beside
    ``target``, then :func:`publish` it in place of ``target``; nothing is left behind if
    ``write`` fails."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = make_folder(target.parent, f".{target.name}.")
    try:
        write(staging / target.name)
        publish(staging / target.name, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def publish(built: Path, target: Path) -> None:
    """Move the finished file or folder ``built`` to ``target``, replacing what was there.

    A file replaces a file in one atomic rename. Otherwise the old output is first renamed
    aside, and removed only once the new one is in place; if putting the new one in place
    fails, the old one is put back, so ``target`` is never lost. Processes publishing into
    the same folder at once take turns (a lock on the folder), so the last one wins whole.
    """
    with _folder_lock(target.parent):
        if not target.exists() or (built.is_file() and target.is_file()):
            os.replace(built, target)
            return
        aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        os.replace(target, aside / target.name)
        try:
            os.replace(built, target)
        except BaseException:
            os.replace(aside / target.name, target)
            raise
        finally:
            shutil.rmtree(aside, ignore_errors=True)


@contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """An exclusive advisory lock (``flock``) on ``folder`` while the block runs; nothing is
    left behind, and a crashed holder releases it. Without ``fcntl`` (Windows), no lock."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on POSIX
        yield
        return
    handle = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)  # closing releases the lock
