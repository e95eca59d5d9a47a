"""Injected faults as a client sees them, and what the exchange did behind them."""

from __future__ import annotations

import time

import ccxt
import pytest

from keyguard.sandbox import SandboxHandle

from .conftest import TRADER_FLAGS, BinanceFactory


def _orders_with_client_id(sandbox: SandboxHandle, client_id: str) -> list[str]:
    return [o.status for o in sandbox.exchange.orders_of("main") if o.client_order_id == client_id]


def test_dropped_response_after_execution_times_out_but_the_order_exists(
    sandbox: SandboxHandle, binance: BinanceFactory
) -> None:
    client = binance(sandbox.create_key(flags=TRADER_FLAGS), timeout_ms=500)
    sandbox.set_faults({"endpoint": "POST /api/v3/order", "kind": "drop", "times": 1})
    with pytest.raises(ccxt.RequestTimeout):
        client.create_order("BTC/USDT", "limit", "buy", 0.01, 59000, {"newClientOrderId": "lost-ack"})
    # The exchange executed it: a look-up by client id finds it, so a blind resend would be a duplicate.
    found = client.fetch_order(None, "BTC/USDT", {"origClientOrderId": "lost-ack"})
    assert found["status"] == "open"
    assert _orders_with_client_id(sandbox, "lost-ack") == ["NEW"]


def test_connection_reset_before_execution_places_nothing(sandbox: SandboxHandle, binance: BinanceFactory) -> None:
    client = binance(sandbox.create_key(flags=TRADER_FLAGS))
    sandbox.set_faults({"endpoint": "POST /api/v3/order", "kind": "reset"})
    with pytest.raises(ccxt.NetworkError):
        client.create_order("BTC/USDT", "limit", "buy", 0.01, 59000, {"newClientOrderId": "cut"})
    assert _orders_with_client_id(sandbox, "cut") == []


def test_connection_reset_after_execution_leaves_the_order_placed(
    sandbox: SandboxHandle, binance: BinanceFactory
) -> None:
    client = binance(sandbox.create_key(flags=TRADER_FLAGS))
    sandbox.set_faults({"endpoint": "POST /api/v3/order", "kind": "reset", "when": "after", "times": 1})
    with pytest.raises(ccxt.NetworkError):
        client.create_order("BTC/USDT", "market", "buy", 0.01, None, {"newClientOrderId": "cut-after"})
    assert _orders_with_client_id(sandbox, "cut-after") == ["FILLED"]


def test_injected_503_reaches_ccxt_as_exchange_not_available_and_executes_nothing(
    sandbox: SandboxHandle, binance: BinanceFactory
) -> None:
    client = binance(sandbox.create_key(flags=TRADER_FLAGS))
    sandbox.set_faults({"endpoint": "POST /api/v3/order", "kind": "status", "status": 503, "times": 1})
    with pytest.raises(ccxt.ExchangeNotAvailable):
        client.create_order("BTC/USDT", "limit", "buy", 0.01, 59000, {"newClientOrderId": "unavailable"})
    assert _orders_with_client_id(sandbox, "unavailable") == []
    # The fault was for one request only.
    assert client.create_order("BTC/USDT", "limit", "buy", 0.01, 59000)["status"] == "open"


def test_malformed_body_after_execution_is_not_a_parsed_order(
    sandbox: SandboxHandle, binance: BinanceFactory
) -> None:
    client = binance(sandbox.create_key(flags=TRADER_FLAGS))
    sandbox.set_faults({"endpoint": "GET /sapi/v1/account/apiRestrictions", "kind": "malformed"})
    body = client.sapi_get_account_apirestrictions()
    assert not isinstance(body, dict)
    assert "<html>" in body


def test_latency_longer_than_the_client_timeout_still_executes_the_order(
    sandbox: SandboxHandle, binance: BinanceFactory
) -> None:
    client = binance(sandbox.create_key(flags=TRADER_FLAGS), timeout_ms=300)
    sandbox.set_faults({"endpoint": "POST /api/v3/order", "kind": "latency", "latency_ms": 800, "times": 1})
    with pytest.raises(ccxt.RequestTimeout):
        client.create_order("BTC/USDT", "limit", "buy", 0.01, 59000, {"newClientOrderId": "slow"})
    # The server is still sleeping when the client gives up; once it wakes the order executes anyway.
    deadline = time.monotonic() + 10
    while not _orders_with_client_id(sandbox, "slow") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client.fetch_order(None, "BTC/USDT", {"origClientOrderId": "slow"})["clientOrderId"] == "slow"


def test_faults_are_set_and_cleared_through_the_admin_api(sandbox: SandboxHandle, binance: BinanceFactory) -> None:
    client = binance(sandbox.create_key())
    with sandbox.admin() as admin:
        admin.put("/faults", json=[{"endpoint": "*", "kind": "status", "status": 502}]).raise_for_status()
        with pytest.raises(ccxt.ExchangeNotAvailable, match="502"):
            client.fetch_balance()
        admin.delete("/faults").raise_for_status()
    assert client.fetch_balance()["USDT"]["free"] > 0
