"""Kept-alive HTTP/1.1 connections to one exchange host, shared by a client's threads.

The order path's own transport: a request is one write of its header lines on a socket that is already open and
reads of the answer into `httptools` (llhttp, the C parser uvicorn uses). A general-purpose client's URL, cookie
and redirect machinery costs more than a loopback round trip (see docs/benchmarks.md, "Gateway"), and even
`http.client`'s line-by-line reads and `email` header parsing cost about 0.15 ms of the client's CPU more per
request than this. No proxy is ever taken from the environment: exchange keys are bound to the host's address, so
every call leaves from it (or from `source_address`)."""

from __future__ import annotations

import re
import select
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import httptools

from keyguard.errors import ConfigError

MAX_ANSWER_BYTES = 64 * 1024 * 1024  # the largest exchange answer (exchangeInfo) is a few MB; past this it is not one
_READ_SIZE = 64 * 1024
# Methods whose requests carry a (here always empty) body: servers may wait for a length or refuse without one.
_SAYS_LENGTH = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Answers to these have a framing the parser cannot be told about (HEAD: a length but no body; CONNECT: a tunnel).
_UNSUPPORTED = frozenset({"HEAD", "CONNECT"})
_TARGET = re.compile(r"/[\x21-\x7e]*")  # visible ASCII only: a space or line break would forge the request
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEADER_VALUE = re.compile(r"[^\r\n\x00]*")


class ConnectionTimeout(Exception):
    """No answer (or no connection) within the timeout; whether the request arrived is unknown."""


class ConnectionFailed(Exception):
    """The connection failed or was cut before a whole answer arrived; whether the request arrived is unknown."""


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]  # names lower-cased
    body: bytes


class _Connection:
    """An open socket with its own read buffer; `heard` says whether the current request got any answer byte."""

    __slots__ = ("sock", "buffer", "heard")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray(_READ_SIZE)
        self.heard = False

    def close(self) -> None:
        self.sock.close()


class _Unasked(Exception):
    """The server began another message after the answer: nothing was asked for it."""


