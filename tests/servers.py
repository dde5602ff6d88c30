"""Start a server subprocess on a free local port for a test, and always stop it (not a test
module itself; imported as ``import servers``)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

#: The venv's bin: MLflow's CLI starts `uvicorn` by name, so it must be on PATH.
VENV_BIN = Path(sys.executable).parent
MLFLOW = VENV_BIN / "mlflow"
STARTUP_TIMEOUT_S = 120


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running(
    command: list[str], *, url: str, health: str, cwd: Path, env: dict[str, str]
) -> Iterator[str]:
    """Run ``command`` in its own process group until ``url + health`` answers 200, yield
    ``url``, then stop the whole group. Fails the test with the server's log if it exits or
    does not answer within :data:`STARTUP_TIMEOUT_S`."""
    with started(command, url=url, health=health, cwd=cwd, env=env) as (url, _):
        yield url


@contextlib.contextmanager
def started(
    command: list[str], *, url: str, health: str, cwd: Path, env: dict[str, str]
) -> Iterator[tuple[str, subprocess.Popen]]:
    """As :func:`running`, yielding ``(url, process)``; the test may stop the process
    itself (the rest of its group is stopped anyway)."""
    env = {**env, "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"}
    log_path = cwd / f"server-{url.rsplit(':', 1)[-1]}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"the server exited ({process.returncode}):\n{_tail(log_path)}")
            try:
                if requests.get(f"{url}{health}", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                waited = f"no answer on {url}{health} in {STARTUP_TIMEOUT_S} s"
                pytest.fail(f"{waited}:\n{_tail(log_path)}")
            time.sleep(0.2)
        yield url, process
    finally:
        _stop(process)


def _stop(process: subprocess.Popen) -> None:
    """Stop the server and whatever it started: they share the process group we made."""
    for sig, grace in ((signal.SIGTERM, 15), (signal.SIGKILL, 15)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=grace)
            break
        except subprocess.TimeoutExpired:
            continue


def log(url: str, cwd: Path) -> str:
    """What the server started on ``url`` in ``cwd`` has printed so far."""
    return (cwd / f"server-{url.rsplit(':', 1)[-1]}.log").read_text(errors="replace")


def _tail(path: Path, chars: int = 4000) -> str:
    return path.read_text(errors="replace")[-chars:]
