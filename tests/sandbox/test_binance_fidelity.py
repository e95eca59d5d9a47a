"""The sandbox's Binance spot face behaves as Binance documents it, seen through unmodified clients (ccxt,
python-binance) over real HTTP: commission on every fill in the asset received, maker and taker, the account and
wallet status endpoints, test orders held to every rule of a real one, cancel-all with nothing open, depth limits and
exchangeInfo's symbol selection. A bot that passes here should not meet a surprise on Binance."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import ccxt
import httpx
import pytest
from binance.client import Client as BinanceClient
from binance.exceptions import BinanceAPIException

from keyguard.sandbox import SandboxConfig, SandboxHandle, run_sandbox

from .conftest import TRADER_FLAGS, BinanceFactory

# Binance's regular-tier rates, the sandbox's defaults.
MAKER = TAKER = 0.001


def python_binance(sandbox: SandboxHandle, key: dict[str, Any]) -> BinanceClient:
    """python-binance, stock: only its REST and SAPI base URLs point at the sandbox (the library's own attributes)."""

    class AtSandbox(BinanceClient):
        API_URL = f"{sandbox.url}/api"
        MARGIN_API_URL = f"{sandbox.url}/sapi"

    return AtSandbox(key["api_key"], key["secret"])


def signed_get(sandbox: SandboxHandle, key: dict[str, Any], path: str, **params: str) -> httpx.Response:
    query = urlencode({**params, "timestamp": str(int(time.time() * 1000))})
    signature = hmac.new(key["secret"].encode(), query.encode(), hashlib.sha256).hexdigest()
    return httpx.get(f"{sandbox.url}{path}?{query}&signature={signature}", headers={"X-MBX-APIKEY": key["api_key"]})


def weight_of(sandbox: SandboxHandle, send: Any) -> int:
    """The request weight one call adds to the IP's minute (X-MBX-USED-WEIGHT-1M before and after)."""
    before = int(httpx.get(f"{sandbox.url}/api/v3/ping").headers["X-MBX-USED-WEIGHT-1M"])
    response = send()
    return int(response.headers["X-MBX-USED-WEIGHT-1M"]) - before


@pytest.fixture
def maker_taker_sandbox() -> Iterator[SandboxHandle]:
    """A sandbox whose maker and taker rates differ, so a test can tell which one a fill paid."""
    with run_sandbox(SandboxConfig(align_windows_to_start=True, maker_commission=0.0002,
                                   taker_commission=0.0007)) as handle:
        yield handle


# -- 1. commission on every fill ------------------------------------------------------------------------------
def test_fills_pay_the_taker_commission_in_the_asset_received(sandbox: SandboxHandle,
                                                              binance: BinanceFactory) -> None:
    client = binance(sandbox.create_key(flags=TRADER_FLAGS))
    # Asks are 60030, 60060, ... (0.5 BTC each): a 0.01 BTC market buy takes the first.
    bought = client.create_order("BTC/USDT", "market", "buy", 0.01)
    [buy_fill] = bought["info"]["fills"]
    assert set(buy_fill) == {"price", "qty", "commission", "commissionAsset", "tradeId"}
    assert buy_fill["commissionAsset"] == "BTC"
    assert float(buy_fill["commission"]) == pytest.approx(0.01 * TAKER, abs=1e-12)
    assert bought["fee"] == {"cost": pytest.approx(0.01 * TAKER), "currency": "BTC"}

    # Bids are 59970, 59940, ...: a sell pays out of the USDT it receives.
    sold = client.create_order("BTC/USDT", "market", "sell", 0.005)
    [sell_fill] = sold["info"]["fills"]
    assert sell_fill["commissionAsset"] == "USDT"
    assert float(sell_fill["commission"]) == pytest.approx(0.005 * 59970 * TAKER, abs=1e-8)

    balance = client.fetch_balance()
    assert balance["BTC"]["total"] == pytest.approx(1 + 0.01 * (1 - TAKER) - 0.005, abs=1e-10)
    assert balance["USDT"]["total"] == pytest.approx(
        100000 - 0.01 * 60030 + 0.005 * 59970 * (1 - TAKER), abs=1e-6)


def test_a_buy_then_a_sell_of_the_same_quantity_is_short_by_the_commission(sandbox: SandboxHandle,
                                                                           binance: BinanceFactory) -> None:
    client = binance(sandbox.create_key(flags=TRADER_FLAGS))
    sandbox.exchange.set_balance("main", "BTC", 0.0)
    client.create_order("BTC/USDT", "market", "buy", 0.01)
    assert client.fetch_balance()["BTC"]["free"] == pytest.approx(0.01 * (1 - TAKER), abs=1e-12)
    with pytest.raises(ccxt.InsufficientFunds, match="Account has insufficient balance for requested action."):
        client.create_order("BTC/USDT", "market", "sell", 0.01)
    # What was received can be sold.
    assert client.create_order("BTC/USDT", "market", "sell", 0.00999)["status"] == "closed"


def test_my_trades_rows_carry_binances_fields(sandbox: SandboxHandle) -> None:
    key = sandbox.create_key(flags=TRADER_FLAGS)
    client = python_binance(sandbox, key)
    order = client.create_order(symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.01")
    [trade] = client.get_my_trades(symbol="BTCUSDT")
    assert set(trade) == {"symbol", "id", "orderId", "orderListId", "price", "qty", "quoteQty", "commission",
                          "commissionAsset", "time", "isBuyer", "isMaker", "isBestMatch"}
    assert trade["id"] == order["fills"][0]["tradeId"] and trade["orderId"] == order["orderId"]
    assert (trade["orderListId"], trade["isBuyer"], trade["isMaker"], trade["isBestMatch"]) == (-1, True, False, True)
    assert (trade["commission"], trade["commissionAsset"]) == (order["fills"][0]["commission"], "BTC")
    assert float(trade["quoteQty"]) == pytest.approx(0.01 * 60030)
    # One order's trades cost 5, all of a symbol's 20, as Binance weighs them.
    assert weight_of(sandbox, lambda: signed_get(sandbox, key, "/api/v3/myTrades", symbol="BTCUSDT",
                                                 orderId=str(order["orderId"]))) == 5
    assert weight_of(sandbox, lambda: signed_get(sandbox, key, "/api/v3/myTrades", symbol="BTCUSDT")) == 20


# -- 2. maker and taker ---------------------------------------------------------------------------------------
def test_an_order_that_rests_and_fills_later_is_the_maker_and_pays_the_maker_rate(
    maker_taker_sandbox: SandboxHandle,
) -> None:
    sandbox = maker_taker_sandbox
    client = ccxt.binance({"urls": sandbox.ccxt_urls("binance"), "enableRateLimit": False,
                           **_credentials(sandbox.create_key(flags=TRADER_FLAGS))})
    # A buy at 60045 takes the 0.5 BTC ask at 60030 on arrival (taker) and rests the other 0.5 in the book.
    order = client.create_order("BTC/USDT", "limit", "buy", 1.0, 60045)
    assert order["status"] == "open" and order["filled"] == pytest.approx(0.5)
    sandbox.exchange.set_price("BTCUSDT", 60000 * 0.99)  # the market comes down to the resting rest
    assert client.fetch_order(order["id"], "BTC/USDT")["status"] == "closed"

    taker, maker = client.fetch_my_trades("BTC/USDT")
    assert (taker["takerOrMaker"], taker["info"]["isMaker"]) == ("taker", False)
    assert float(taker["info"]["commission"]) == pytest.approx(0.5 * 0.0007, abs=1e-12)
    assert (maker["takerOrMaker"], maker["info"]["isMaker"]) == ("maker", True)
    assert float(maker["info"]["price"]) == 60045
    assert float(maker["info"]["commission"]) == pytest.approx(0.5 * 0.0002, abs=1e-12)
    assert client.fetch_balance()["BTC"]["total"] == pytest.approx(1 + 0.5 * (1 - 0.0007) + 0.5 * (1 - 0.0002),
                                                                   abs=1e-10)


def _credentials(key: dict[str, Any]) -> dict[str, str]:
    return {"apiKey": key["api_key"], "secret": key["secret"]}


# -- 3. the account's rates and standing ----------------------------------------------------------------------
def test_commission_rates_are_answered_in_binances_shape(maker_taker_sandbox: SandboxHandle) -> None:
    sandbox = maker_taker_sandbox
    key = sandbox.create_key(flags=TRADER_FLAGS)
    client = ccxt.binance({"urls": sandbox.ccxt_urls("binance"), "enableRateLimit": False, **_credentials(key)})
    rates = client.private_get_account_commission({"symbol": "BTCUSDT"})
    zero = {"maker": "0.00000000", "taker": "0.00000000", "buyer": "0.00000000", "seller": "0.00000000"}
    assert rates == {
        "symbol": "BTCUSDT",
        "standardCommission": {"maker": "0.00020000", "taker": "0.00070000", "buyer": "0.00000000",
                               "seller": "0.00000000"},
        "specialCommission": zero,
        "taxCommission": zero,
        "discount": {"enabledForAccount": False, "enabledForSymbol": True, "discountAsset": "BNB",
                     "discount": "0.75000000"},
    }
    account = client.private_get_account()
    assert (account["makerCommission"], account["takerCommission"]) == (2, 7)
    assert account["commissionRates"]["maker"] == "0.00020000"
    assert weight_of(sandbox, lambda: signed_get(sandbox, key, "/api/v3/account/commission",
                                                 symbol="BTCUSDT")) == 20
    with pytest.raises(ccxt.BadSymbol, match="-1121"):
        client.private_get_account_commission({"symbol": "NOPEUSDT"})


def test_account_status_and_api_trading_status_answer_as_binance_documents(sandbox: SandboxHandle) -> None:
    key = sandbox.create_key()
    client = python_binance(sandbox, key)
    assert client.get_account_status() == {"data": "Normal"}
    assert client.get_account_api_trading_status() == {"data": {
        "isLocked": False, "plannedRecoverTime": 0, "triggerCondition": {"GCR": 150, "IFER": 150, "UFR": 300},
        "updateTime": 0,
    }}
    response = signed_get(sandbox, key, "/sapi/v1/account/apiTradingStatus")
    # 1 per call, in this endpoint's own SAPI pool for the IP: its second call (account/status has a pool of its own).
    assert response.headers["X-SAPI-USED-IP-WEIGHT-1M"] == "2"


# -- 3b. test orders ------------------------------------------------------------------------------------------
REFUSED_ORDERS = [
    ({"type": "LIMIT", "quantity": "0.001", "price": "59000"}, -1102),  # no timeInForce
    ({"type": "LIMIT", "timeInForce": "GTX", "quantity": "0.001", "price": "59000"}, -1115),
    ({"type": "MARKET", "timeInForce": "GTC", "quantity": "0.001"}, -1106),
    ({"type": "LIMIT", "timeInForce": "GTC", "quantity": "0.000015", "price": "59000"}, -1013),  # LOT_SIZE
    ({"type": "MARKET", "quoteOrderQty": "2.5"}, -1013),  # NOTIONAL
    ({"type": "MARKET", "quantity": "0.001", "quoteOrderQty": "100"}, -1106),  # one size, not both
]


def test_a_test_order_is_refused_exactly_as_the_real_order_is(sandbox: SandboxHandle) -> None:
    client = python_binance(sandbox, sandbox.create_key(flags=TRADER_FLAGS))
    for params, code in REFUSED_ORDERS:
        answers = []
        for send in (client.create_test_order, client.create_order):
            try:
                send(symbol="BTCUSDT", side="BUY", **params)
            except BinanceAPIException as refused:
                answers.append((refused.status_code, refused.code, refused.message))
            else:
                answers.append("accepted")
        assert answers[0] == answers[1], params
        assert answers[0][:2] == (400, code), params
    assert sandbox.exchange.orders == {}


def test_a_parameter_sent_twice_is_refused_as_binance_refuses_it_and_nothing_is_placed(
        sandbox: SandboxHandle) -> None:
    key = sandbox.create_key(flags=TRADER_FLAGS)
    for path, query in (("/api/v3/order", "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.001&quantity=0.002"),
                        ("/api/v3/order/test", "symbol=BTCUSDT&symbol=ETHUSDT&side=BUY&type=MARKET&quantity=0.001"),
                        ("/api/v3/openOrders", "symbol=BTCUSDT&symbol=BTCUSDT")):
        query = f"{query}&timestamp={int(time.time() * 1000)}"
        signature = hmac.new(key["secret"].encode(), query.encode(), hashlib.sha256).hexdigest()
        answer = httpx.request("GET" if path.endswith("openOrders") else "POST",
                               f"{sandbox.url}{path}?{query}&signature={signature}",
                               headers={"X-MBX-APIKEY": key["api_key"]})
        assert (answer.status_code, answer.json()) == (
            400, {"code": -1101, "msg": "Duplicate values for a parameter detected."}), path
    assert sandbox.exchange.orders == {}


def test_a_test_order_computes_the_commission_rates_it_would_pay(maker_taker_sandbox: SandboxHandle) -> None:
    sandbox = maker_taker_sandbox
    key = sandbox.create_key(flags=TRADER_FLAGS)
    client = python_binance(sandbox, key)
    order = {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.001"}
    assert client.create_test_order(**order) == {}
    assert client.create_test_order(**order, computeCommissionRates="true") == {
        "standardCommissionForOrder": {"maker": "0.00020000", "taker": "0.00070000"},
        "specialCommissionForOrder": {"maker": "0.00000000", "taker": "0.00000000"},
        "taxCommissionForOrder": {"maker": "0.00000000", "taker": "0.00000000"},
        "discount": {"enabledForAccount": False, "enabledForSymbol": True, "discountAsset": "BNB",
                     "discount": "0.75000000"},
    }
    assert sandbox.exchange.orders == {}

    def post_test(**extra: str) -> httpx.Response:
        query = urlencode({**order, **extra, "timestamp": str(int(time.time() * 1000))})
        signature = hmac.new(key["secret"].encode(), query.encode(), hashlib.sha256).hexdigest()
        return httpx.post(f"{sandbox.url}/api/v3/order/test?{query}&signature={signature}",
                          headers={"X-MBX-APIKEY": key["api_key"]})

    assert weight_of(sandbox, post_test) == 1
    assert weight_of(sandbox, lambda: post_test(computeCommissionRates="true")) == 20


# -- 4. cancel-all with nothing open --------------------------------------------------------------------------
def test_cancelling_all_open_orders_when_none_is_open_is_2011(sandbox: SandboxHandle,
                                                             binance: BinanceFactory) -> None:
    client = binance(sandbox.create_key(flags=TRADER_FLAGS))
    with pytest.raises(ccxt.OrderNotFound, match=r'"code":-2011,"msg":"Unknown order sent."'):
        client.cancel_all_orders("BTC/USDT")
    client.create_order("BTC/USDT", "limit", "buy", 0.01, 59000)
    assert [o["status"] for o in client.cancel_all_orders("BTC/USDT")] == ["canceled"]
    with pytest.raises(ccxt.OrderNotFound, match="-2011"):
        client.cancel_all_orders("BTC/USDT")


# -- 5. market data -------------------------------------------------------------------------------------------
def test_depth_serves_at_most_limit_levels_weighed_by_limit(sandbox: SandboxHandle,
                                                            binance: BinanceFactory) -> None:
    book = binance().fetch_order_book("BTC/USDT", limit=3)
    assert (len(book["bids"]), len(book["asks"])) == (3, 3)
    assert book["asks"][0][0] == pytest.approx(60030) and book["bids"][0][0] == pytest.approx(59970)

    def depth(limit: str | None = None) -> httpx.Response:
        params = {"symbol": "BTCUSDT", **({"limit": limit} if limit is not None else {})}
        return httpx.get(f"{sandbox.url}/api/v3/depth", params=params)

    assert [weight_of(sandbox, lambda lim=lim: depth(lim)) for lim in (None, "100", "101", "500", "1000", "5000",
                                                                        "6000")] == [5, 5, 25, 25, 50, 250, 250]
    assert len(depth("6000").json()["bids"]) == 5  # past 5000: served as 5000 (the sandbox's book has 5 levels)
    assert (depth("0").status_code, depth("0").json()["code"]) == (400, -1130)
    assert depth("-1").json() == {"code": -1100, "msg": "Illegal characters found in parameter 'limit'; legal "
                                                        "range is '^[0-9]{1,20}$'."}


def test_exchange_info_answers_for_the_symbols_asked(sandbox: SandboxHandle) -> None:
    def info(**params: str) -> httpx.Response:
        return httpx.get(f"{sandbox.url}/api/v3/exchangeInfo", params=params)

    def listed(response: httpx.Response) -> list[str]:
        assert response.status_code == 200, response.text
        return [s["symbol"] for s in response.json()["symbols"]]

    assert listed(info()) == ["BTCUSDT", "ETHUSDT"]
    assert listed(info(symbol="ETHUSDT")) == ["ETHUSDT"]
    assert listed(info(symbols='["ETHUSDT","BTCUSDT"]')) == ["ETHUSDT", "BTCUSDT"]
    assert listed(info(symbols='["BTCUSDT"]')) == ["BTCUSDT"]
    assert listed(info(permissions="SPOT")) == ["BTCUSDT", "ETHUSDT"]
    assert listed(info(permissions='["MARGIN","LEVERAGED"]')) == []
    for bad in (info(symbol="NOPEUSDT"), info(symbols='["BTCUSDT","NOPEUSDT"]')):
        assert (bad.status_code, bad.json()) == (400, {"code": -1121, "msg": "Invalid symbol."})
    assert info(symbols='["BTCUSDT","BTCUSDT"]').json()["code"] == -1151
    assert info(symbols="BTCUSDT").json()["code"] == -1100
    assert info(symbol="BTCUSDT", permissions="SPOT").json()["code"] == -1128
    # python-binance's symbol look-up reads the same endpoint.
    client = python_binance(sandbox, sandbox.create_key())
    assert client.get_symbol_info("ETHUSDT")["baseAsset"] == "ETH"


# -- order matching ------------------------------------------------------------------------------------------
def test_a_fill_or_kill_order_the_book_cannot_fill_whole_fills_nothing(sandbox: SandboxHandle,
                                                                       binance: BinanceFactory) -> None:
    client = binance(sandbox.create_key(flags=TRADER_FLAGS))
    # 0.5 BTC rests at 60030 and 0.5 at 60060: 0.8 BTC up to 60045 is not there in full.
    order = client.create_order("BTC/USDT", "limit", "buy", 0.8, 60045, {"timeInForce": "FOK"})
    assert (order["status"], order["filled"]) == ("expired", 0)
    assert client.fetch_my_trades("BTC/USDT") == []
    assert client.fetch_balance()["BTC"]["total"] == 1.0
    whole = client.create_order("BTC/USDT", "limit", "buy", 0.8, 60060, {"timeInForce": "FOK"})
    assert (whole["status"], whole["filled"]) == ("closed", pytest.approx(0.8))
