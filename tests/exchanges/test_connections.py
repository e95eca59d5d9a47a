"""The exchange transport under the one Binance client: TLS verified, connections kept alive, a connection the
exchange closed while idle never carries an order, and a cut after sending is "outcome unknown", never a resend."""

from __future__ import annotations

import datetime as dt
import http.server
import ipaddress
import json
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from keyguard.exchanges.binance_client import BinanceSpotClient, ExchangeUnavailable
from keyguard.exchanges.connections import MAX_ANSWER_BYTES, ConnectionFailed, KeptAliveConnections


class Exchange(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, close_after_answer: bool = False, cut_before_answer: bool = False) -> None:
        super().__init__(("127.0.0.1", 0), ExchangeHandler)
        self.close_after_answer = close_after_answer
        self.cut_before_answer = cut_before_answer
        self.connections: set[int] = set()
        self.requests = 0


class ExchangeHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Exchange

    def do_GET(self) -> None:
        self.server.connections.add(self.client_address[1])
        self.server.requests += 1
        if self.server.cut_before_answer:
            self.close_connection = True
            return
        body = json.dumps({"serverTime": 1_700_000_000_000}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        # Closing without saying so (no "Connection: close"): what an exchange's idle timeout looks like later.
        self.close_connection = self.server.close_after_answer

    do_POST = do_GET

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def serving(exchange: Exchange, tls: ssl.SSLContext | None = None) -> Iterator[str]:
    if tls is not None:
        exchange.socket = tls.wrap_socket(exchange.socket, server_side=True)
    thread = threading.Thread(target=exchange.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{exchange.server_address[1]}"
    finally:
        exchange.shutdown()
        exchange.server_close()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1: trusted by a context that is told to, by nobody else."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .sign(key, hashes.SHA256()))
    directory = tmp_path_factory.mktemp("tls")
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def server_tls(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    return context


def test_calls_over_tls_share_one_kept_alive_connection(certificate: tuple[Path, Path]) -> None:
    exchange = Exchange()
    with serving(exchange, server_tls(certificate)) as url:
        connections = KeptAliveConnections(url, tls=ssl.create_default_context(cafile=str(certificate[0])))
        answers = [connections.request("GET", "/api/v3/time", {}, 5.0) for _ in range(5)]
        connections.close()
    assert [a.status for a in answers] == [200] * 5
    assert json.loads(answers[-1].body) == {"serverTime": 1_700_000_000_000}
    assert exchange.requests == 5 and len(exchange.connections) == 1


def test_an_exchange_whose_certificate_cannot_be_verified_is_refused(certificate: tuple[Path, Path]) -> None:
    exchange = Exchange()
    with serving(exchange, server_tls(certificate)) as url:
        client = BinanceSpotClient(url, "k" * 64, "s" * 64)
        with pytest.raises(ExchangeUnavailable, match="outcome unknown"):
            client.server_time_ms()
        client.close()
    assert exchange.requests == 0


def test_a_connection_the_exchange_closed_while_idle_never_carries_the_next_call() -> None:
    exchange = Exchange(close_after_answer=True)
    with serving(exchange) as url:
        client = BinanceSpotClient(url, "k" * 64, "s" * 64)
        times = [client.server_time_ms() for _ in range(3)]
        client.close()
    assert times == [1_700_000_000_000] * 3
    assert exchange.requests == 3 and len(exchange.connections) == 3


def test_a_call_cut_after_it_was_sent_is_unknown_and_not_sent_again() -> None:
    exchange = Exchange(cut_before_answer=True)
    with serving(exchange) as url:
        connections = KeptAliveConnections(url, tls=None)
        with pytest.raises(ConnectionFailed):
            connections.request("POST", "/api/v3/order?symbol=BTCUSDT", {}, 5.0)
        connections.close()
    assert exchange.requests == 1


# The framings an HTTP/1.1 answer can come in, each written byte for byte as a server would send it.
BODY = json.dumps({"serverTime": 1_700_000_000_000, "symbols": ["BTCUSDT"] * 40}).encode()


class Framings(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), FramingHandler)
        self.connections: set[int] = set()
        self.requests = 0

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that stopped reading an oversized answer: the write fails, as it should


class FramingHandler(http.server.BaseHTTPRequestHandler):
    """The path names the framing of the answer; `wfile` is unbuffered, so each write leaves on its own."""

    protocol_version = "HTTP/1.1"
    server: Framings
    answered = 0  # requests answered on this connection

    def do_GET(self) -> None:
        self.server.connections.add(self.client_address[1])
        self.server.requests += 1
        getattr(self, "answer_" + self.path.split("?")[0].strip("/").replace("-", "_"))()
        self.answered += 1

    do_POST = do_GET

    def answer_length(self) -> None:
        self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY))

    def answer_chunked(self) -> None:
        self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        for start in range(0, len(BODY), 200):
            piece = BODY[start:start + 200]
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        self.wfile.write(b"0\r\n\r\n")

    def answer_close_delimited(self) -> None:
        self.wfile.write(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" + BODY[:100])
        self.wfile.write(BODY[100:])
        self.close_connection = True

    def answer_interim(self) -> None:
        self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self.wfile.write(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n")
        self.answer_length()

    def answer_oversized(self) -> None:
        size = MAX_ANSWER_BYTES + 1
        self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        block = b"x" * (1024 * 1024)
        for _ in range(size // len(block) + 1):
            self.wfile.write(block)

    def answer_truncated(self) -> None:
        self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY) + 100, BODY))
        self.close_connection = True

    def answer_cut_on_reuse(self) -> None:
        """The first request on a connection is answered, a later one is cut before any answer byte."""
        if self.answered:
            self.close_connection = True
        else:
            self.answer_length()

    def log_message(self, *args: object) -> None:
        pass


