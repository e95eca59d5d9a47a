"""The gateway's request front, without a server: how a request's parameters and signed payload are read, Binance's
signing checks in Binance's order and with Binance's codes, and the bytes of an answer.

The reading is done once per request for both the desk's parameters and the signature check; it must read exactly
as `urllib.parse.parse_qsl(..., keep_blank_values=True)` reads parameters and as Binance splits the signature from
the payload, which the property-style test below checks against those definitions."""

from __future__ import annotations

import hashlib
import hmac
import json
import random
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest

from keyguard.gateway.bot_keys import BotKey, BotKeyStore
from keyguard.gateway.desk import BinanceError
from keyguard.gateway.http_server import Reply, encode_reply
from keyguard.gateway.signing import authenticate, hmac_sha256_hex, read_params
from keyguard.sandbox.binance import _without_signature as binance_split  # the exchange model's split

NOW_MS = 1_700_000_000_000


def reference_read(query: str, body: str) -> tuple[list[tuple[str, str]], str, str | None]:
    q_payload, q_signature = binance_split(query)
    b_payload, b_signature = binance_split(body)
    params = parse_qsl(query, keep_blank_values=True) + parse_qsl(body, keep_blank_values=True)
    return params, q_payload + b_payload, q_signature or b_signature


PIECES = ["a", "b", "=", "&", "&&", "+", "%", "%2", "%20", "%2B", "%26", "%3D", "%C3%A9", "%C3", "%zz", "é", " ",
          "signature", "signature=", "signature=ab12", "SIGNATURE=x", "signatur%65=x", "timestamp=", "1", "recvWindow"]


