"""One Binance error map for every caller: each code becomes the same class whether the worker's client or the
key adapter met it, with the exchange's status, code and message, and never a secret."""

from __future__ import annotations

import pytest

from keyguard.exchanges import (
    AmbiguousRefusal,
    Banned,
    ClockSkew,
    Credentials,
    ExchangeRejected,
    ExchangeTimeout,
    ExchangeUnavailable,
    InvalidKey,
    IPRefused,
    KeyDeclaration,
    MalformedResponse,
    OutcomeUnknown,
    PermissionRefused,
    RateLimited,
    binance_error,
    sandbox_adapter_kwargs,
)
from keyguard.exchanges.binance import BinanceAdapter
from keyguard.exchanges.binance_client import ORDER_DOES_NOT_EXIST, BinanceSpotClient
from keyguard.redact import register_secret
from keyguard.sandbox import SandboxHandle


@pytest.mark.parametrize(("status", "code", "kind"), [
    (400, -1022, InvalidKey),  # signature not valid: the wrong secret
    (401, -2014, InvalidKey),  # API-key format invalid
    (401, -2008, InvalidKey),  # invalid API-key ID
    (401, -1099, InvalidKey),
    (401, -2015, AmbiguousRefusal),  # invalid key, IP not allowed, or permission missing
    (401, -2017, PermissionRefused),  # keys locked
    (400, -1021, ClockSkew),  # timestamp outside recvWindow
    (400, ORDER_DOES_NOT_EXIST, ExchangeRejected),  # the worker acts on these codes itself
    (400, -2010, ExchangeRejected),
    (400, -2011, ExchangeRejected),
    (429, -1003, RateLimited),
    (429, -1015, RateLimited),  # too many orders: still the exchange's 429
    (418, -1003, Banned),
    (400, None, ExchangeRejected),  # an error answer without a code
])
def test_each_binance_code_becomes_its_class_with_status_code_and_message(
    status: int, code: int | None, kind: type[ExchangeRejected]
) -> None:
    error = binance_error(status, code, "what the exchange said", retry_after=30.0, context="binance GET /api/v3/x")
    assert type(error) is kind
    assert (error.status, error.code, error.exchange_message) == (status, code, "what the exchange said")
    assert str(error).startswith(f"binance GET /api/v3/x: HTTP {status}")
    if isinstance(error, RateLimited):
        assert error.retry_after == 30.0 and "retry after 30s" in str(error)


def test_minus_2015_is_each_of_the_refusals_it_may_be_and_unknown_outcomes_share_one_base() -> None:
    ambiguous = binance_error(401, -2015, "Invalid API-key, IP, or permissions for action.")
    assert isinstance(ambiguous, InvalidKey) and isinstance(ambiguous, IPRefused)
    assert isinstance(ambiguous, PermissionRefused)
    for unknown in (ExchangeTimeout("t"), ExchangeUnavailable("u"), MalformedResponse("m")):
        assert isinstance(unknown, OutcomeUnknown) and not isinstance(unknown, ExchangeRejected)


def test_a_secret_echoed_by_the_exchange_never_reaches_the_message() -> None:
    secret = "S3cretEchoedBack" + "0" * 48
    register_secret(secret)
    error = binance_error(400, -1100, f"Illegal characters found in parameter 'x'; legal range is '{secret}'.")
    assert secret not in str(error) and secret not in error.exchange_message


def test_the_worker_client_and_the_key_adapter_meet_the_same_classes(sandbox: SandboxHandle) -> None:
    key = sandbox.create_key(flags={"enableSpotAndMarginTrading": True}, ip_restrict=True, ips=["127.0.0.1"])
    wrong_secret = BinanceSpotClient(sandbox.url, key["api_key"], "f" * 64)
    with pytest.raises(InvalidKey) as invalid:
        wrong_secret.account()
    assert (invalid.value.status, invalid.value.code) == (400, -1022)

    elsewhere = BinanceSpotClient(sandbox.url, key["api_key"], key["secret"], source_address="127.0.0.2")
    with pytest.raises(AmbiguousRefusal) as refused:
        elsewhere.account()
    assert (refused.value.status, refused.value.code) == (401, -2015)

    client = BinanceSpotClient(sandbox.url, key["api_key"], key["secret"])
    with pytest.raises(ExchangeRejected) as missing:
        client.get_order("BTCUSDT", "never-sent")
    assert missing.value.code == ORDER_DOES_NOT_EXIST and type(missing.value) is ExchangeRejected

    sandbox.exchange.set_skew(60_000)  # the exchange's clock a minute ahead: our timestamps are stale
    with pytest.raises(ClockSkew):
        client.account()
    adapter = BinanceAdapter(Credentials(api_key=key["api_key"], secret=key["secret"]),
                             **sandbox_adapter_kwargs("binance", sandbox.url))
    state = adapter.inspect(KeyDeclaration(id="bot", exchange="binance"), time_offset_ms=None)
    assert state.error_kind == "ClockSkew" and "-1021" in (state.inspection_error or "")
