"""Progress of long steps, reported through the standard ``logging`` module.

The library only logs: each step of a long job is a :func:`stage`, logged when it starts and,
with how long it took and what it found, when it ends (logger ``clvlab.progress``, level
INFO). Nothing is shown unless the caller asks: the ``clvlab`` command installs
:class:`StageHandler` on standard error; in a notebook ``logging.basicConfig(level="INFO")``
shows the same lines.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TextIO

logger = logging.getLogger("clvlab.progress")


@dataclass
class Stage:
    """A running step: set :attr:`summary` to say what it did (shown when it ends)."""

    name: str
    summary: str = ""


@contextmanager
def stage(name: str) -> Iterator[Stage]:
    """Log the start and the end of the step ``name`` (with its duration and summary).

    A step that fails logs nothing at its end: the error says what happened.
    """
    step = Stage(name)
    logger.info("%s ...", name, extra={"clvlab_stage": name, "clvlab_event": "start"})
    started = time.perf_counter()
    yield step
    seconds = time.perf_counter() - started
    detail = f": {step.summary}" if step.summary else ""
    logger.info(
        "%s%s (%.1f s)",
        name,
        detail,
        seconds,
        extra={"clvlab_stage": name, "clvlab_event": "end"},
    )


class StageHandler(logging.Handler):
    """Shows stages on a stream: on a terminal the running step on one line that its summary
    then replaces; elsewhere (a log file, CI) only the one-line summary of each finished
    step."""

    def __init__(self, stream: TextIO | None = None, *, terminal: bool) -> None:
        super().__init__(level=logging.INFO)
        self.stream = stream
        self.terminal = terminal

    def emit(self, record: logging.LogRecord) -> None:
        event = getattr(record, "clvlab_event", None)
        # None: standard error as it is now (redirected, or captured by a test, since the
        # handler was installed by an earlier command in this process).
        stream = self.stream or sys.stderr
        try:
            message = record.getMessage()
            if event == "start":
                if self.terminal:
                    stream.write(f"\r\033[K... {message}")
                    stream.flush()
                return
            prefix = "\r\033[K" if self.terminal else ""
            stream.write(f"{prefix}{message}\n")
            stream.flush()
        except Exception:  # a broken stream must not break the job
            self.handleError(record)