class _Reading:
    """The parser's callbacks for one request: the final answer's status, headers and body; interim (1xx)
    answers are read and dropped."""

    __slots__ = ("parser", "status", "headers", "chunks", "headers_done", "until_eof", "done", "keep_alive")

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.headers: dict[str, str] = {}
        self.chunks: list[bytes] = []
        self.headers_done = False
        self.until_eof = False
        self.done = False
        self.keep_alive = False

    def on_message_begin(self) -> None:
        if self.done:
            raise _Unasked
        self.headers = {}
        self.chunks = []
        self.headers_done = False

    def on_header(self, name: bytes, value: bytes) -> None:
        # Latin-1 as http.client decoded them; a repeated name keeps its last value, as before.
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.headers_done = True
        # With neither a length nor chunks (a final coding other than chunked counts as none), the body runs to
        # the connection's end: llhttp cannot be told of that end here, so the EOF check in `_read` decides.
        coding = self.headers.get("transfer-encoding")
        if coding is not None:
            self.until_eof = coding.rsplit(",", 1)[-1].strip().lower() != "chunked"
        else:
            self.until_eof = "content-length" not in self.headers

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        if self.status < 200:
            return  # an interim answer (100 Continue, 103 Early Hints): the real one follows
        self.done = True
        # Asked here, not after feed_data: once the message is finished llhttp answers False.
        self.keep_alive = self.parser.should_keep_alive()

    def ended(self) -> None:
        """The server closed the connection: the end of a body that runs to it, else an answer cut short."""
        if not (self.headers_done and self.until_eof and self.status >= 200):
            raise ConnectionFailed("connection closed before a whole answer")
        self.done = True
        self.keep_alive = False

    def answer(self) -> Answer:
        return Answer(self.status, self.headers, b"".join(self.chunks))


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
        # Without a context, https verifies against the system's authorities, as http.client's default did.
        self.tls = ssl.create_default_context() if tls is None and self.https else tls
        self.source = (source_address, 0) if source_address else None
        self.max_idle = max_idle
        host = f"[{self.host}]" if ":" in self.host else self.host
        self._host_header = host if self.port == (443 if self.https else 80) else f"{host}:{self.port}"
        self._idle: list[_Connection] = []
        self._lock = threading.Lock()
        self._closed = False

    def request(self, method: str, target: str, headers: dict[str, str], timeout_s: float,
                while_waiting: Callable[[], None] | None = None) -> Answer:
        """Send `method target` (path and query, below the base URL's prefix) and read the whole answer. Any
        failure once the request may have left raises ConnectionFailed or ConnectionTimeout, and is not retried
        here: a resent order could be a second order. The one exception is a reused connection that failed
        before any answer byte: the exchange closed it an instant before (its close not yet seen when the
        connection was taken), and a GET is safe to send again, once, on a new connection. `while_waiting` runs
        after the request is sent and before its answer is read (work that need not hold the answer up): once, or
        for a GET sent again, after each sending."""
        message = self._message(method, target, headers)
        connection = self._take(timeout_s)
        if connection is not None:
            try:
                return self._exchange(connection, message, while_waiting)
            except ConnectionFailed:
                if method != "GET" or connection.heard:
                    raise
        return self._exchange(self._connect(timeout_s), message, while_waiting)

    def _message(self, method: str, target: str, headers: dict[str, str]) -> bytes:
        """The request's bytes; a target or header that would break out of its line is refused before anything
        is sent (it is a caller's bug, not an outcome to guess at)."""
        if method in _UNSUPPORTED or not method.isalpha() or not method.isascii():
            raise ValueError(f"unsupported method {method!r}")
        path = self.prefix + target
        if not _TARGET.fullmatch(path):
            raise ValueError(f"request target {path!r}: expected a path and query of visible ASCII")
        given = {name.lower() for name in headers}
        lines = [f"{method} {path} HTTP/1.1"]
        if "host" not in given:
            lines.append(f"Host: {self._host_header}")
        if "accept-encoding" not in given:
            lines.append("Accept-Encoding: identity")  # as http.client sent: the body is read as JSON, never compressed
        for name, value in headers.items():
            if not (_HEADER_NAME.fullmatch(name) and _HEADER_VALUE.fullmatch(value)):
                raise ValueError(f"header {name!r}: a name must be a token, a value must not break its line")
            lines.append(f"{name}: {value}")
        if method in _SAYS_LENGTH and "content-length" not in given:
            lines.append("Content-Length: 0")
        lines.append("\r\n")
        return "\r\n".join(lines).encode("latin-1")

    def _exchange(self, connection: _Connection, message: bytes,
                  while_waiting: Callable[[], None] | None = None) -> Answer:
        connection.heard = False
        reading = _Reading()
        try:
            connection.sock.sendall(message)
            if while_waiting is not None:
                while_waiting()
            self._read(connection, reading)
        except TimeoutError:
            connection.close()
            raise ConnectionTimeout from None
        except ConnectionFailed:
            connection.close()
            raise
        except (OSError, httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            connection.close()
            raise ConnectionFailed(type(exc).__name__) from None
        finally:
            del reading.parser  # it holds the callbacks, bound to `reading`: break the cycle now, not in a GC pass
        if reading.keep_alive:
            self._give_back(connection)
        else:
            connection.close()
        return reading.answer()

    @staticmethod
    def _read(connection: _Connection, reading: _Reading) -> None:
        """Read until the parser has a whole final answer (keep_alive False if the connection may not carry
        another request)."""
        view = memoryview(connection.buffer)
        received = 0
        while not reading.done:
            size = connection.sock.recv_into(view)
            if not size:
                reading.ended()
                return
            connection.heard = True
            received += size
            if received > MAX_ANSWER_BYTES:
                raise ConnectionFailed(f"answer larger than {MAX_ANSWER_BYTES} bytes")
            try:
                reading.parser.feed_data(view[:size])
            except (httptools.HttpParserError, httptools.HttpParserUpgrade):
                if not reading.done:
                    raise
                # Bytes after a whole answer (unasked, or after "Connection: close"): the answer stands, the
                # connection is not trusted with another request.
                reading.keep_alive = False

    def _take(self, timeout_s: float) -> _Connection | None:
        """An idle connection still open, else None."""
        with self._lock:
            while self._idle:
                connection = self._idle.pop()
                if not _dropped(connection.sock):
                    connection.sock.settimeout(timeout_s)
                    return connection
                connection.close()
        return None

    def _connect(self, timeout_s: float) -> _Connection:
        try:
            sock = socket.create_connection((self.host, self.port), timeout_s, self.source)
        except TimeoutError:
            raise ConnectionTimeout from None
        except OSError as exc:
            raise ConnectionFailed(type(exc).__name__) from None
        try:
            # A request is one small write: it must leave now, not wait for the previous segment's ACK.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.https and self.tls is not None:
                sock = self.tls.wrap_socket(sock, server_hostname=self.host)
        except TimeoutError:
            sock.close()
            raise ConnectionTimeout from None
        except OSError as exc:  # ssl.SSLError too: an exchange whose certificate cannot be verified
            sock.close()
            raise ConnectionFailed(type(exc).__name__) from None
        return _Connection(sock)

    def _give_back(self, connection: _Connection) -> None:
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


def _dropped(sock: socket.socket) -> bool:
    """An idle connection the server has closed (or sent something unasked on) must not carry a request: it would
    fail after the request might count as sent."""
    if sock.fileno() < 0:
        return True
    if isinstance(sock, ssl.SSLSocket) and sock.pending():
        return True  # bytes already decrypted and waiting: unasked
    poller = select.poll()
    poller.register(sock, select.POLLIN | select.POLLERR | select.POLLHUP)
    try:
        return bool(poller.poll(0))
    except OSError:
        return True