def test_a_chunked_answer_is_read_whole() -> None:
    exchange = Framings()
    with serving(exchange) as url:
        connections = KeptAliveConnections(url, tls=None)
        answers = [connections.request("GET", "/chunked", {}, 5.0) for _ in range(2)]
        connections.close()
    assert [a.body for a in answers] == [BODY, BODY]
    assert answers[0].status == 200 and answers[0].headers["content-type"] == "application/json"
    assert len(exchange.connections) == 1


def test_an_answer_that_ends_with_the_connection_is_read_whole_and_the_connection_not_reused() -> None:
    exchange = Framings()
    with serving(exchange) as url:
        connections = KeptAliveConnections(url, tls=None)
        answers = [connections.request("GET", "/close-delimited", {}, 5.0) for _ in range(3)]
        connections.close()
    assert [a.body for a in answers] == [BODY] * 3
    assert exchange.requests == 3 and len(exchange.connections) == 3


def test_interim_answers_are_skipped_for_the_final_one() -> None:
    exchange = Framings()
    with serving(exchange) as url:
        client = BinanceSpotClient(url, "k" * 64, "s" * 64)
        times = [client.request("GET", "/interim")["serverTime"] for _ in range(2)]
        client.close()
    assert times == [1_700_000_000_000] * 2
    assert len(exchange.connections) == 1


def test_fifty_calls_share_one_connection() -> None:
    exchange = Framings()
    with serving(exchange) as url:
        client = BinanceSpotClient(url, "k" * 64, "s" * 64)
        answers = [client.request("GET", "/length") for _ in range(25)]
        answers += [client.request("POST", "/length", {"symbol": "BTCUSDT"}) for _ in range(25)]
        client.close()
    assert answers == [json.loads(BODY)] * 50
    assert exchange.requests == 50 and len(exchange.connections) == 1


def test_an_oversized_answer_fails() -> None:
    exchange = Framings()
    with serving(exchange) as url:
        connections = KeptAliveConnections(url, tls=None)
        with pytest.raises(ConnectionFailed, match="larger than"):
            connections.request("GET", "/oversized", {}, 5.0)
        connections.close()
    assert exchange.requests == 1


def test_a_body_cut_short_fails_and_is_not_sent_again() -> None:
    exchange = Framings()
    with serving(exchange) as url:
        connections = KeptAliveConnections(url, tls=None)
        connections.request("GET", "/length", {}, 5.0)
        # On the kept-alive connection, but the answer had begun: a GET is not resent either.
        with pytest.raises(ConnectionFailed):
            connections.request("GET", "/truncated", {}, 5.0)
        connections.close()
    assert exchange.requests == 2 and len(exchange.connections) == 1


def test_a_reused_connection_cut_before_any_answer_resends_a_get_once_but_never_a_post() -> None:
    exchange = Framings()
    with serving(exchange) as url:
        connections = KeptAliveConnections(url, tls=None)
        connections.request("GET", "/cut-on-reuse", {}, 5.0)
        answer = connections.request("GET", "/cut-on-reuse", {}, 5.0)
        assert answer.body == BODY and exchange.requests == 3 and len(exchange.connections) == 2
        with pytest.raises(ConnectionFailed):
            connections.request("POST", "/cut-on-reuse", {}, 5.0)
        connections.close()
    assert exchange.requests == 4 and len(exchange.connections) == 2
