"""The gateway's HTTP/1.1 server: a thread per connection, requests parsed by httptools, answered on the thread that
read them.

Bots keep their connections open, so a connection's thread reads a request, runs the gateway on it (which blocks on
the journal, the budget and the exchange) and writes the answer, with no hand-off between an event loop and a
worker thread on the way: on 2 vCPUs that hand-off and a general framework's request machinery cost more than the
whole per-order budget (docs/benchmarks.md, "Gateway"). Work that only has to happen after the bot has its answer
(the journal row's final state, the budget's correction) runs on the same thread after the answer is written, before
the connection's next request is read.

Bounds: at most `max_connections` open connections (past it a 503 in Binance's shape), an idle connection is closed
after `idle_timeout_s`, a request must arrive whole within `request_timeout_s` of its first byte (else 408), its
head is at most `max_head_bytes` and its body at most `max_body_bytes`."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httptools

log = logging.getLogger(__name__)

READ_SIZE = 65536


@dataclass(slots=True)
class Request:
    method: str
    path: str  # percent-decoded, without the query
    query: str  # raw, as sent
    body: str
    headers: dict[str, str]  # names lower-cased


@dataclass(slots=True)
class Reply:
    status: int
    payload: Any  # JSON-encoded on the way out
    headers: dict[str, str] = field(default_factory=dict)
    # Run after the answer is written (on this connection's thread, before its next request is read).
    after: list[Callable[[], object]] = field(default_factory=list)


Handler = Callable[[Request], Reply]


class AfterAnswer(threading.local):
    """Work that may wait until the bot has its answer (the journal row's final state, the budget's correction):
    collected while this thread answers a request, run at once anywhere else (housekeeping, tests)."""

    tasks: list[Callable[[], object]] | None = None

    def defer(self, task: Callable[[], object]) -> None:
        if self.tasks is None:
            task()
        else:
            self.tasks.append(task)

    @contextlib.contextmanager
    def collecting(self) -> Iterator[list[Callable[[], object]]]:
        tasks: list[Callable[[], object]] = []
        self.tasks = tasks
        try:
            yield tasks
        finally:
            self.tasks = None


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _Parsed:
    """httptools callbacks for one connection: complete requests, in order (a client may pipeline).

    Called for every request's every header: each callback does its work inline (no helper calls)."""

    __slots__ = ("max_head", "max_body", "parser", "ready", "expect_continue", "started_at", "in_head", "head_fed",
                 "_url", "_headers", "_head_size", "_body", "_body_size", "_keep_alive")

    def __init__(self, max_head: int, max_body: int) -> None:
        self.max_head, self.max_body = max_head, max_body
        self.parser = httptools.HttpRequestParser(self)
        self.ready: list[tuple[Request, bool]] = []
        self.expect_continue = False
        self.started_at: float | None = None  # monotonic time the request in progress began arriving
        self.in_head = False  # a request's head is arriving
        self.head_fed = 0  # bytes fed while it arrives (counted by the connection)
        self._url = b""
        self._headers: dict[str, str] = {}
        self._head_size = 0
        self._body: list[bytes] = []
        self._body_size = 0
        self._keep_alive = True

    def on_message_begin(self) -> None:
        self.started_at = time.monotonic()
        self.in_head = True
        self.head_fed = 0
        self._url = b""
        self._headers = {}
        self._head_size = 0
        self._body = []
        self._body_size = 0
        self._keep_alive = True

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head_size += len(url)
        if self._head_size > self.max_head:
            raise BadRequest(431, HEAD_TOO_LARGE)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_size += len(name) + len(value)
        if self._head_size > self.max_head:
            raise BadRequest(431, HEAD_TOO_LARGE)
        key = _HEADER_NAMES.get(name)
        if key is None:
            key = name.decode("latin-1").lower()
            if len(name) <= 64 and len(_HEADER_NAMES) < MAX_HEADER_NAMES:
                _HEADER_NAMES[name] = key
        text = value.decode("latin-1")
        headers = self._headers
        headers[key] = f"{headers[key]}, {text}" if key in headers else text

    def on_headers_complete(self) -> None:
        self.in_head = False
        parser = self.parser
        self._keep_alive = parser.should_keep_alive()
        if parser.should_upgrade():
            raise BadRequest(400, "Protocol upgrades are not served here.")
        headers = self._headers
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            raise BadRequest(413, BODY_TOO_LARGE)
        expect = headers.get("expect")
        self.expect_continue = expect is not None and expect.lower() == "100-continue"

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)
        if self._body_size > self.max_body:
            raise BadRequest(413, BODY_TOO_LARGE)
        self._body.append(body)

    def on_message_complete(self) -> None:
        url = self._url
        if url[:1] == b"/" and b"#" not in url:
            # Origin form, as bots send it: what httptools.parse_url returns for it (the parser has already refused
            # any byte parse_url would), without building its URL object.
            raw_path, _, query = url.partition(b"?")
        else:
            parts = httptools.parse_url(url or b"/")
            raw_path, query = parts.path or b"/", parts.query
        path = raw_path.decode("latin-1")
        raw_method = self.parser.get_method()
        body = self._body
        self.ready.append((Request(
            _METHODS.get(raw_method) or raw_method.decode("latin-1"),
            unquote(path) if "%" in path else path,
            query.decode("latin-1") if query else "",
            b"".join(body).decode("utf-8", errors="replace") if body else "",
            self._headers,
        ), self._keep_alive))
        self.expect_continue = False
        self.started_at = None


