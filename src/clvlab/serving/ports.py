"""The port a server listens on: taken before anything else, and who holds it when it is in
use. Light on purpose (no FastAPI, no model): ``clvlab serve`` takes its port before it loads
the model, so a port in use is reported at once.
"""

from __future__ import annotations

import errno
import socket

from clvlab.errors import ClvlabError


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` for the server, or a ClvlabError in one line: the
    port is in use (by which process, when it can be found), or the address is not usable.

    The server is started on this socket, so no other process can take the port between
    the check and the start.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except (socket.gaierror, UnicodeError) as err:
        raise ClvlabError(
            f"cannot listen on {host!r}: {err}; use --host 127.0.0.1 (this machine only) or "
            "--host 0.0.0.0 (every interface)"
        ) from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
    try:
        sock.bind(address)
    except OSError as err:
        sock.close()
        if err.errno == errno.EADDRINUSE:
            raise ClvlabError(
                f"port {port} on {host} is in use{_user_of(port)}; pick another with --port"
            ) from None
        if err.errno == errno.EACCES:
            raise ClvlabError(
                f"cannot listen on port {port} on {host}: permission denied (ports below 1024 "
                "need privileges); pick another with --port"
            ) from None
        raise ClvlabError(
            f"cannot listen on {host} port {port}: {err.strerror or err}; check --host and --port"
        ) from None
    return sock


def _user_of(port: int) -> str:
    """`` by process PID (COMMAND)`` for the process listening on ``port``, if psutil can
    see it; else ``""``."""
    import psutil

    try:
        listening = [
            connection.pid
            for connection in psutil.net_connections(kind="tcp")
            if connection.laddr
            and connection.laddr.port == port
            and connection.status == psutil.CONN_LISTEN
            and connection.pid
        ]
        if not listening:
            return ""
        process = psutil.Process(listening[0])
        command = " ".join(process.cmdline()) or process.name()
    except (psutil.Error, OSError):
        return ""
    if len(command) > 80:
        command = command[:77] + "..."
    return f" by process {process.pid} ({command})"
