"""The worker processes of ``clvlab serve``: each holds the model and answers one request at a
time; a request that is not done by its deadline costs its worker, never the server.

A worker is ``python -m clvlab.serving.workers FD``, a child of the server joined to it by a
socket pair (file descriptor ``FD`` in the child). Everything on it is bytes, nothing is
pickled: first the model's JSON state (:meth:`clvlab.CLVModel.to_dict`) and the server's
settings, answered by ``ready``; then one request body after another, each answered by the
HTTP status and JSON of :func:`clvlab.serving.invocations.answer`. A worker ends when the
server closes its end (also when the server dies), and ignores Ctrl-C, which the terminal
sends to the whole process group: the server stops its workers itself.

The server's event loop only moves bytes: a request waits for an idle worker, and a thread
sends it the body and waits for the answer until the deadline. When the deadline passes, the
worker is killed, the request is answered 504 and a new worker is started in the background;
the other workers go on answering.
"""

from __future__ import annotations

import asyncio
import json
import math
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from multiprocessing.connection import Connection
from typing import Any

from clvlab.errors import ClvlabError
from clvlab.models.contractual.model import ContractualModel
from clvlab.models.saved import ScoringModel, model_from_dict
from clvlab.serving.invocations import AsOfDefault

#: Seconds a new worker may take to import clvlab and load the model.
STARTUP_TIMEOUT_S = 120.0
#: Seconds a stopped worker gets to exit before it is killed.
_STOP_GRACE_S = 2.0
_READY = b"ready"


