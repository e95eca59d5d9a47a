"""The gateway's HTTP server reading requests, without sockets: the bytes a client sends fed to a connection's parser,
and the Request it yields.

The parser reads the request line's target by hand when it is in origin form (`/path?query`, no fragment), as bots
send it; these tests hold it to what httptools.parse_url reads for every byte the HTTP parser lets through."""

from __future__ import annotations

import random
from urllib.parse import unquote

import httptools
import pytest

from keyguard.gateway.http_server import BadRequest, Request, _Parsed


def fed(*chunks: bytes, max_head: int = 64 * 1024, max_body: int = 1024 * 1024) -> list[tuple[Request, bool]]:
    parsed = _Parsed(max_head, max_body)
    for chunk in chunks:
        parsed.parser.feed_data(chunk)
    return parsed.ready


def reference_target(target: bytes) -> tuple[str, str]:
    """Path and query as read through httptools.parse_url."""
    parts = httptools.parse_url(target or b"/")
    return unquote((parts.path or b"/").decode("latin-1")), (parts.query or b"").decode("latin-1")


class Target:
    url = b""

    def on_url(self, url: bytes) -> None:
        self.url += url


def read_target(target: bytes) -> tuple[tuple[str, str], tuple[str, str]] | None:
    """Path and query of a GET for `target` as the server reads them and as parse_url reads the target the HTTP
    parser saw; None when the HTTP parser refuses it."""
    raw = b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    try:
        [(request, _)] = fed(raw)
    except httptools.HttpParserError:
        return None
    seen = Target()
    httptools.HttpRequestParser(seen).feed_data(raw)
    return (request.path, request.query), reference_target(seen.url)


@pytest.mark.parametrize("target", [
    b"/", b"/api/v3/order", b"/api/v3/order?", b"/api/v3/order?symbol=BTCUSDT&side=BUY", b"/?a=1", b"//x?y",
    b"/a%20b/%C3%A9?q=%20+x", b"/a?b?c=d", b"/a#frag", b"/a?b=1#frag", b"/a?b#c?d", b"*",
    b"http://gateway:8080/api/v3/order?symbol=BTCUSDT", b"http://gateway/", b"/a;b=c?d",
])
def test_a_request_target_reads_as_httptools_parse_url_reads_it(target: bytes) -> None:
    read = read_target(target)
    assert read is not None and read[0] == read[1] == reference_target(target)


@pytest.mark.parametrize("template", [b"/a%sb", b"/%s", b"/a?%s", b"/a?b%sc", b"/?%s", b"/a?b?%s", b"/a%s?b"])
def test_every_byte_the_http_parser_lets_into_a_target_reads_as_parse_url_reads_it(template: bytes) -> None:
    accepted = 0
    for byte in range(256):
        for repeat in (1, 2):
            target = template.replace(b"%s", bytes([byte]) * repeat)
            read = read_target(target)
            if read is not None:
                accepted += 1
                assert read[0] == read[1], target
    assert accepted > 150


def test_random_targets_read_as_parse_url_reads_them() -> None:
    rng = random.Random(7)
    alphabet = [bytes([byte]) for byte in range(256)] + [b"/", b"?", b"#", b"%", b"%2", b"%41", b"=", b"&", b"a"] * 16
    for _ in range(5000):
        target = b"/" + b"".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 10)))
        read = read_target(target)
        if read is not None:
            assert read[0] == read[1], target


def test_headers_are_lower_cased_and_repeats_joined_and_pipelined_requests_come_in_order() -> None:
    ready = fed(b"POST /api/v3/order?a=1 HTTP/1.1\r\nHost: x\r\nX-MBX-APIKEY: key\r\nX-Multi: 1\r\nx-multi: 2\r\n"
                b"X-MULTI: 3\r\nContent-Length: 5\r\n\r\nb=2&c",
                b"GET /api/v3/ping HTTP/1.1\r\nHost: y\r\nConnection: close\r\n\r\n")
    assert [(r.method, r.path, r.query, r.body, keep_alive) for r, keep_alive in ready] == [
        ("POST", "/api/v3/order", "a=1", "b=2&c", True), ("GET", "/api/v3/ping", "", "", False)]
    assert ready[0][0].headers == {"host": "x", "x-mbx-apikey": "key", "x-multi": "1, 2, 3", "content-length": "5"}
    assert ready[1][0].headers == {"host": "y", "connection": "close"}


def test_an_odd_method_a_chunked_body_split_anywhere_and_a_latin1_header_are_read_whole() -> None:
    raw = (b"PURGE /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nX-Name: caf\xe9\r\n\r\n"
           b"3\r\nabc\r\n4\r\n\xc3\xa9=1\r\n0\r\n\r\n")
    for cut in range(1, len(raw)):
        [(request, _)] = fed(raw[:cut], raw[cut:])
        assert (request.method, request.body, request.headers["x-name"]) == ("PURGE", "abcé=1", "café")


@pytest.mark.parametrize(("raw", "status"), [
    (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n", 431),
    (b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: %s\r\n" % (n, b"v" * 100) for n in range(700)) + b"\r\n", 431),
    (b"POST / HTTP/1.1\r\nContent-Length: 2000000\r\n\r\n", 413),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + b"100001\r\n" + b"x" * 0x100001 + b"\r\n", 413),
    (b"GET / HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n", 400),
])
def test_the_bounds_are_the_parsers(raw: bytes, status: int) -> None:
    with pytest.raises((BadRequest, httptools.HttpParserError)) as refused:
        fed(raw, max_body=1024 * 1024)
    error = refused.value
    bad = next(e for e in (error, error.__cause__, error.__context__) if isinstance(e, BadRequest))
    assert bad.status == status


def test_expect_100_continue_is_flagged_until_the_request_is_whole() -> None:
    parsed = _Parsed(64 * 1024, 1024 * 1024)
    parsed.parser.feed_data(b"POST /x HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n")
    assert parsed.expect_continue and not parsed.ready and parsed.started_at is not None
    parsed.parser.feed_data(b"a=1")
    assert not parsed.expect_continue and parsed.ready[0][0].body == "a=1" and parsed.started_at is None
