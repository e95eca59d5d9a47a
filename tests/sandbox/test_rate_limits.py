"""Weights, usage headers, 429 with Retry-After, and the 418 bans that follow repeated requests sent during a
back-off."""

from __future__ import annotations

import time

import ccxt
import httpx
import pytest

from keyguard.exchanges.transport import bound_session
from keyguard.sandbox import SandboxConfig, SandboxHandle, run_sandbox

from .conftest import TRADER_FLAGS, BinanceFactory


def test_every_response_carries_used_weight_summed_from_documented_weights(
    sandbox: SandboxHandle, binance: BinanceFactory
) -> None:
    client = binance(sandbox.create_key(flags=TRADER_FLAGS))
    # loadMarkets charges GET /api/v3/exchangeInfo (20) to the spot pool; its margin and currency look-ups go to
    # the SAPI pool, its futures look-ups to the (unmodelled) futures venues.
    client.load_markets()
    client.fetch_balance()  # GET /api/v3/account: 20
    assert client.last_response_headers["X-MBX-USED-WEIGHT-1M"] == "40"
    order = client.create_order("BTC/USDT", "limit", "buy", 0.01, 59000)  # POST /api/v3/order: 1
    assert client.last_response_headers["X-MBX-USED-WEIGHT-1M"] == "41"
    assert client.last_response_headers["X-MBX-ORDER-COUNT-10S"] == "1"
    assert client.last_response_headers["X-MBX-ORDER-COUNT-1D"] == "1"
    client.fetch_order(order["id"], "BTC/USDT")  # GET /api/v3/order: 4
    assert client.last_response_headers["X-MBX-USED-WEIGHT-1M"] == "45"
    client.private_get_openorders()  # GET /api/v3/openOrders without a symbol: 80
    assert client.last_response_headers["X-MBX-USED-WEIGHT-1M"] == "125"
    client.public_get_ticker_price()  # GET /api/v3/ticker/price without a symbol: 4
    assert client.last_response_headers["X-MBX-USED-WEIGHT-1M"] == "129"


def test_weight_is_counted_per_source_address(sandbox: SandboxHandle) -> None:
    with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2")) as other:
        other.get(f"{sandbox.url}/api/v3/exchangeInfo")
        assert other.get(f"{sandbox.url}/api/v3/time").headers["X-MBX-USED-WEIGHT-1M"] == "21"
    with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.3")) as fresh:
        assert fresh.get(f"{sandbox.url}/api/v3/time").headers["X-MBX-USED-WEIGHT-1M"] == "1"


def test_exchange_info_rate_limits_reflect_the_configured_limits() -> None:
    config = SandboxConfig(weight_limit=1200, weight_window_s=10, orders_short_limit=5, orders_short_window_s=2,
                           orders_long_limit=50, orders_long_window_s=3600, raw_request_limit=99,
                           raw_request_window_s=300)
    with run_sandbox(config) as sandbox:
        limits = httpx.get(f"{sandbox.url}/api/v3/exchangeInfo").json()["rateLimits"]
    assert limits == [
        {"rateLimitType": "REQUEST_WEIGHT", "interval": "SECOND", "intervalNum": 10, "limit": 1200},
        {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 2, "limit": 5},
        {"rateLimitType": "ORDERS", "interval": "HOUR", "intervalNum": 1, "limit": 50},
        {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 99},
    ]


def test_default_limits_are_binance_spot_published_values(sandbox: SandboxHandle) -> None:
    limits = httpx.get(f"{sandbox.url}/api/v3/exchangeInfo").json()["rateLimits"]
    assert {(x["rateLimitType"], x["interval"], x["intervalNum"], x["limit"]) for x in limits} == {
        ("REQUEST_WEIGHT", "MINUTE", 1, 6000), ("RAW_REQUESTS", "MINUTE", 5, 61000),
        ("ORDERS", "SECOND", 10, 100), ("ORDERS", "DAY", 1, 200000),
    }


