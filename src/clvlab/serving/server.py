"""clvlab's model server: ``clvlab serve`` runs it in its own process (FastAPI on uvicorn).

Endpoints:

- ``POST /invocations``: the JSON of ``mlflow models serve`` (``dataframe_split`` or
  ``dataframe_records``, optional ``params`` ``as_of`` and ``horizon_days``), answered with
  the customers' score rows and the ``as_of``/``horizon_days`` used (see
  :mod:`clvlab.serving.invocations`);
- ``GET /ping`` and ``GET /health``: 200 while the server can score;
- ``GET /version``: clvlab's version.

Each request is scored in one of a pool of worker processes (:mod:`clvlab.serving.workers`)
and answered within ``timeout`` seconds, or 503/504: an expensive request costs one worker,
which is replaced, and never the server. The event loop only reads requests and hands their
bytes over. SIGTERM or Ctrl-C stops the server: requests in flight get up to ``timeout``
seconds to finish, then the workers are stopped and the process exits with status 0.

The model's MLflow pyfunc form (:mod:`clvlab.serving.pyfunc_model`) is unchanged: ``mlflow
models serve`` can still serve it, without these limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import socket
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import PlainTextResponse

from clvlab import __version__
from clvlab.errors import ClvlabError
from clvlab.models.saved import ScoringModel
from clvlab.serving.invocations import AsOfDefault
from clvlab.serving.ports import listen
from clvlab.serving.workers import WorkerPool

__all__ = ["DEFAULT_TIMEOUT_S", "ModelServer", "create_app", "listen", "run_until_stopped"]

#: Seconds a request may take, from its arrival to its answer (``clvlab serve --timeout``).
DEFAULT_TIMEOUT_S = 30.0


def create_app(pool: WorkerPool) -> FastAPI:
    """The FastAPI application answering with ``pool`` (started); closes it on shutdown."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        # After the requests in flight are answered: stop the workers (a blocking wait).
        await asyncio.get_running_loop().run_in_executor(None, pool.close)

    app = FastAPI(
        title="clvlab", version=__version__, docs_url=None, redoc_url=None, lifespan=lifespan
    )

    @app.get("/ping")
    @app.get("/health")
    async def ping() -> Response:
        return Response("\n", status_code=200 if pool.alive else 503)

    @app.get("/version")
    async def version() -> Response:
        return PlainTextResponse(__version__)

    @app.post("/invocations")
    async def invocations(request: Request) -> Response:
        status, body = await pool.invoke(await request.body())
        return Response(body, status_code=status, media_type="application/json")

    return app


class ModelServer:
    """A model server bound to its port, with its workers running; :meth:`run` serves until
    SIGTERM or Ctrl-C.

    Parameters
    ----------
    model
        The model to serve.
    host, port
        Where to listen (see :func:`listen`).
    workers
        Worker processes: requests scored at once (default: the number of CPUs).
    timeout
        Seconds from a request's arrival to its answer, waiting for a free worker included;
        a request still being scored then is answered 504 and its worker is replaced.
    as_of_default
        ``as_of`` of a request without one: ``"today"`` or ``"last-transaction"``.
    access_log
        Log every request on standard error (uvicorn's access log).
    sock
        The socket :func:`listen` already bound to ``host:port`` (``clvlab serve`` takes the
        port before it loads the model); by default the server binds it. The server owns it
        from here on.
    """

    def __init__(
        self,
        model: ScoringModel,
        *,
        host: str = "127.0.0.1",
        port: int = 5000,
        workers: int | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        as_of_default: AsOfDefault = "today",
        access_log: bool = False,
        sock: socket.socket | None = None,
    ) -> None:
        self.host, self.port, self.access_log = host, port, access_log
        try:
            self.pool = WorkerPool(
                model,
                workers=_cpu_count() if workers is None else workers,
                timeout=timeout,
                as_of_default=as_of_default,
            )
        except BaseException:
            if sock is not None:
                sock.close()
            raise
        self._socket: socket.socket | None = sock if sock is not None else listen(host, port)
        try:
            self.pool.start()
        except BaseException:
            self.close()
            raise

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def run(self) -> None:
        """Serve until SIGTERM or Ctrl-C, then stop the workers and return."""
        import uvicorn

        if self._socket is None:
            raise ClvlabError("the server was closed")
        config = uvicorn.Config(
            create_app(self.pool),
            log_level="warning",
            access_log=self.access_log,
            lifespan="on",
            # A stop waits for the requests in flight, which end by their deadline anyway.
            timeout_graceful_shutdown=int(self.pool.timeout) + 1,
        )
        try:
            run_until_stopped(config, self._socket)
        finally:
            self.close()

    def close(self) -> None:
        """Stop the workers and release the port (done by :meth:`run` when it returns)."""
        self.pool.close()
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def run_until_stopped(config: Any, sock: socket.socket) -> None:
    """Run uvicorn with ``config`` (a ``uvicorn.Config``) on ``sock`` until SIGTERM or
    Ctrl-C, which end it normally (status 0), even when they come before uvicorn listens."""
    import uvicorn

    server = uvicorn.Server(config)
    # What is loaded by now (MLflow, pandas, the model) lives as long as the process: the
    # collector skips it from here on, which keeps its pauses short and the exit quick
    # (tearing it down took about a second).
    gc.freeze()

    def stop(signum: int, frame: Any) -> None:
        server.should_exit = True

    # uvicorn handles SIGINT and SIGTERM while it runs, then raises the signal again for the
    # handler it found: this one, so that a stop ends the process normally, and a signal that
    # comes before uvicorn listens for it still stops the server.
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
