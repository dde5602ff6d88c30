"""The live profile service: ``clvlab profiles serve`` runs it in its own process (FastAPI on
uvicorn), around one :class:`~clvlab.profiles.store.ProfileStore`.

Endpoints (answers are strict JSON: a number that cannot be computed is ``null``):

- ``POST /events``: ``{"events": [event, ...]}``, optionally with ``"as_of"`` and
  ``"horizon_days"`` (see :meth:`ProfileStore.apply`). The valid events are applied in one
  transaction; the answer has the changed customers' score rows (``scores``), ``applied``,
  ``ignored`` (event ids seen before), ``rejected`` (``event_id``, ``position`` in the batch
  and ``reason`` of each refused event), ``merged`` and ``transitions``. Status 200, or 400
  when an event was rejected (every event not listed was applied or ignored) or when the body
  is not such a batch (then nothing is applied).
- ``GET /customers/{id}``: the customer's profile and score row (:meth:`ProfileStore.customer`,
  optional query parameters ``as_of`` and ``horizon_days``), looked up by any of its ids; 404
  when the store has no transaction of it.
- ``GET /health``: ``{"status": "ok"}`` with the number of customers and the webhook's
  counters (null without a webhook).

Who may call: the service listens on 127.0.0.1 by default. With a bearer token (the
environment variable ``CLVLAB_PROFILES_TOKEN`` or a token file, never the command line) every
request must carry ``Authorization: Bearer <token>``, else it is answered 401; without one the
service refuses to listen beyond the loopback interface. ``/health`` stays open, so that a load
balancer can probe it without the secret, but without the token it answers only the status.

The store is used by one thread, a call at a time, in the order the requests came: SQLite
connections are not safe for concurrent use, and one writer is what SQLite allows anyway. The
event batches of requests that come while the store is busy are applied together when it is
free (one transaction, each request answered with its own share: see
:meth:`ProfileStore.apply_each`), which is what keeps latency low under concurrent load.
Segment transitions go to the webhook's queue (:mod:`clvlab.profiles.webhook`), which never
holds up a request.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import functools
import hmac
import ipaddress
import json
import math
import os
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
from fastapi import FastAPI, Request, Response

from clvlab import __version__
from clvlab.errors import ClvlabError, DataError
from clvlab.models.clv import CLVModel
from clvlab.profiles.store import AppliedEvents, ProfileStore
from clvlab.profiles.webhook import Webhook
from clvlab.serving.server import listen, run_until_stopped

#: The environment variable that holds the service's bearer token.
TOKEN_ENV = "CLVLAB_PROFILES_TOKEN"
DEFAULT_PORT = 5002
#: The keys of a ``POST /events`` body.
_BATCH_KEYS = ("events", "as_of", "horizon_days")
_T = TypeVar("_T")


def read_token(token_file: str | Path | None = None) -> str | None:
    """The service's bearer token: the contents of ``token_file`` (surrounding white space
    removed) when given, else the environment variable :data:`TOKEN_ENV`, else None."""
    if token_file is None:
        return os.environ.get(TOKEN_ENV) or None
    try:
        token = Path(token_file).read_text().strip()
    except (OSError, UnicodeDecodeError) as err:
        raise ClvlabError(f"cannot read the token file {token_file}: {err}") from None
    if not token:
        raise ClvlabError(f"the token file {token_file} is empty; write the bearer token in it")
    return token


def is_loopback(host: str) -> bool:
    """Whether ``host`` is only reachable from this machine (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


def create_app(
    store: ProfileStore, *, token: str | None = None, webhook: Webhook | None = None
) -> FastAPI:
    """The FastAPI application of the service over ``store`` (which it does not close).

    ``token``: the bearer token requests must carry (None: none needed). ``webhook``: where the
    segment transitions of applied events go (None: nowhere).
    """
    # One thread uses the store, a call at a time, in the order the requests came.
    executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="clvlab-store")

    async def call(function: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(executor, functools.partial(function, *args, **kwargs))

    def authorized(request: Request) -> bool:
        if token is None:
            return True
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode(), token.encode()
        )

    applying = _GroupApplier(store, call)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        executor.shutdown()  # the requests are answered by now: nothing is waiting

    app = FastAPI(
        title="clvlab profiles",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )

    @app.post("/events")
    async def events(request: Request) -> Response:
        if not authorized(request):
            return _unauthorized()
        try:
            batch = _read_batch(await request.body())
            outcome = await applying.submit(batch)
        except ClvlabError as err:
            return _json({"error": str(err)}, 400)
        if webhook is not None:
            webhook.send(outcome.transitions)
        rejected = outcome.rejected
        answer: dict[str, Any] = dict(vars(outcome))  # not asdict: no deep copy
        if rejected:
            answer["error"] = (
                f"{len(rejected)} of the {len(batch['events'])} events were rejected (see "
                "rejected, with the reason of each); the others were applied, or ignored as "
                "seen before"
            )
        return _json(answer, 400 if rejected else 200)

    @app.get("/customers/{customer_id:path}")
    async def customer(
        request: Request,
        customer_id: str,
        as_of: str | None = None,
        horizon_days: str | None = None,
    ) -> Response:
        if not authorized(request):
            return _unauthorized()
        try:
            profile = await call(
                store.customer, customer_id, as_of=as_of, horizon_days=horizon_days
            )
        except ClvlabError as err:
            return _json({"error": str(err)}, 400)
        if profile is None:
            return _json({"error": f"no customer {customer_id!r} in the profile store"}, 404)
        return _json(profile, 200)

    @app.get("/health")
    async def health(request: Request) -> Response:
        answer: dict[str, Any] = {"status": "ok"}
        if authorized(request):
            answer["customers"] = await call(store.customers)
            answer["webhook"] = None if webhook is None else dataclasses.asdict(webhook.counters())
        return _json(answer, 200)

    return app