@pytest.mark.parametrize("seed", range(20))
def test_parameters_payload_and_signature_are_read_as_parse_qsl_and_binance_read_them(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(500):
        query = "".join(rng.choice(PIECES) for _ in range(rng.randrange(0, 12)))
        body = "".join(rng.choice(PIECES) for _ in range(rng.randrange(0, 6))) if rng.random() < 0.4 else ""
        assert read_params(query, body) == reference_read(query, body), (query, body)


@pytest.mark.parametrize(("query", "body"), [
    ("", ""),
    ("symbol=BTCUSDT&side=BUY&timestamp=1&signature=abc", ""),
    ("", "symbol=BTCUSDT&timestamp=1&signature=abc"),
    ("symbol=BTCUSDT", "timestamp=1&signature=abc"),
    ("signature=abc&symbol=BTCUSDT", ""),
    ("signature=&a=1", "signature=def"),
    ("a=1&signature=x&b=2&signature=y", "c=3&signature=z"),
    ("signature=abc", ""),
    ("a=1&&signature=abc", "&"),
    ("price=1%2E5&note=a+b%20c&flag&=v&k=", ""),
    ("newClientOrderId=%E2%82%AC&signature=ABC", ""),
])
def test_the_usual_and_the_odd_shapes_read_as_the_definitions_do(query: str, body: str) -> None:
    assert read_params(query, body) == reference_read(query, body)


@pytest.mark.parametrize("secret", ["", "k", "K" * 63, "K" * 64, "K" * 65, "é" * 40, "x" * 200])
def test_the_signature_is_hmac_sha256_as_the_hmac_module_computes_it(secret: str) -> None:
    rng = random.Random(secret)
    for size in (0, 1, 55, 56, 63, 64, 65, 119, 120, 500):
        payload = bytes(rng.randrange(256) for _ in range(size))
        assert hmac_sha256_hex(secret, payload) == hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()


# -- Binance's checks, in Binance's order -------------------------------------------------------------------------
@pytest.fixture
def keys(tmp_path: Path) -> BotKeyStore:
    return BotKeyStore(tmp_path / "keys.json")


def request(key: BotKey | None, params: dict[str, Any], *, api_key: str | None = None, secret: str | None = None,
            in_body: bool = False, signature: str | None = None) -> tuple[dict[str, str], str, str]:
    """Headers, query and body as a bot signing with `key` sends them."""
    payload = urlencode(params)
    sign_with = secret if secret is not None else (key.secret if key else "x")
    if signature is None:
        signature = hmac.new(sign_with.encode(), payload.encode(), hashlib.sha256).hexdigest()
    signed = f"{payload}&signature={signature}" if payload else f"signature={signature}"
    headers = {"x-mbx-apikey": api_key if api_key is not None else (key.api_key if key else "")}
    return (headers, "", signed) if in_body else (headers, signed, "")


def check(keys: BotKeyStore, headers: dict[str, str], query: str, body: str, server_ms: int = NOW_MS) -> BotKey:
    params, payload, signature = read_params(query, body)
    return authenticate(keys, headers, params, payload, signature, server_ms)


def refusal(keys: BotKeyStore, headers: dict[str, str], query: str, body: str) -> tuple[int, int, str]:
    with pytest.raises(BinanceError) as refused:
        check(keys, headers, query, body)
    return refused.value.status, refused.value.code, refused.value.msg


def test_a_correctly_signed_request_authenticates_its_bot_in_the_query_the_body_or_both(keys: BotKeyStore) -> None:
    key = keys.create("alpha")
    headers, query, body = request(key, {"symbol": "BTCUSDT", "timestamp": NOW_MS})
    assert check(keys, headers, query, body).bot == "alpha"
    headers, query, body = request(key, {"symbol": "BTCUSDT", "timestamp": NOW_MS}, in_body=True)
    assert query == "" and check(keys, headers, query, body).bot == "alpha"
    # Binance signs the query and the body concatenated, the signature in either.
    query, body = "symbol=BTCUSDT&side=BUY", f"timestamp={NOW_MS}"
    signature = hmac.new(key.secret.encode(), (query + body).encode(), hashlib.sha256).hexdigest()
    assert check(keys, headers, query, f"{body}&signature={signature}").bot == "alpha"
    assert check(keys, headers, f"{query}&signature={signature.upper()}", body).bot == "alpha"


def test_each_refusal_has_binances_status_code_and_message_in_binances_order(keys: BotKeyStore) -> None:
    key = keys.create("alpha")
    revoked = keys.create("gone")
    keys.revoke("gone")
    fresh = {"symbol": "BTCUSDT", "timestamp": NOW_MS}
    cases: list[tuple[tuple[dict[str, str], str, str], tuple[int, int]]] = [
        # The key's format first, whatever else is wrong.
        (request(key, {"symbol": "BTCUSDT"}, api_key=""), (401, -2014)),
        (request(key, {"timestamp": "x"}, api_key="short"), (401, -2014)),
        (request(key, fresh, api_key="Z" * 63 + "!"), (401, -2014)),
        # Then whether it is known and active.
        (request(key, {"timestamp": "x"}, api_key="Z" * 64), (401, -2015)),
        (request(revoked, fresh), (401, -2015)),
        # Then the timestamp and the recvWindow.
        (request(key, {"symbol": "BTCUSDT"}, secret="wrong"), (400, -1102)),
        (request(key, {"timestamp": ""}), (400, -1102)),
        (request(key, {"timestamp": "12a"}), (400, -1100)),
        (request(key, {"timestamp": NOW_MS, "recvWindow": "x"}), (400, -1100)),
        # Digits str.isdigit takes and int() does not, or takes as other digits: not a timestamp either.
        (request(key, {"timestamp": "\u00b2"}), (400, -1100)),
        (request(key, {"timestamp": "\u0661\u0667\u0660\u0660"}), (400, -1100)),
        (request(key, {"timestamp": NOW_MS, "recvWindow": 60001}, secret="wrong"), (400, -1131)),
        (request(key, {"timestamp": NOW_MS + 1000}, secret="wrong"), (400, -1021)),
        (request(key, {"timestamp": NOW_MS - 5001}, secret="wrong"), (400, -1021)),
        (request(key, {"timestamp": NOW_MS - 7000, "recvWindow": 6000}), (400, -1021)),
        # The signature last.
        (request(key, fresh, signature=""), (400, -1102)),
        (request(key, fresh, secret="wrong"), (400, -1022)),
        (request(key, fresh, signature="\u00e9" * 64), (400, -1022)),  # not ASCII: not a hex signature
        (request(key, {**fresh, "timestamp": NOW_MS - 5000, "recvWindow": 0}, secret="wrong"), (400, -1022)),
    ]
    answers = [refusal(keys, *case)[:2] for case, _ in cases]
    assert answers == [expected for _, expected in cases]
    assert check(keys, *request(key, {"timestamp": NOW_MS + 999})).bot == "alpha"
    assert check(keys, *request(key, {"timestamp": NOW_MS - 60000, "recvWindow": 60000})).bot == "alpha"
    messages = {code: msg for _, code, msg in (refusal(keys, *case) for case, _ in cases)}
    assert messages[-2014] == "API-key format invalid."
    assert messages[-2015] == "Invalid API-key, IP, or permissions for action."
    assert messages[-1022] == "Signature for this request is not valid."
    assert messages[-1131] == "recvWindow must be less than 60000."
    assert messages[-1102] == "Mandatory parameter 'signature' was not sent, was empty/null, or malformed."


def test_the_last_repeated_timestamp_counts(keys: BotKeyStore) -> None:
    key = keys.create("alpha")
    query = f"timestamp=1&timestamp={NOW_MS}"
    signature = hmac.new(key.secret.encode(), query.encode(), hashlib.sha256).hexdigest()
    assert check(keys, {"x-mbx-apikey": key.api_key}, f"{query}&signature={signature}", "").bot == "alpha"


# -- the answer's bytes -------------------------------------------------------------------------------------------
def reference_answer(status: int, payload: Any, headers: dict[str, str], close: bool) -> bytes:
    body = json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Unknown"
    lines = [f"HTTP/1.1 {status} {reason}", "content-type: application/json", f"content-length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if close:
        lines.append("connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


@pytest.mark.parametrize("close", [False, True])
@pytest.mark.parametrize(("status", "payload", "headers"), [
    (200, {}, {}),
    (200, [], {}),
    (200, {"symbol": "BTCUSDT", "orderId": 12, "price": "0.1", "fills": [{"qty": 0.001, "tradeId": 1}],
           "isWorking": True, "stopPrice": None, "big": 10 ** 30, "tiny": 1e-17, "e": 1e16}, {}),
    (400, {"code": -2010, "msg": "KEYGUARD_REFUSED: €5 ≥ limit \"quoted\" \\ \n tab\t"}, {}),
    (429, {"code": -1003, "msg": "Too many requests."}, {"Retry-After": "3", "x-mbx-used-weight-1m": "1200"}),
    (418, {"code": -1003, "msg": "banned"}, {"Retry-After": "60"}),
    (599, {"code": -1000, "msg": "odd status"}, {}),
    (200, "a string", {}),
])
def test_an_answer_is_encoded_as_json_dumps_and_framed_as_before(status: int, payload: Any, headers: dict[str, str],
                                                                 close: bool) -> None:
    assert encode_reply(Reply(status, payload, headers), close=close) == reference_answer(status, payload, headers,
                                                                                          close)


@pytest.mark.parametrize("payload", [{"price": float("nan")}, {"price": float("inf")}, {"when": object()}])
def test_an_answer_that_json_cannot_hold_is_refused_as_before(payload: Any) -> None:
    with pytest.raises((ValueError, TypeError)):
        encode_reply(Reply(200, payload), close=False)
