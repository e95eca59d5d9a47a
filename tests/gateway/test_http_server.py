"""The gateway's own HTTP server, met the way bots and operators meet it: raw sockets a sloppy or hostile client would
write, stock clients, and the gateway's journal afterwards.

Bounds (connections, head and body size, idle time) and a stop that lets an order in progress finish are tested on
the server with a small handler; malformed input, pipelining, chunked bodies and the work done after an answer are
tested on a running gateway in front of the sandbox."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import socket
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from keyguard.gateway.http_server import GatewayHTTPServer, Reply, Request
from keyguard.gateway.server import GatewayHandle
from keyguard.sandbox import SandboxHandle
from keyguard.worker.journal import OrderStatus
from tests.gateway.conftest import bot_key


@contextmanager
def serving(handler: Any = None, **settings: Any) -> Iterator[tuple[GatewayHTTPServer, str]]:
    def echo(request: Request) -> Reply:
        return Reply(200, {"method": request.method, "path": request.path, "query": request.query,
                           "body": request.body})

    server = GatewayHTTPServer(handler or echo, **settings)
    url = server.start()
    try:
        yield server, url
    finally:
        server.stop(grace_s=2.0)


def address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def exchange(sock: socket.socket, raw: bytes, answers: int = 1, timeout_s: float = 10.0) -> list[tuple[int, Any]]:
    """Send raw bytes and read `answers` whole answers (status, JSON body)."""
    sock.settimeout(timeout_s)
    if raw:
        sock.sendall(raw)
    buffer, out = b"", []
    while len(out) < answers:
        while b"\r\n\r\n" not in buffer:
            chunk = sock.recv(65536)
            if not chunk:
                return out
            buffer += chunk
        head, _, rest = buffer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        if status == 100:
            buffer = rest
            continue
        if "content-length" not in headers and headers.get("connection") == "close":
            # No length: the body runs to the end of the connection (the fast lane's stack, for a request it
            # cannot parse).
            while chunk := sock.recv(65536):
                rest += chunk
            headers["content-length"] = str(len(rest))
        length = int(headers.get("content-length", "0"))
        while len(rest) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
        raw = rest[:length]
        try:
            out.append((status, json.loads(raw) if length else None))
        except ValueError:  # the fast lane's HTTP stack words a request it cannot parse in plain text
            out.append((status, {"text": raw.decode("latin-1")}))
        buffer = rest[length:]
    return out


def signed(key: Any, params: dict[str, Any]) -> str:
    query = urlencode({**params, "timestamp": int(time.time() * 1000)})
    return f"{query}&signature={hmac.new(key.secret.encode(), query.encode(), hashlib.sha256).hexdigest()}"


# -- on a running gateway -----------------------------------------------------------------------------------------
def test_malformed_requests_get_a_clear_400_and_the_gateway_keeps_serving(gateway: GatewayHandle) -> None:
    host, port = address(gateway.url)
    for garbage in (b"NOT HTTP AT ALL\r\n\r\n", b"GET /api/v3/time HTTP/1.1\r\nHost x\r\n\r\n",
                    b"POST /api/v3/order HTTP/1.1\r\nContent-Length: abc\r\n\r\n"):
        with socket.create_connection((host, port)) as sock:
            [(status, body)] = exchange(sock, garbage)
        assert status == 400 and ("Malformed HTTP request" in body.get("msg", "")
                                  or "400 Bad Request" in body.get("text", "")), body
    assert "serverTime" in httpx.get(f"{gateway.url}/api/v3/time").json()


def test_pipelined_orders_on_one_connection_are_answered_in_order(gateway: GatewayHandle) -> None:
    key = bot_key(gateway, "alpha")
    host, port = address(gateway.url)
    requests = b"".join(
        (f"POST /api/v3/order?{signed(key, {'symbol': 'BTCUSDT', 'side': 'BUY', 'type': 'MARKET', 'quantity': '0.001', 'newClientOrderId': f'pipe-{i}'})} HTTP/1.1\r\n"  # noqa: E501
         f"Host: gateway\r\nX-MBX-APIKEY: {key.api_key}\r\n\r\n").encode() for i in range(3))
    with socket.create_connection((host, port)) as sock:
        answers = exchange(sock, requests, answers=3)
    assert [(status, body["clientOrderId"], body["status"]) for status, body in answers] == [
        (200, f"pipe-{i}", "FILLED") for i in range(3)]


def test_an_order_in_a_chunked_form_body_is_placed(gateway: GatewayHandle) -> None:
    key = bot_key(gateway, "alpha")
    host, port = address(gateway.url)
    body = signed(key, {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.001",
                        "newClientOrderId": "chunked-1"}).encode()
    half = len(body) // 2
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:half], body[half:])) + b"0\r\n\r\n"
    raw = (b"POST /api/v3/order HTTP/1.1\r\nHost: gateway\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n"
           b"Content-Type: application/x-www-form-urlencoded\r\nX-MBX-APIKEY: " + key.api_key.encode() + b"\r\n\r\n")
    with socket.create_connection((host, port)) as sock:
        [(status, answer)] = exchange(sock, raw + chunks)
    assert status == 200 and answer["clientOrderId"] == "chunked-1" and answer["status"] == "FILLED"


def test_the_journal_holds_each_answered_orders_final_state(gateway: GatewayHandle) -> None:
    """The final write happens after the bot has its answer; it still happens, before the next request on the
    connection is read."""
    key = bot_key(gateway, "alpha")
    with httpx.Client(base_url=gateway.url, headers={"X-MBX-APIKEY": key.api_key}) as http:
        answers = [http.post(f"/api/v3/order?{signed(key, {'symbol': 'BTCUSDT', 'side': side, 'type': 'MARKET', 'quantity': '0.001'})}").json()  # noqa: E501
                   for side in ("BUY", "SELL", "BUY")]
        http.get("/api/v3/time")  # read on the same connection after the last order's after-answer work
    rows = {row.exchange_order_id: row for row in gateway.gateway.journal.orders()}
    assert [(rows[str(a["orderId"])].status, rows[str(a["orderId"])].executed_qty) for a in answers] == [
        (OrderStatus.FILLED, 0.001)] * 3


def test_a_retry_on_another_connection_right_after_the_answer_gets_the_same_order(
        gateway: GatewayHandle, sandbox: SandboxHandle) -> None:
    key = bot_key(gateway, "alpha")
    query = signed(key, {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.001",
                         "newClientOrderId": "again-1"})
    with httpx.Client(base_url=gateway.url, headers={"X-MBX-APIKEY": key.api_key}) as first, \
            httpx.Client(base_url=gateway.url, headers={"X-MBX-APIKEY": key.api_key}) as second:
        placed = first.post(f"/api/v3/order?{query}").json()
        retried = second.post(f"/api/v3/order?{query}").json()
    assert retried["orderId"] == placed["orderId"] and retried["clientOrderId"] == "again-1"
    assert gateway.gateway.desk.counters["orders_sent"] == 1


# -- the server's bounds ----------------------------------------------------------------------------------------
def test_past_the_connection_bound_a_bot_gets_503_with_retry_after_and_open_connections_keep_working() -> None:
    with serving(max_connections=2) as (_, url):
        host, port = address(url)
        held = [socket.create_connection((host, port)) for _ in range(2)]
        try:
            assert exchange(held[0], b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")[0][0] == 200
            with socket.create_connection((host, port)) as extra:
                extra.settimeout(5)
                extra.sendall(b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n")
                answer = extra.recv(65536).decode()
            assert answer.startswith("HTTP/1.1 503") and "retry-after: 1" in answer.lower()
            assert "KEYGUARD_BUSY" in answer
            assert exchange(held[1], b"GET /c HTTP/1.1\r\nHost: x\r\n\r\n")[0] == (
                200, {"method": "GET", "path": "/c", "query": "", "body": ""})
        finally:
            for sock in held:
                sock.close()


@pytest.mark.parametrize(("raw", "status"), [
    (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 431),
    (b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n", 413),
])
def test_oversized_requests_are_refused_with_their_reason(raw: bytes, status: int) -> None:
    with serving() as (_, url), socket.create_connection(address(url)) as sock:
        answers = exchange(sock, raw)
    assert answers and answers[0][0] == status


def test_an_idle_connection_is_closed_after_the_idle_timeout() -> None:
    with serving(idle_timeout_s=0.3) as (_, url), socket.create_connection(address(url)) as sock:
        assert exchange(sock, b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")[0][0] == 200
        sock.settimeout(5)
        started = time.monotonic()
        assert sock.recv(1) == b""  # the server closed it
        assert time.monotonic() - started < 3


def test_stopping_lets_a_request_in_progress_finish() -> None:
    entered, release = threading.Event(), threading.Event()

    def slow(request: Request) -> Reply:
        entered.set()
        release.wait(5)
        return Reply(200, {"done": request.path})

    result: list[Any] = []
    with serving(slow) as (server, url):
        def call() -> None:
            result.append(httpx.get(f"{url}/order", timeout=10).json())

        caller = threading.Thread(target=call)
        caller.start()
        assert entered.wait(5)
        stopper = threading.Thread(target=server.stop)
        stopper.start()
        time.sleep(0.2)
        release.set()
        caller.join(10)
        stopper.join(10)
    assert result == [{"done": "/order"}]


def test_work_after_the_answer_runs_after_the_bot_has_it_and_a_failure_there_keeps_serving() -> None:
    order: list[str] = []

    def handler(request: Request) -> Reply:
        def after() -> None:
            order.append(f"after {request.path}")
            if request.path == "/boom":
                raise RuntimeError("after-answer failure")

        return Reply(200, {"path": request.path}, after=[after])

    with serving(handler) as (_, url), httpx.Client(base_url=url) as http:
        assert http.get("/boom").json() == {"path": "/boom"}
        assert http.get("/next").json() == {"path": "/next"}
    assert order[:2] == ["after /boom", "after /next"]


def test_unix_socket_is_owner_and_group_only_a_stale_file_is_replaced_and_a_live_one_refused(tmp_path: Path) -> None:
    path = tmp_path / "gw.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # a socket file nobody serves: a gateway that died
    with serving(unix_socket=path) as (_, url):
        assert url == f"unix:{path}"
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(path)), base_url="http://gateway") as http:
            assert http.get("/ping").json()["path"] == "/ping"
        with pytest.raises(OSError, match="already serving"):
            GatewayHTTPServer(lambda r: Reply(200, {}), unix_socket=path).start()
    regular = tmp_path / "not-a-socket"
    regular.write_text("keep me")
    with pytest.raises(OSError, match="not a socket"):
        GatewayHTTPServer(lambda r: Reply(200, {}), unix_socket=regular).start()
    assert regular.read_text() == "keep me"


def test_an_answer_that_cannot_be_written_is_a_500_in_binances_shape_and_its_after_work_still_runs() -> None:
    released: list[str] = []

    def handler(request: Request) -> Reply:
        return Reply(200, {"price": float("nan")} if request.path == "/bad" else {"ok": True},
                     after=[lambda: released.append(request.path)])

    with serving(handler) as (_, url), httpx.Client(base_url=url) as http:
        bad = http.get("/bad")
        assert bad.status_code == 500 and bad.json()["msg"].startswith("KEYGUARD_INTERNAL")
        assert http.get("/good").json() == {"ok": True}
    assert released == ["/bad", "/good"]  # the gateway releases an order's lock there


def test_the_listen_settings_bound_a_running_gateway(start_gateway: Any) -> None:
    """What an operator sets in `listen` is what the running gateway enforces."""
    handle = start_gateway(listen={"port": 0, "max_connections": 1, "idle_timeout_s": 0.5})
    host, port = address(handle.url)
    with socket.create_connection((host, port)) as held:
        assert exchange(held, b"GET /api/v3/ping HTTP/1.1\r\nHost: x\r\n\r\n")[0] == (200, {})
        with socket.create_connection((host, port)) as extra:
            assert exchange(extra, b"GET /api/v3/ping HTTP/1.1\r\nHost: x\r\n\r\n")[0][0] == 503
        held.settimeout(5)
        assert held.recv(1) == b""  # closed once idle for 0.5 s


def test_a_request_dripping_in_slower_than_the_request_timeout_gets_408_whatever_the_idle_timeout() -> None:
    with serving(idle_timeout_s=30, request_timeout_s=0.5) as (_, url), \
            socket.create_connection(address(url)) as sock:
        assert exchange(sock, b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n")[0][0] == 200
        started = time.monotonic()
        sock.sendall(b"GET /slow HTTP/1.1\r\n")
        for _ in range(3):  # a byte now and then: each within the idle timeout, the whole far past 0.5 s
            time.sleep(0.3)
            with contextlib.suppress(OSError):
                sock.sendall(b"X")
        answers = exchange(sock, b"")
        assert answers and answers[0][0] == 408 and "did not arrive whole" in answers[0][1]["msg"]
        assert time.monotonic() - started < 5


def test_answers_larger_than_the_sockets_buffers_arrive_whole_to_a_bot_that_reads_late() -> None:
    """An answer is sent as the bot reads it, whole, and the next pipelined answer after it."""
    big = "".join(chr(0x41 + n % 26) for n in range(8 * 1024 * 1024))

    with serving(lambda request: Reply(200, {"data": big, "path": request.path})) as (_, url), \
            socket.create_connection(address(url)) as sock:
        sock.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.5)  # the server has written what the buffers take and waits on the rest
        answers = exchange(sock, b"", answers=2)
    assert [(status, body["path"], body["data"] == big) for status, body in answers] == [
        (200, "/big", True), (200, "/next", True)]


def test_one_endless_header_line_is_refused_with_431_while_it_arrives() -> None:
    """httptools keeps a header line until it ends: without a bound on the head's bytes as they arrive, a client could
    pile up megabytes there (copied at each read) for as long as the request timeout lets it."""
    with serving(max_head_bytes=8 * 1024, request_timeout_s=3) as (_, url), \
            socket.create_connection(address(url)) as sock:
        sock.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\nX-Long: ")
        started = time.monotonic()
        with contextlib.suppress(OSError):  # the server closes the connection once it has answered
            for _ in range(64):
                sock.sendall(b"a" * 16384)  # 1 MB in all, and the line never ends
        answers = exchange(sock, b"")
    assert answers and answers[0][0] == 431 and time.monotonic() - started < 3
