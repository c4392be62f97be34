"""The listening socket (bound before the models load: a busy port fails the start at once)
and uvicorn, with the connection limits it lacks: a connection that sends nothing, or dribbles
its request head, stayed open for ever, and nothing capped how many are open. A connection
beyond `max_connections` gets a JSON 503 and is closed, unless its request line, read within
FIRST_LINE_S, is a health check (GET or HEAD of /healthz or /readyz): that one is served, then
closed, so a monitor can tell a full server from a dead one. A request head must be complete
within `head_timeout_s`."""
from __future__ import annotations

import errno
import json
import logging
import re
import socket
from dataclasses import dataclass

import h11
from uvicorn import Config, Server
from uvicorn.protocols.http.h11_impl import H11Protocol

from ..errors import EXIT_CANNOT_LISTEN, InputError, TryonError

log = logging.getLogger("tryon.serve")
FIRST_LINE_S = 1.0  # over the cap, the request line must arrive within this
HEALTH_CHECK = re.compile(rb"(GET|HEAD) /(healthz|readyz)(\?\S*)? HTTP/1\.[01]")


@dataclass(frozen=True)
class Connections:
    max_connections: int = 64  # open at once; beyond: health checks only, others 503 and closed
    keep_alive_s: float = 5.0  # an idle keep-alive connection is closed after this
    head_timeout_s: float = 10.0  # a request's line and headers must arrive within this

    def __post_init__(self):
        if self.max_connections < 1 or min(self.keep_alive_s, self.head_timeout_s) <= 0:
            raise InputError(f"connection limits must be positive, got {self}")


class CannotListen(TryonError, OSError):
    """The address cannot be listened on (port in use, no permission, no such address)."""
    exit_code = EXIT_CANNOT_LISTEN
    http_status = 503


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, or CannotListen saying why not."""
    if not 0 < port < 65536:
        raise InputError(f"--port {port}: a TCP port is 1-65535")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError) as exc:
        raise InputError(f"--host {host!r} is not an address this machine can listen on ({exc})") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        why = {errno.EADDRINUSE: "the port is in use (another server?): choose another --port",
               errno.EACCES: "permission denied (ports below 1024 need privileges): choose a port above 1023",
               errno.EADDRNOTAVAIL: "this machine has no such address: check --host"}.get(exc.errno, exc.strerror)
        raise CannotListen(f"cannot listen on {host}:{port}: {why}") from None
    return sock


def make_server(app, connections: Connections, log_level: str = "info") -> Server:
    """uvicorn over `app` with these limits; `.run(sockets=[listen(...)])` serves."""
    protocol = type("GuardedH11Protocol", (GuardedH11Protocol,), {"limits": connections})
    # No uvicorn access log: it names person ids in paths; Operations writes the tryon.access line instead.
    return Server(Config(app, http=protocol, timeout_keep_alive=connections.keep_alive_s, log_level=log_level,
                         lifespan="off", access_log=False))


def _busy_response(limit: int) -> bytes:
    body = json.dumps({"detail": f"busy: {limit} connections are open, the most this server keeps; "
                                 "retry in a moment"}).encode()
    return (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n"
            b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a cap on open connections and a deadline for request heads."""

    limits = Connections()
    _head_timer = None
    _over_cap = False  # opened beyond the cap: only a health check is served, then the connection closes
    _first_line = None  # bytes received while over the cap, until the request line is complete
    _refused = False

    def connection_made(self, transport):
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            self._over_cap, self._first_line = True, b""
            self._head_timer = self.loop.call_later(FIRST_LINE_S, self._refuse)
            return
        self._watch_head()

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._first_line is not None:
            self._first_line += data
            line, found, _ = self._first_line.partition(b"\r\n")
            if not found and len(self._first_line) < 1024:  # longer is no health check's line
                return
            if not (found and HEALTH_CHECK.fullmatch(line)):
                return self._refuse()
            data, self._first_line = self._first_line, None
            self._stop_head_timer()
        super().data_received(data)
        self._watch_head()

    def on_response_complete(self):
        if self._over_cap:
            self.timeout_keep_alive_handler()  # closes: a health check over the cap is not kept alive
        super().on_response_complete()

    def connection_lost(self, exc):
        self._stop_head_timer()
        super().connection_lost(exc)

    def _refuse(self):
        log.warning("refused a connection: %d are open (--max-connections)", self.limits.max_connections)
        self._stop_head_timer()
        self._refused, self._first_line = True, None
        self.transport.write(_busy_response(self.limits.max_connections))
        # Half-close and drain for a moment: closing with the request unread would reset the
        # connection, and the client would see the reset instead of the 503.
        self.transport.write_eof()
        self.loop.call_later(1.0, self.transport.close)

    def _watch_head(self):
        """A timer runs while a request head is awaited and the connection is not idle
        between requests (uvicorn's keep-alive timer covers that)."""
        awaiting = self.conn.their_state is h11.IDLE and not self.transport.is_closing() and \
            self.timeout_keep_alive_task is None
        if awaiting and self._head_timer is None:
            self._head_timer = self.loop.call_later(self.limits.head_timeout_s, self._head_late)
        elif not awaiting:
            self._stop_head_timer()

    def _stop_head_timer(self):
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_late(self):
        self._head_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()