class _GroupApplier:
    """Applies the event batches of ``POST /events`` requests: those that come while the store
    is busy are applied together when it is free, in the order they came, in one transaction
    (:meth:`ProfileStore.apply_each`): under load a request then costs the store little more
    than its share of one batch, instead of a batch of its own each."""

    def __init__(self, store: ProfileStore, call: Callable[..., Any]) -> None:
        self.store, self.call = store, call
        self.waiting: list[tuple[dict[str, Any], asyncio.Future[AppliedEvents]]] = []
        self.running: asyncio.Task[None] | None = None

    async def submit(self, batch: dict[str, Any]) -> AppliedEvents:
        """The outcome of applying ``batch`` (``events``, ``as_of``, ``horizon_days``)."""
        future: asyncio.Future[AppliedEvents] = asyncio.get_running_loop().create_future()
        self.waiting.append((batch, future))
        if self.running is None:
            self.running = asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self.waiting:
                # The requests waiting, up to the first that asks for other as-of or horizon.
                first = self.waiting[0][0]
                options = {key: first.get(key) for key in ("as_of", "horizon_days")}
                count = 1
                while count < min(len(self.waiting), _MAX_GROUP) and all(
                    self.waiting[count][0].get(key) == value for key, value in options.items()
                ):
                    count += 1
                group, self.waiting = self.waiting[:count], self.waiting[count:]
                await self._apply(group, options)
        finally:
            self.running = None

    async def _apply(
        self,
        group: list[tuple[dict[str, Any], asyncio.Future[AppliedEvents]]],
        options: dict[str, Any],
    ) -> None:
        if len(group) > 1:
            try:
                outcomes = await self.call(
                    self.store.apply_each, [batch["events"] for batch, _ in group], **options
                )
            except Exception:  # one is at fault (nothing was applied): each on its own below
                pass
            else:
                for (_, future), outcome in zip(group, outcomes, strict=True):
                    future.set_result(outcome)
                return
        for batch, future in group:
            try:
                future.set_result(
                    await self.call(self.store.apply, **batch, on_error="skip", as_frame=False)
                )
            except Exception as err:  # its answer: 400 for a ClvlabError, else 500
                future.set_exception(err)


#: At most this many requests are applied together.
_MAX_GROUP = 256


