"""An unmodified ccxt binance client against the sandbox: orders, look-ups, cancels and every protocol error."""

from __future__ import annotations

import ccxt
import pytest

from keyguard.exchanges.transport import bound_session
from keyguard.sandbox import SandboxHandle

from .conftest import LOOPBACK_ONLY, TRADER_FLAGS, BinanceFactory


def test_ccxt_places_looks_up_and_cancels_a_limit_order(sandbox: SandboxHandle, binance: BinanceFactory) -> None:
    client = binance(sandbox.create_key(flags=TRADER_FLAGS))
    order = client.create_order("BTC/USDT", "limit", "buy", 0.01, 59000, {"newClientOrderId": "kg-1"})
    assert order["status"] == "open" and order["clientOrderId"] == "kg-1"

    by_id = client.fetch_order(order["id"], "BTC/USDT")
    by_client_id = client.fetch_order(None, "BTC/USDT", {"origClientOrderId": "kg-1"})
    assert by_id["id"] == by_client_id["id"] == order["id"]
    assert [o["id"] for o in client.fetch_open_orders("BTC/USDT")] == [order["id"]]
    # 590 USDT is locked for the resting order.
    assert client.fetch_balance()["USDT"]["used"] == pytest.approx(590.0)

    cancelled = client.cancel_order(order["id"], "BTC/USDT")
    assert cancelled["status"] == "canceled"
    assert client.fetch_open_orders("BTC/USDT") == []
    assert [(o["id"], o["status"]) for o in client.fetch_orders("BTC/USDT")] == [(order["id"], "canceled")]
    assert client.fetch_balance()["USDT"]["free"] == pytest.approx(100000.0)


def test_market_order_deeper_than_the_book_fills_partially_and_expires(
    sandbox: SandboxHandle, binance: BinanceFactory
) -> None:
    client = binance(sandbox.create_key(flags=TRADER_FLAGS))
    sandbox.exchange.set_balance("main", "USDT", 1_000_000)
    # The default BTCUSDT book holds 5 ask levels of 0.5 BTC: 2.5 BTC in all.
    order = client.create_order("BTC/USDT", "market", "buy", 3.0)
    assert order["status"] == "expired"
    assert order["filled"] == pytest.approx(2.5)
    assert len(client.fetch_my_trades("BTC/USDT")) == 5
    # 1 BTC to start, plus the 2.5 bought less the taker commission Binance takes from what a buy receives.
    taker = sandbox.exchange.config.taker_commission
    assert client.fetch_balance()["BTC"]["total"] == pytest.approx(1.0 + 2.5 * (1 - taker), abs=1e-8)


def test_limit_order_through_the_touch_fills_partly_and_rests_the_remainder(
    sandbox: SandboxHandle, binance: BinanceFactory
) -> None:
    client = binance(sandbox.create_key(flags=TRADER_FLAGS))
    # Asks: 60030, 60060, ...; a buy at 60045 takes the first 0.5 BTC level and rests 0.5.
    order = client.create_order("BTC/USDT", "limit", "buy", 1.0, 60045)
    assert order["status"] == "open" and order["filled"] == pytest.approx(0.5)
    sandbox.exchange.set_price("BTCUSDT", 60000 * 0.99)
    assert client.fetch_order(order["id"], "BTC/USDT")["status"] == "closed"


def test_duplicate_client_order_id_among_open_orders_is_rejected_with_2010(
    sandbox: SandboxHandle, binance: BinanceFactory
) -> None:
    client = binance(sandbox.create_key(flags=TRADER_FLAGS))
    first = client.create_order("BTC/USDT", "limit", "buy", 0.01, 59000, {"newClientOrderId": "same-id"})
    with pytest.raises(ccxt.InvalidOrder, match='"code":-2010,"msg":"Duplicate order sent."'):
        client.create_order("BTC/USDT", "limit", "buy", 0.01, 59000, {"newClientOrderId": "same-id"})
    client.cancel_order(first["id"], "BTC/USDT")
    # Unique among open orders only: once cancelled the id may be used again.
    again = client.create_order("BTC/USDT", "limit", "buy", 0.01, 59000, {"newClientOrderId": "same-id"})
    assert again["id"] != first["id"]
    # Look-ups and cancels by that client id reach the open order, not the cancelled one.
    assert client.fetch_order(None, "BTC/USDT", {"origClientOrderId": "same-id"})["id"] == again["id"]
    assert client.cancel_order(None, "BTC/USDT", {"origClientOrderId": "same-id"})["id"] == again["id"]


def test_lookup_of_an_unknown_order_fails_with_2013(sandbox: SandboxHandle, binance: BinanceFactory) -> None:
    client = binance(sandbox.create_key(flags=TRADER_FLAGS))
    with pytest.raises(ccxt.OrderNotFound, match="-2013"):
        client.fetch_order(None, "BTC/USDT", {"origClientOrderId": "never-sent"})


def test_cancel_of_an_unknown_order_fails_with_2011(sandbox: SandboxHandle, binance: BinanceFactory) -> None:
    client = binance(sandbox.create_key(flags=TRADER_FLAGS))
    with pytest.raises(ccxt.OrderNotFound, match="-2011"):
        client.cancel_order("424242", "BTC/USDT")


def test_request_signed_with_the_wrong_secret_is_rejected_with_1022(
    sandbox: SandboxHandle, binance: BinanceFactory
) -> None:
    client = binance(sandbox.create_key(), secret="0" * 64)
    with pytest.raises(ccxt.AuthenticationError, match="-1022"):
        client.fetch_balance()


