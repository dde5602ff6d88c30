"""Segment transitions POSTed to a webhook, from a bounded queue, by a background thread.

Handing transitions over never waits: :meth:`Webhook.send` puts them on a queue of bounded
size and returns, so a failing or slow receiver never holds up the events that caused them.
When the queue is full, the transitions that do not fit are dropped (and counted). A thread
POSTs each queued transition as one JSON object; a delivery that fails (no connection, a
timeout, a status other than 2xx) is tried again after 0.5, 1, 2, 4 ... seconds, up to
``attempts`` times in all, then given up (and counted).
"""

from __future__ import annotations

import dataclasses
import json
import queue
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from typing import Any

from clvlab.errors import ClvlabError

#: Transitions waiting for delivery at most; more are dropped.
QUEUE_SIZE = 10_000
#: Deliveries of one transition tried at most (the first and the retries).
ATTEMPTS = 5
#: Seconds before the first retry; each further retry waits twice as long.
FIRST_BACKOFF_S = 0.5
#: Seconds a receiver has to answer one delivery.
TIMEOUT_S = 5.0
_STOP = object()


@dataclasses.dataclass
class WebhookCounters:
    """What became of the transitions handed to a :class:`Webhook`."""

    #: Waiting for delivery (or being delivered) now.
    queued: int = 0
    #: Delivered (the receiver answered 2xx).
    delivered: int = 0
    #: Deliveries tried again after a failure.
    retried: int = 0
    #: Given up after ``attempts`` failed deliveries.
    failed: int = 0
    #: Not queued: the queue was full.
    dropped: int = 0


class Webhook:
    """POST each transition handed to :meth:`send` to ``url``, in a background thread.

    Parameters
    ----------
    url
        The receiver: an ``http://`` or ``https://`` URL.
    queue_size
        Transitions waiting for delivery at most; when full, :meth:`send` drops the rest.
    attempts
        Deliveries of one transition tried at most before it is given up.
    backoff
        Seconds before the first retry; doubled for each next one.
    timeout
        Seconds the receiver has to answer a delivery.
    """

    def __init__(
        self,
        url: str,
        *,
        queue_size: int = QUEUE_SIZE,
        attempts: int = ATTEMPTS,
        backoff: float = FIRST_BACKOFF_S,
        timeout: float = TIMEOUT_S,
    ) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ClvlabError(
                f"webhook {url!r} is not an http(s) URL; give one such as "
                "http://127.0.0.1:8080/transitions"
            )
        if attempts < 1:
            raise ClvlabError(f"webhook attempts must be at least 1, got {attempts}")
        self.url, self.attempts, self.backoff, self.timeout = url, attempts, backoff, timeout
        self._queue: queue.Queue[object] = queue.Queue(maxsize=queue_size)
        self._counters = WebhookCounters()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="clvlab-webhook", daemon=True)
        self._thread.start()

    def send(self, transitions: Iterable[Mapping[str, Any]]) -> None:
        """Queue ``transitions`` for delivery (those that do not fit are dropped); never
        waits."""
        for transition in transitions:
            self._count(queued=1)  # before the thread can take it off the queue
            try:
                self._queue.put_nowait(dict(transition))
            except queue.Full:
                self._count(queued=-1, dropped=1)

    def counters(self) -> WebhookCounters:
        """A copy of the counters as they are now."""
        with self._lock:
            return dataclasses.replace(self._counters)

    def close(self, timeout: float = 5.0) -> None:
        """Stop: deliver what is queued within ``timeout`` seconds, each transition tried once
        more at most (no more waiting between retries); what is left is not delivered."""
        deadline = time.monotonic() + timeout
        self._stopping.set()
        try:
            self._queue.put(_STOP, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(max(0.0, deadline - time.monotonic()))

    def _run(self) -> None:
        while (transition := self._queue.get()) is not _STOP:
            delivered = self._deliver(json.dumps(transition, default=str).encode())
            self._count(queued=-1, **({"delivered": 1} if delivered else {"failed": 1}))

    def _deliver(self, body: bytes) -> bool:
        """POST ``body``, retrying with exponential backoff; whether it was delivered."""
        for attempt in range(self.attempts):
            if attempt:
                self._stopping.wait(self.backoff * 2 ** (attempt - 1))  # cut short by close()
                self._count(retried=1)
            request = urllib.request.Request(
                self.url, data=body, headers={"Content-Type": "application/json"}, method="POST"
            )
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    if 200 <= response.status < 300:
                        return True
            except (OSError, ValueError):  # refused, timed out, HTTP error status, bad answer
                pass
            if self._stopping.is_set():
                return False
        return False

    def _count(self, **changes: int) -> None:
        with self._lock:
            for name, change in changes.items():
                setattr(self._counters, name, getattr(self._counters, name) + change)