class ProfileServer:
    """The profile service bound to its port, over the store at ``store`` (opened here, and
    closed when the server stops); :meth:`run` serves until SIGTERM or Ctrl-C.

    Parameters
    ----------
    store
        The profile store's file (see :meth:`ProfileStore.open`).
    model
        The model that scores the profiles (None: the store's own).
    host, port
        Where to listen. Beyond the loopback interface only with a ``token``.
    token
        The bearer token requests must carry (see :func:`read_token`); None: none needed.
    webhook
        URL that each segment transition is POSTed to (see :class:`Webhook`); None: none.
    access_log
        Log every request on standard error (uvicorn's access log).
    """

    def __init__(
        self,
        store: str | Path,
        *,
        model: CLVModel | str | Path | None = None,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        token: str | None = None,
        webhook: str | None = None,
        access_log: bool = False,
    ) -> None:
        if token is None and not is_loopback(host):
            raise ClvlabError(
                f"refusing to serve profiles on {host} without a bearer token: set one in the "
                f"environment variable {TOKEN_ENV} or in a file given with --token-file, or "
                "listen on 127.0.0.1"
            )
        self.host, self.port, self.token, self.access_log = host, port, token, access_log
        self.webhook: Webhook | None = None
        self.store: ProfileStore | None = None
        self._socket: socket.socket | None = listen(host, port)
        try:
            self.store = ProfileStore.open(store, model)
            self.webhook = None if webhook is None else Webhook(webhook)
        except BaseException:
            self.close()
            raise

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def run(self) -> None:
        """Serve until SIGTERM or Ctrl-C, then close the store and return."""
        import uvicorn

        if self._socket is None or self.store is None:
            raise ClvlabError("the server was closed")
        app = create_app(self.store, token=self.token, webhook=self.webhook)
        config = uvicorn.Config(
            app, log_level="warning", access_log=self.access_log, timeout_graceful_shutdown=10
        )
        try:
            run_until_stopped(config, self._socket)
        finally:
            self.close()

    def close(self) -> None:
        """Stop the webhook (after a last try at what it has queued), close the store and
        release the port (done by :meth:`run` when it returns)."""
        if self.webhook is not None:
            self.webhook.close()
            self.webhook = None
        if self.store is not None:
            self.store.close()
            self.store = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def _read_batch(body: bytes) -> dict[str, Any]:
    """The keyword arguments of :meth:`ProfileStore.apply` in a ``POST /events`` body."""
    usage = (
        'send a JSON object {"events": [event, ...]}, optionally with "as_of" and '
        '"horizon_days"; an event is {"event_id", "customer_id", "date", "amount"} or '
        '{"event_id", "id_a", "id_b"}'
    )
    try:
        batch = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"the body is not JSON ({err}): {usage}") from None
    if not isinstance(batch, dict) or not isinstance(batch.get("events"), list):
        raise DataError(f"the body is not a batch of events: {usage}")
    unknown = sorted(set(batch) - set(_BATCH_KEYS))
    if unknown:
        raise DataError(f"unknown keys {unknown} in the body: {usage}")
    if not batch["events"]:
        raise DataError("the batch has no events: send at least one")
    others = [n for n, event in enumerate(batch["events"]) if not isinstance(event, dict)]
    if others:
        raise DataError(f"events number {others[:10]} (from 0) are not JSON objects: {usage}")
    return batch


def _json(document: Any, status: int) -> Response:
    text = json.dumps(_strict(document), allow_nan=False, default=str)
    return Response(text, status_code=status, media_type="application/json")


def _unauthorized() -> Response:
    return Response(
        json.dumps({"error": "missing or wrong bearer token (Authorization: Bearer <token>)"}),
        status_code=401,
        media_type="application/json",
        headers={"WWW-Authenticate": "Bearer"},
    )


def _strict(value: Any) -> Any:
    """``value`` with every missing or non-finite number as None (strict JSON)."""
    if isinstance(value, dict):
        return {key: _strict(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_strict(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return None if value is pd.NA or value is pd.NaT else value