def test_timestamp_outside_recv_window_is_rejected_with_1021(sandbox: SandboxHandle, binance: BinanceFactory) -> None:
    client = binance(sandbox.create_key())
    with sandbox.admin() as admin:
        admin.put("/clock", json={"skew_ms": 30_000}).raise_for_status()
    with pytest.raises(ccxt.InvalidNonce, match="-1021"):
        client.fetch_balance()
    with sandbox.admin() as admin:
        admin.put("/clock", json={"skew_ms": 0}).raise_for_status()
    assert client.fetch_balance()["USDT"]["free"] == pytest.approx(100000.0)


def test_malformed_api_key_is_rejected_with_2014(sandbox: SandboxHandle, binance: BinanceFactory) -> None:
    client = binance({"api_key": "not-a-key", "secret": "x" * 64})
    with pytest.raises(ccxt.AuthenticationError, match="-2014"):
        client.fetch_balance()


def test_key_bound_to_one_address_is_refused_from_another_with_2015(
    sandbox: SandboxHandle, binance: BinanceFactory
) -> None:
    key = sandbox.create_key(ip_restrict=True, ips=["127.0.0.2"])
    assert binance(key, source_ip="127.0.0.2").sapi_get_account_apirestrictions()["ipRestrict"] is True
    with pytest.raises(ccxt.AuthenticationError, match="-2015"):
        binance(key, source_ip="127.0.0.1").sapi_get_account_apirestrictions()


def test_order_from_a_read_only_key_is_refused_with_2015(sandbox: SandboxHandle, binance: BinanceFactory) -> None:
    client = binance(sandbox.create_key())
    with pytest.raises(ccxt.AuthenticationError, match="-2015"):
        client.create_order("BTC/USDT", "limit", "buy", 0.01, 59000)
    assert sandbox.exchange.orders_of("main") == []


def test_revoked_key_is_refused_with_2015(sandbox: SandboxHandle, binance: BinanceFactory) -> None:
    key = sandbox.create_key(flags=TRADER_FLAGS)
    client = binance(key)
    client.fetch_balance()
    with sandbox.admin() as admin:
        admin.delete(f"/keys/{key['api_key']}").raise_for_status()
    # ccxt reports -2015 after an earlier success as DDoSProtection; the exchange's code is what matters.
    with pytest.raises(ccxt.BaseError, match="-2015"):
        client.fetch_balance()


def test_withdraw_and_transfer_work_only_for_keys_with_those_permissions(
    sandbox: SandboxHandle, binance: BinanceFactory
) -> None:
    wide = binance(sandbox.create_key(flags={"enableWithdrawals": True, "permitsUniversalTransfer": True},
                                      **LOOPBACK_ONLY))
    narrow = binance(sandbox.create_key(flags=TRADER_FLAGS))
    withdrawal = wide.sapi_post_capital_withdraw_apply({"coin": "USDT", "address": "TXattacker", "amount": "500"})
    assert withdrawal["id"]
    assert wide.sapi_post_asset_transfer({"type": "MAIN_FUNDING", "asset": "USDT", "amount": "100"})["tranId"] == 1
    assert sandbox.exchange.balances["main"]["USDT"] == pytest.approx(100000 - 600)
    with pytest.raises(ccxt.AuthenticationError, match="-2015"):
        narrow.sapi_post_capital_withdraw_apply({"coin": "USDT", "address": "TXattacker", "amount": "500"})
    with pytest.raises(ccxt.AuthenticationError, match="-2015"):
        narrow.sapi_post_asset_transfer({"type": "MAIN_FUNDING", "asset": "USDT", "amount": "100"})
    assert len(sandbox.exchange.withdrawals) == 1


def test_api_restrictions_report_the_full_flag_set_ip_restrict_and_create_time(
    sandbox: SandboxHandle, binance: BinanceFactory
) -> None:
    key = sandbox.create_key(flags={"enableWithdrawals": True}, ip_restrict=True, ips=["127.0.0.1"],
                             create_time_ms=1_760_000_000_000)
    restrictions = binance(key).sapi_get_account_apirestrictions()
    assert restrictions["enableWithdrawals"] is True
    assert restrictions["enableSpotAndMarginTrading"] is False
    assert restrictions["ipRestrict"] is True
    assert restrictions["createTime"] == 1_760_000_000_000
    assert {"enableReading", "enableFutures", "enableInternalTransfer", "permitsUniversalTransfer",
            "enableFixApiTrade", "enablePortfolioMarginTrading"} <= set(restrictions)


def test_stock_ccxt_client_with_only_urls_and_source_address_changed_trades(sandbox: SandboxHandle) -> None:
    key = sandbox.create_key(flags=TRADER_FLAGS)
    client = ccxt.binance({"apiKey": key["api_key"], "secret": key["secret"], "urls": sandbox.ccxt_urls(),
                           "session": bound_session("127.0.0.1")})
    markets = client.load_markets()
    assert {"BTC/USDT", "ETH/USDT"} <= set(markets)
    assert {"BTC", "ETH", "USDT"} <= set(client.currencies)
    order = client.create_order("ETH/USDT", "limit", "sell", 1.0, 3100)
    assert client.fetch_order(order["id"], "ETH/USDT")["status"] == "open"
    assert client.cancel_order(order["id"], "ETH/USDT")["status"] == "canceled"
