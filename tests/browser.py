"""A real headless browser for tests: Debian's ``chromium`` (installed with apt-get when
missing, see :func:`servers.debian_binary`), driven over the DevTools protocol on a pipe
(``--remote-debugging-pipe``: no port, no websocket library). Not a test module itself;
imported as ``import browser``.

Playwright's Python package could drive the same binary, but brings a Node.js driver and a
browser download of its own that the machines here cannot fetch; the protocol needs
nothing but the standard library.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import servers

#: How long one protocol command (or the page load) may take.
COMMAND_TIMEOUT_S = 60
#: What the page reports, collected in one expression.
_PAGE_STATE = """JSON.stringify({
  title: document.title,
  text: document.body.innerText,
  images: Array.from(document.images, (image) => ({
    alt: image.alt,
    complete: image.complete,
    width: image.naturalWidth,
    height: image.naturalHeight,
  })),
})"""


def chromium_binary() -> str:
    """The path of Debian's ``chromium`` (installed now when missing)."""
    return servers.debian_binary("chromium", "chromium", "a chromium or google-chrome binary")


@dataclass
class Page:
    """A page as the browser loaded it.

    Attributes
    ----------
    title, text
        ``document.title`` and the text the page shows (``innerText``).
    images
        Each ``<img>``: ``alt``, ``complete``, ``width`` and ``height`` (natural, 0 if it
        did not load).
    console_errors
        Errors the page printed to the console, exceptions, and errors the browser logged
        for it (a blocked or failed load).
    requests
        The URL of every request the page made (its first 100 characters).
    screenshot
        A PNG of the whole page.
    """

    title: str
    text: str
    images: list[dict[str, Any]]
    console_errors: list[str]
    requests: list[str]
    screenshot: bytes = field(repr=False)


class Chromium:
    """Headless Chromium, running until :meth:`close`."""

    def __init__(self, workdir: Path) -> None:
        binary = chromium_binary()
        to_browser, self._to_browser = os.pipe()
        self._from_browser, from_browser = os.pipe()
        command = [
            binary,
            "--headless",
            "--no-sandbox",  # as root, Chromium's sandbox refuses to start
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--remote-debugging-pipe",
            f"--user-data-dir={workdir / 'chromium-profile'}",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--mute-audio",
            "about:blank",
        ]
        self.log_path = workdir / "chromium.log"
        # The protocol pipe is the browser's file descriptors 3 (in) and 4 (out); bash puts
        # them there (dash takes only one-digit descriptors).
        with open(self.log_path, "wb") as log:
            self._process = subprocess.Popen(
                ["bash", "-c", f'exec "$@" 3<&{to_browser} 4>&{from_browser}', "bash", *command],
                pass_fds=(to_browser, from_browser),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        os.close(to_browser)
        os.close(from_browser)
        self._buffer = b""
        self._next_id = 0
        self._events: list[dict[str, Any]] = []

    def close(self) -> None:
        """Close the browser (and whatever it started: they share a process group)."""
        with contextlib.suppress(Exception):
            self._send("Browser.close")
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait(timeout=10)
        for fd in (self._to_browser, self._from_browser):
            with contextlib.suppress(OSError):
                os.close(fd)

    def open(self, path: Path, *, width: int = 1280, height: int = 900) -> Page:
        """Load the file ``path`` in a new tab of ``width`` x ``height`` CSS pixels, wait for
        its load event, and report what it shows (see :class:`Page`)."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable", session=session)
        metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}
        self.call("Emulation.setDeviceMetricsOverride", metrics, session=session)
        self._events.clear()
        self.call("Page.navigate", {"url": path.resolve().as_uri()}, session=session)
        self._wait_for("Page.loadEventFired", session)
        state = json.loads(
            self.call(
                "Runtime.evaluate",
                {"expression": _PAGE_STATE, "returnByValue": True},
                session=session,
            )["result"]["value"]
        )
        size = self.call("Page.getLayoutMetrics", session=session)["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
        shot = self.call(
            "Page.captureScreenshot",
            {"format": "png", "captureBeyondViewport": True, "clip": clip},
            session=session,
        )
        page = Page(
            title=state["title"],
            text=state["text"],
            images=state["images"],
            console_errors=self._console_errors(session),
            requests=[
                e["params"]["request"]["url"][:100]
                for e in self._events
                if e.get("sessionId") == session and e["method"] == "Network.requestWillBeSent"
            ],
            screenshot=base64.b64decode(shot["data"]),
        )
        self.call("Target.closeTarget", {"targetId": target})
        return page

    def _console_errors(self, session: str) -> list[str]:
        errors = []
        for event in self._events:
            if event.get("sessionId") != session:
                continue
            method, params = event["method"], event.get("params", {})
            if method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
                errors.append(" ".join(str(a.get("value", a)) for a in params["args"]))
            elif method == "Runtime.exceptionThrown":
                errors.append(params["exceptionDetails"].get("text", str(params)))
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                errors.append(f"{params['entry']['text']} ({params['entry'].get('url', '')})")
        return errors

    # --- the protocol: JSON messages, each ended by a NUL byte ------------------------

    def call(
        self, method: str, params: dict[str, Any] | None = None, *, session: str | None = None
    ) -> dict[str, Any]:
        """Send a command and return its result; events that come meanwhile are kept."""
        number = self._send(method, params, session)
        deadline = time.monotonic() + COMMAND_TIMEOUT_S
        while True:
            message = self._receive(deadline, method)
            if message.get("id") == number:
                if "error" in message:
                    pytest.fail(f"Chromium: {method} failed: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result
            if "method" in message:
                self._events.append(message)

    def _send(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None
    ) -> int:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        data = json.dumps(message).encode() + b"\0"
        while data:
            data = data[os.write(self._to_browser, data) :]
        return self._next_id

    def _wait_for(self, event: str, session: str) -> None:
        deadline = time.monotonic() + COMMAND_TIMEOUT_S
        while not any(e["method"] == event and e.get("sessionId") == session for e in self._events):
            message = self._receive(deadline, event)
            if "method" in message:
                self._events.append(message)

    def _receive(self, deadline: float, waiting_for: str) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self._from_browser], [], [], max(left, 0))
            if not ready:
                pytest.fail(f"Chromium: no {waiting_for} in {COMMAND_TIMEOUT_S} s\n{self._log()}")
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                pytest.fail(f"Chromium exited while waiting for {waiting_for}\n{self._log()}")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        parsed: dict[str, Any] = json.loads(message)
        return parsed

    def _log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


@contextlib.contextmanager
def chromium(workdir: Path) -> Iterator[Chromium]:
    """A headless Chromium for the block (its profile and log in ``workdir``)."""
    browser = Chromium(workdir)
    try:
        yield browser
    finally:
        browser.close()