class WorkerPool:
    """Worker processes that score requests, each within a deadline.

    Parameters
    ----------
    model
        The model every worker holds (sent as JSON).
    workers
        How many requests are scored at once.
    timeout
        Seconds from a request's arrival to its answer, waiting for a worker included
        (``clvlab serve --timeout``).
    as_of_default
        ``as_of`` of a request that has none (see :func:`clvlab.serving.invocations.answer`).
    """

    def __init__(
        self,
        model: ScoringModel,
        *,
        workers: int,
        timeout: float,
        as_of_default: AsOfDefault = "today",
    ) -> None:
        if workers < 1:
            raise ClvlabError(f"--workers must be at least 1, got {workers}")
        if not (math.isfinite(timeout) and timeout > 0):
            raise ClvlabError(f"--timeout must be a positive number of seconds, got {timeout}")
        self.size, self.timeout = workers, float(timeout)
        self._setup = json.dumps(
            {"model": model.to_dict(), "as_of_default": as_of_default}
        ).encode()
        self._lock = threading.Lock()
        self._workers: set[_Worker] = set()  # every process started and not yet reaped
        self._closing = False
        self._stopping = threading.Event()  # set by close(): ends restart attempts at once
        # Calls (one per busy worker) and restarts run in these threads, never in the loop.
        self._threads = ThreadPoolExecutor(workers * 2 + 1, thread_name_prefix="clvlab-worker")
        self._idle: asyncio.Queue[_Worker] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started: list[_Worker] = []

    def start(self) -> None:
        """Start the workers and wait until each holds the model (at most
        :data:`STARTUP_TIMEOUT_S`); raise ClvlabError, with everything stopped, if one cannot
        start."""
        try:
            # All start importing at once; each then gets the model and says when it is ready.
            pending = [self._spawn() for _ in range(self.size)]
            for worker in pending:
                worker.load(self._setup, STARTUP_TIMEOUT_S)
            self._started = pending
        except BaseException:
            self.close()
            raise

    @property
    def alive(self) -> int:
        """How many workers are running (idle, busy or starting)."""
        with self._lock:
            return sum(worker.process.poll() is None for worker in self._workers)

    async def invoke(self, body: bytes) -> tuple[int, bytes]:
        """The HTTP status and JSON answer of a request body, within :attr:`timeout` seconds
        from now: 503 if no worker became free in time, 504 if scoring did not end in time
        (its worker is then replaced)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        idle = self._idle_queue(loop)
        worker: _Worker | None = None
        while worker is None:
            try:
                worker = await asyncio.wait_for(idle.get(), max(deadline - loop.time(), 0.0))
            except TimeoutError:
                break
            if worker.process.poll() is not None:  # died while idle (killed from outside)
                self._retire(worker)
                worker = None
        remaining = deadline - loop.time()
        if worker is None or remaining <= 0:
            if worker is not None:
                idle.put_nowait(worker)
            return 503, _error(
                "SERVICE_UNAVAILABLE",
                f"all {self.size} scoring workers stayed busy for the server's limit of "
                f"{self.timeout:g} s per request (clvlab serve --timeout); retry later, or "
                "start the server with more --workers",
            )
        call = self._threads.submit(worker.call, body, remaining)
        # The worker goes back to the pool (or is replaced) when the call ends, even if this
        # request is cancelled first (client gone, server stopping).
        call.add_done_callback(lambda done: _in_loop(loop, self._release, worker, done))
        try:
            result = await asyncio.wrap_future(call)
        except (EOFError, OSError):
            status = worker.process.poll()
            return 500, _error(
                "INTERNAL_ERROR",
                "the scoring worker stopped unexpectedly"
                + (f" (exit status {status})" if status is not None else "")
                + "; the server log may say why. It is being replaced: retry the request",
            )
        if result is None:
            return 504, _error(
                "DEADLINE_EXCEEDED",
                f"scoring did not finish within the server's limit of {self.timeout:g} s per "
                "request (clvlab serve --timeout); send fewer customers per request, or "
                "start the server with a larger --timeout",
            )
        return result

    def close(self) -> None:
        """Stop every worker (also those starting or busy) and wait for them to exit; the
        pool cannot be used again. Safe to call more than once."""
        with self._lock:
            self._closing = True
            workers = list(self._workers)
            self._workers.clear()
        self._stopping.set()
        for worker in workers:
            worker.stop()
        deadline = time.monotonic() + _STOP_GRACE_S
        for worker in workers:
            worker.reap(max(deadline - time.monotonic(), 0.0))
        self._threads.shutdown(wait=True, cancel_futures=True)

    def _idle_queue(self, loop: asyncio.AbstractEventLoop) -> asyncio.Queue[_Worker]:
        """The queue of idle workers, made in the server's event loop on first use."""
        if self._idle is None:
            self._loop, self._idle = loop, asyncio.Queue()
            for worker in self._started:
                self._idle.put_nowait(worker)
        return self._idle

    def _spawn(self) -> _Worker:
        with self._lock:
            if self._closing:
                raise ClvlabError("the server is stopping")
            worker = _Worker.launch()
            self._workers.add(worker)
        return worker

    def _release(self, worker: _Worker, call: Future) -> None:
        """In the event loop, when a call ends: an idle worker goes back to the queue; a
        killed or dead one is replaced."""
        if not call.cancelled() and call.exception() is None and call.result() is not None:
            assert self._idle is not None
            self._idle.put_nowait(worker)
        else:
            self._retire(worker)

    def _retire(self, worker: _Worker) -> None:
        """Stop a worker that was killed, died or is late, and start its successor."""
        with self._lock:
            self._workers.discard(worker)
            closing = self._closing
        worker.stop()
        try:
            if not closing:
                self._threads.submit(self._replace, worker)
                return
        except RuntimeError:  # the pool was closed meanwhile
            pass
        worker.reap(_STOP_GRACE_S)

    def _replace(self, old: _Worker) -> None:
        """In a thread: reap a stopped worker, start its successor and queue it when ready;
        try again, less and less often, while it cannot start (``/ping`` answers 503 when no
        worker is left)."""
        old.reap(_STOP_GRACE_S)
        delay = 1.0
        while True:
            try:
                worker = self._spawn()
            except ClvlabError:  # the pool is closing
                return
            except OSError as err:
                error = f"cannot start a process: {err}"
            else:
                try:
                    worker.load(self._setup, STARTUP_TIMEOUT_S)
                except ClvlabError as err:
                    error = str(err)
                    with self._lock:
                        self._workers.discard(worker)
                    worker.reap(_STOP_GRACE_S)
                else:
                    assert self._loop is not None and self._idle is not None
                    if not _in_loop(self._loop, self._idle.put_nowait, worker):
                        worker.stop()
                    return
            if self._closing:
                return
            print(
                f"clvlab serve: a scoring worker could not be restarted ({error}); trying "
                f"again in {delay:g} s",
                file=sys.stderr,
            )
            if self._stopping.wait(delay):
                return
            delay = min(delay * 2, 60.0)