FAST_BANS = SandboxConfig(weight_limit=30, ban_base_s=1, ban_max_s=600, ban_grace_s=0.3, ban_after_violations=3,
                          align_windows_to_start=True)


@pytest.mark.parametrize("sandbox_config", [FAST_BANS])
def test_repeated_requests_past_a_429_escalate_to_418_bans_that_grow(sandbox: SandboxHandle) -> None:
    url = f"{sandbox.url}/api/v3/exchangeInfo"
    with httpx.Client() as client:
        assert client.get(url).status_code == 200  # 20 of 30
        over = client.get(url)  # 40 of 30
        assert over.status_code == 429
        assert over.json()["code"] == -1003
        assert 1 <= int(over.headers["Retry-After"]) <= 60
        # A request already in flight when the 429 went out is refused, and is no violation.
        assert client.get(f"{sandbox.url}/api/v3/time").status_code == 429
        time.sleep(0.35)
        # Ignoring the back-off: refused twice more, and the third violation is banned.
        assert [client.get(f"{sandbox.url}/api/v3/time").status_code for _ in range(2)] == [429, 429]
        first_ban = client.get(f"{sandbox.url}/api/v3/time")
        assert first_ban.status_code == 418
        assert first_ban.headers["Retry-After"] == "1"
        assert "banned until" in first_ban.json()["msg"]
        time.sleep(1.1)
        # Still over the weight in this window: 429 again, and ignoring it again doubles the ban.
        assert client.get(f"{sandbox.url}/api/v3/time").status_code == 429
        time.sleep(0.35)
        assert [client.get(f"{sandbox.url}/api/v3/time").status_code for _ in range(2)] == [429, 429]
        second_ban = client.get(f"{sandbox.url}/api/v3/time")
        assert second_ban.status_code == 418
        assert second_ban.headers["Retry-After"] == "2"


@pytest.mark.parametrize("sandbox_config", [SandboxConfig(weight_limit=30, ban_base_s=60, ban_grace_s=0,
                                                                      align_windows_to_start=True)])
def test_ccxt_sees_429_and_418_as_ddos_protection(sandbox: SandboxHandle) -> None:
    client = ccxt.binance({"urls": sandbox.ccxt_urls(), "session": bound_session("127.0.0.1"),
                           "enableRateLimit": False})
    client.public_get_exchangeinfo()
    with pytest.raises(ccxt.DDoSProtection, match="429"):
        client.public_get_exchangeinfo()
    for _ in range(sandbox.exchange.config.ban_after_violations - 1):
        with pytest.raises(ccxt.DDoSProtection, match="429"):
            client.public_get_time()
    with pytest.raises(ccxt.DDoSProtection, match="418"):
        client.public_get_time()
    # The ban is per IP: another source address is still served.
    other = ccxt.binance({"urls": sandbox.ccxt_urls(), "session": bound_session("127.0.0.2")})
    assert other.public_get_time()["serverTime"] > 0


@pytest.mark.parametrize("sandbox_config", [SandboxConfig(orders_short_limit=2, align_windows_to_start=True)])
def test_orders_past_the_account_order_limit_are_rejected_with_1015(
    sandbox: SandboxHandle, binance: BinanceFactory
) -> None:
    client = binance(sandbox.create_key(flags=TRADER_FLAGS))
    client.create_order("BTC/USDT", "limit", "buy", 0.01, 59000)
    client.create_order("BTC/USDT", "limit", "buy", 0.01, 59000)
    with pytest.raises(ccxt.BaseError, match="-1015"):
        client.create_order("BTC/USDT", "limit", "buy", 0.01, 59000)
    assert client.last_response_headers["X-MBX-ORDER-COUNT-10S"] == "3"
    assert "Retry-After" in client.last_response_headers
    assert len(sandbox.exchange.orders_of("main")) == 2
