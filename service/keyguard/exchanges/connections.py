"""Kept-alive HTTP/1.1 connections to one exchange host, shared by a client's threads.

The order path's own transport: a request costs one `http.client` exchange on a connection that is already
open, not a general-purpose client's URL, cookie and redirect machinery (which cost more than a loopback round
trip; see docs/benchmarks.md, "Gateway"). No proxy is ever taken from the environment: exchange keys are bound to
the host's address, so every call leaves from it (or from `source_address`)."""

from __future__ import annotations

import http.client
import select
import ssl
import threading
from dataclasses import dataclass
from urllib.parse import urlsplit

from keyguard.errors import ConfigError


class ConnectionTimeout(Exception):
    """No answer (or no connection) within the timeout; whether the request arrived is unknown."""


class ConnectionFailed(Exception):
    """The connection failed or was cut before a whole answer arrived; whether the request arrived is unknown."""


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]  # names lower-cased
    body: bytes


class KeptAliveConnections:
    """A small pool of open connections to `base_url`'s host; each thread takes one for a whole request."""

    def __init__(self, base_url: str, *, tls: ssl.SSLContext | None, source_address: str | None = None,
                 max_idle: int = 8) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"exchange base URL {base_url!r}: expected http(s)://host[:port][/prefix]")
        self.https = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.https else 80)
        self.prefix = parts.path.rstrip("/")
        self.tls = tls
        self.source = (source_address, 0) if source_address else None
        self.max_idle = max_idle
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self._closed = False

    def request(self, method: str, target: str, headers: dict[str, str], timeout_s: float) -> Answer:
        """Send `method target` (path and query, below the base URL's prefix) and read the whole answer. Any
        failure once the request may have left raises ConnectionFailed or ConnectionTimeout, and is not retried
        here: a resent order could be a second order. The one exception is a read on a reused connection that
        failed before any answer: the exchange closed it an instant before (its close not yet seen when the
        connection was taken), and a GET is safe to send again, once, on a new connection."""
        connection, reused = self._take(timeout_s)
        try:
            return self._exchange(connection, method, target, headers)
        except ConnectionFailed:
            if not (reused and method == "GET"):
                raise
        return self._exchange(self._new(timeout_s), method, target, headers)

    def _exchange(self, connection: http.client.HTTPConnection, method: str, target: str,
                  headers: dict[str, str]) -> Answer:
        try:
            connection.request(method, self.prefix + target, headers=headers)
            response = connection.getresponse()
            body = response.read()
        except TimeoutError:
            connection.close()
            raise ConnectionTimeout from None
        except (OSError, http.client.HTTPException) as exc:
            connection.close()
            raise ConnectionFailed(type(exc).__name__) from None
        if response.will_close:
            connection.close()
        else:
            self._give_back(connection)
        return Answer(response.status, {name.lower(): value for name, value in response.getheaders()}, body)

    def _take(self, timeout_s: float) -> tuple[http.client.HTTPConnection, bool]:
        """An idle connection still open (True), else a new one (False)."""
        with self._lock:
            while self._idle:
                connection = self._idle.pop()
                if not _dropped(connection):
                    connection.sock.settimeout(timeout_s)  # type: ignore[union-attr]
                    return connection, True
                connection.close()
        return self._new(timeout_s), False

    def _new(self, timeout_s: float) -> http.client.HTTPConnection:
        if self.https:
            return http.client.HTTPSConnection(self.host, self.port, timeout=timeout_s, source_address=self.source,
                                               context=self.tls)
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout_s, source_address=self.source)

    def _give_back(self, connection: http.client.HTTPConnection) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < self.max_idle:
                self._idle.append(connection)
                return
        connection.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()


def _dropped(connection: http.client.HTTPConnection) -> bool:
    """An idle connection the server has closed (or sent something unasked on) must not carry a request: it would
    fail after the request might count as sent."""
    sock = connection.sock
    if sock is None:
        return True
    poller = select.poll()
    poller.register(sock, select.POLLIN | select.POLLERR | select.POLLHUP)
    try:
        return bool(poller.poll(0))
    except OSError:
        return True