HEAD_TOO_LARGE = "Request header fields too large."
BODY_TOO_LARGE = "Request body too large."
_METHODS = {m.encode(): m for m in ("GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH")}
# Header names as bots send them -> lower-cased: a lookup instead of a decode and a lower per header. Bounded (short
# names, at most MAX_HEADER_NAMES), so a client inventing names cannot grow it; others are decoded each time.
_HEADER_NAMES: dict[bytes, str] = {}
MAX_HEADER_NAMES = 512


def _error(message: str) -> bytes:
    return json.dumps({"code": -1000, "msg": message}, separators=(",", ":")).encode()


# One encoder for every answer: json.dumps with options builds a new JSONEncoder per call.
_encode_json = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode
_REASONS = {int(status): status.phrase for status in HTTPStatus}


def encode_reply(reply: Reply, *, close: bool) -> bytes:
    return _frame(reply.status, _encode_json(reply.payload).encode(), reply.headers, close=close)


def _frame(status: int, body: bytes, headers: dict[str, str], *, close: bool) -> bytes:
    head = (f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n")
    for name, value in headers.items():
        head += f"{name}: {value}\r\n"
    if close:
        head += "connection: close\r\n"
    return (head + "\r\n").encode("latin-1") + body


class GatewayHTTPServer:
    def __init__(self, handler: Handler, *, host: str = "127.0.0.1", port: int = 0, unix_socket: Path | None = None,
                 max_connections: int = 256, idle_timeout_s: float = 75.0, max_head_bytes: int = 64 * 1024,
                 max_body_bytes: int = 1024 * 1024, request_timeout_s: float = 10.0,
                 name: str = "keyguard-gateway") -> None:
        self.handler = handler
        self.host, self.port, self.unix_socket = host, port, unix_socket
        self.max_connections = max_connections
        self.idle_timeout_s = idle_timeout_s
        self.request_timeout_s = request_timeout_s
        self.max_head_bytes, self.max_body_bytes = max_head_bytes, max_body_bytes
        self.name = name
        self._listener: socket.socket | None = None
        self._accepting: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self._busy: set[socket.socket] = set()  # connections inside a request
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._stopping = False

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def start(self) -> str:
        """Bind and start accepting; the URL bots use (`unix:PATH` for a Unix socket)."""
        self._listener = self._bind()
        self._accepting = threading.Thread(target=self._accept_loop, name=f"{self.name}-accept", daemon=True)
        self._accepting.start()
        if self.unix_socket is not None:
            return f"unix:{self.unix_socket}"
        host, port = self._listener.getsockname()[:2]
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def _bind(self) -> socket.socket:
        if self.unix_socket is not None:
            path = self.unix_socket
            _remove_stale_socket(path)
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(str(path))
            # Owner and group only: the socket file is the gateway's door (config: listen.unix_socket).
            os.chmod(path, 0o660)
        else:
            family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
            listener = socket.socket(family, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self.host, self.port))
        listener.listen(128)
        return listener

    def stop(self, grace_s: float = 5.0) -> None:
        """Stop accepting, let requests in progress finish (up to `grace_s`), then close every connection."""
        with self._lock:
            self._stopping = True
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
        if self._accepting is not None:
            self._accepting.join(timeout=5)
        with self._idle:
            self._idle.wait_for(lambda: not self._busy, timeout=grace_s)
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        if self.unix_socket is not None:
            with contextlib.suppress(OSError):
                self.unix_socket.unlink()

    # -- connections -------------------------------------------------------------------------------------------
    def _accept_loop(self) -> None:
        assert self._listener is not None
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return  # the listener was closed: stopping
            with self._lock:
                refused = self._stopping or len(self._connections) >= self.max_connections
                if not refused:
                    self._connections.add(connection)
            if refused:
                self._refuse(connection)
                continue
            threading.Thread(target=self._serve, args=(connection,), name=f"{self.name}-connection",
                             daemon=True).start()

    def _refuse(self, connection: socket.socket) -> None:
        with contextlib.suppress(OSError):
            connection.settimeout(1.0)
            connection.sendall(_frame(503, _error("KEYGUARD_BUSY: the gateway has no room for another "
                                                       "connection; reuse a kept-alive one"),
                                      {"Retry-After": "1"}, close=True))
        connection.close()

    def _serve(self, connection: socket.socket) -> None:
        try:
            if connection.family != socket.AF_UNIX:
                connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            connection.settimeout(self.idle_timeout_s)
            self._converse(connection)
        except OSError:
            pass  # the bot went away, or its connection idled out
        finally:
            with self._lock:
                self._connections.discard(connection)
            connection.close()

    def _converse(self, connection: socket.socket) -> None:
        parsed = _Parsed(self.max_head_bytes, self.max_body_bytes)
        # httptools hands a header over only once it has ended, so the head bound (counted per header) cannot stop
        # one endless header line: its bytes pile up in httptools, copied at each read. A head still arriving past
        # this many bytes fed is refused: more than any head within the bound takes unless its values are padded
        # with whitespace (at most 4 bytes a counted byte, as in "a:\r\n", plus the request line's framing, plus
        # the read in which it began, which may hold the end of an earlier request).
        head_net = 4 * self.max_head_bytes + READ_SIZE + 1024
        waiting_s = self.idle_timeout_s
        while True:
            # Between requests a connection may idle; a request that has begun must arrive whole in time, however
            # slowly its bytes drip (or it would hold its thread past any idle timeout).
            wait_s = self.idle_timeout_s if parsed.started_at is None else (
                parsed.started_at + self.request_timeout_s - time.monotonic())
            if wait_s <= 0:
                connection.sendall(_frame(408, _error("Request timeout: the request did not arrive whole in "
                                                      f"{self.request_timeout_s:g}s."), {}, close=True))
                return
            if wait_s != waiting_s:
                connection.settimeout(wait_s)
                waiting_s = wait_s
            try:
                data = connection.recv(READ_SIZE)
            except TimeoutError:
                if parsed.started_at is None:
                    return  # idle: close quietly, as a kept-alive connection is
                continue  # the check above answers 408
            if not data:
                return
            try:
                parsed.parser.feed_data(data)
            except (BadRequest, httptools.HttpParserError) as exc:
                # httptools wraps what a callback raised in its own error; the reason is ours.
                bad = next((e for e in (exc, exc.__cause__, exc.__context__) if isinstance(e, BadRequest)), None)
                status, message = (bad.status, str(bad)) if bad else (400, f"Malformed HTTP request: {exc}")
                connection.sendall(_frame(status, _error(message), {}, close=True))
                return
            if parsed.in_head:
                parsed.head_fed += len(data)
                if parsed.head_fed > head_net:
                    connection.sendall(_frame(431, _error(HEAD_TOO_LARGE), {}, close=True))
                    return
            if parsed.expect_continue and not parsed.ready:
                connection.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                parsed.expect_continue = False
            while parsed.ready:
                request, keep_alive = parsed.ready.pop(0)
                if not self._answer(connection, request, keep_alive):
                    return

    def _answer(self, connection: socket.socket, request: Request, keep_alive: bool) -> bool:
        with self._lock:
            if self._stopping:
                keep_alive = False
            self._busy.add(connection)
        try:
            close = not keep_alive
            after: list[Callable[[], object]] = []
            try:
                reply = self.handler(request)
                after = reply.after  # run even when the answer fails to encode: an order's lock is released there
                answer = encode_reply(reply, close=close)
            except Exception:  # noqa: BLE001 - a bug answers in Binance's shape and is logged, never a dropped line
                log.exception("gateway: answering %s %s failed", request.method, request.path)
                answer = _frame(500, _error("KEYGUARD_INTERNAL: see the gateway's log"), {}, close=close)
            try:
                connection.sendall(answer)
            finally:
                for task in after:
                    try:
                        task()
                    except Exception:  # noqa: BLE001 - after-answer work is logged; the answer stands
                        log.exception("gateway: work after answering %s %s failed", request.method, request.path)
            return not close
        finally:
            with self._idle:
                self._busy.discard(connection)
                if self._stopping:  # only stop() waits for it, and it sets _stopping (under this lock) first
                    self._idle.notify_all()


def _remove_stale_socket(path: Path) -> None:
    """A socket file left by a gateway that died: removed when nothing answers on it. Anything else is refused."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise OSError(f"{path} exists and is not a socket; refusing to replace it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        path.unlink()
        return
    finally:
        probe.close()
    raise OSError(f"{path}: another process is already serving on this socket")