class _Worker:
    """One worker process and the parent's end of its socket pair."""

    def __init__(self, process: subprocess.Popen, connection: Connection) -> None:
        self.process, self.connection = process, connection

    @classmethod
    def launch(cls) -> _Worker:
        """Start a worker process; it waits for :meth:`load`."""
        parent, child = socket.socketpair()
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "clvlab.serving.workers", str(child.fileno())],
                pass_fds=[child.fileno()],
                stdin=subprocess.DEVNULL,
            )
        finally:
            child.close()
        return cls(process, Connection(parent.detach()))

    def load(self, setup: bytes, timeout: float) -> None:
        """Send the worker the model and settings and wait for its ``ready``; raise
        ClvlabError if it fails or takes more than ``timeout`` s."""
        try:
            self.connection.send_bytes(setup)
            if self.connection.poll(timeout):
                message = self.connection.recv_bytes()
                if message == _READY:
                    return
                raise ClvlabError(f"a scoring worker could not start: {message.decode()}")
        except (EOFError, OSError):
            pass
        self.stop()
        try:
            status = self.process.wait(_STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            status = None
        if status is None or status == -signal.SIGTERM:
            raise ClvlabError(f"a scoring worker did not start within {timeout:g} s")
        raise ClvlabError(
            f"a scoring worker exited while starting (exit status {status}); the lines "
            "above may say why"
        )

    def call(self, body: bytes, timeout: float) -> tuple[int, bytes] | None:
        """Send a request body, wait at most ``timeout`` s for the answer: (status, JSON), or
        None after killing the worker when it is late. EOFError/OSError if it died."""
        self.connection.send_bytes(body)
        if not self.connection.poll(timeout):
            self.process.kill()
            return None
        message = self.connection.recv_bytes()
        return int.from_bytes(message[:2], "big"), message[2:]

    def stop(self) -> None:
        """Ask the worker to exit; a call waiting on it then ends with EOFError."""
        if self.process.poll() is None:
            self.process.terminate()

    def reap(self, timeout: float) -> None:
        """Wait for the worker to exit, killing it after ``timeout`` s; close its connection."""
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.connection.close()


def _in_loop(loop: asyncio.AbstractEventLoop, function: Any, *args: Any) -> bool:
    """Run ``function(*args)`` in ``loop`` from another thread; False if the loop is closed
    (the server is stopping)."""
    try:
        loop.call_soon_threadsafe(function, *args)
    except RuntimeError:
        return False
    return True


def _error(code: str, message: str) -> bytes:
    return json.dumps({"error_code": code, "message": message}).encode()


def _serve_requests(fd: int) -> None:
    """The worker's loop: load the model, then answer request bodies until the server closes
    the connection."""
    from clvlab.serving.invocations import answer

    connection = Connection(fd)
    try:
        setup: dict[str, Any] = json.loads(connection.recv_bytes())
        model = model_from_dict(setup["model"])
        as_of_default = setup["as_of_default"]
        warm_up(model)
    except EOFError:
        return
    except Exception as err:  # tell the server why, in one line
        connection.send_bytes(" ".join(f"{type(err).__name__}: {err}".split()).encode())
        return
    connection.send_bytes(_READY)
    while True:
        try:
            body = connection.recv_bytes()
        except (EOFError, OSError):
            return
        result = answer(model, body, as_of_default)
        try:
            connection.send_bytes(result.status.to_bytes(2, "big") + result.body)
        except OSError:  # the server is gone
            return


def warm_up(model: ScoringModel) -> None:
    """Score one made-up customer, so that the first request does not pay for the imports
    and set-up scoring does on first use."""
    from clvlab.serving.invocations import answer

    columns = ["customer_id", "date", "amount"]
    data = [["warm-up", "2000-01-01", 1.0], ["warm-up", "2000-02-01", 1.0]]
    if isinstance(model, ContractualModel):  # a subscription, by the model's column names
        names = model.columns
        columns = [names.get(role) or role for role in ("customer_id", "start", "end")]
        data = [["warm-up", "2000-01-01", ""]]
        if names.get("price"):
            columns.append(str(names["price"]))
            data[0].append(1.0)
    body = {
        "dataframe_split": {"columns": columns, "data": data},
        "params": {"as_of": "2000-03-01"},
    }
    answer(model, json.dumps(body).encode())


if __name__ == "__main__":
    # The terminal sends Ctrl-C to the whole process group; the server stops its workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _serve_requests(int(sys.argv[1]))
