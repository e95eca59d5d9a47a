"""The sandbox refuses what Binance refuses: orders off the advertised filters, numbers that are not plain decimals,
parameters an order type does not take. Raw signed HTTP, so no client library rounds or rewrites anything first,
and one stock python-binance client."""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from binance.client import Client as BinanceClient
from binance.exceptions import BinanceAPIException

from keyguard.sandbox import SandboxHandle

from .conftest import TRADER_FLAGS


class SignedCaller:
    """Sends exactly the parameters given, signed the way Binance documents (HMAC-SHA256 of the query string)."""

    def __init__(self, sandbox: SandboxHandle, key: dict[str, Any]) -> None:
        self.url = sandbox.url
        self.key = key

    def __call__(self, method: str, path: str, params: dict[str, str]) -> httpx.Response:
        query = urlencode({**params, "timestamp": str(int(time.time() * 1000))})
        signature = hmac.new(self.key["secret"].encode(), query.encode(), hashlib.sha256).hexdigest()
        return httpx.request(method, f"{self.url}{path}?{query}&signature={signature}",
                             headers={"X-MBX-APIKEY": self.key["api_key"]})


@pytest.fixture
def signed(sandbox: SandboxHandle) -> SignedCaller:
    return SignedCaller(sandbox, sandbox.create_key(flags=TRADER_FLAGS))


def _order(signed: SignedCaller, **params: str) -> httpx.Response:
    return signed("POST", "/api/v3/order", {"symbol": "BTCUSDT", "side": "BUY", **params})


def _refusal(response: httpx.Response) -> tuple[int, int, str]:
    body = response.json()
    return response.status_code, body["code"], body["msg"]


LIMIT = {"type": "LIMIT", "timeInForce": "GTC"}


@pytest.mark.parametrize(("params", "failed_filter"), [
    ({**LIMIT, "quantity": "0.000015", "price": "59000"}, "LOT_SIZE"),  # off the 0.00001 step
    ({**LIMIT, "quantity": "10000", "price": "1"}, "LOT_SIZE"),  # above maxQty 9000
    ({**LIMIT, "quantity": "0.001", "price": "59000.005"}, "PRICE_FILTER"),  # off the 0.01 tick
    ({**LIMIT, "quantity": "0.001", "price": "2000000"}, "PRICE_FILTER"),  # above maxPrice
    ({**LIMIT, "quantity": "0.00005", "price": "50000"}, "NOTIONAL"),  # 2.5 USDT, minimum 5
    ({"type": "MARKET", "quantity": "0.00005"}, "NOTIONAL"),  # about 3 USDT at the market
    ({"type": "MARKET", "quoteOrderQty": "2.5"}, "NOTIONAL"),
])
def test_an_order_off_the_advertised_filters_is_refused_with_1013_and_moves_nothing(
    sandbox: SandboxHandle, signed: SignedCaller, params: dict[str, str], failed_filter: str
) -> None:
    before = dict(sandbox.exchange.balances["main"])
    assert _refusal(_order(signed, **params)) == (400, -1013, f"Filter failure: {failed_filter}")
    assert sandbox.exchange.orders == {}
    assert sandbox.exchange.balances["main"] == before


def test_the_filters_exchange_info_advertises_are_the_ones_enforced(sandbox: SandboxHandle,
                                                                   signed: SignedCaller) -> None:
    info = httpx.get(f"{sandbox.url}/api/v3/exchangeInfo").json()
    btc = next(s for s in info["symbols"] if s["symbol"] == "BTCUSDT")
    filters = {f["filterType"]: f for f in btc["filters"]}
    assert (filters["LOT_SIZE"]["stepSize"], filters["PRICE_FILTER"]["tickSize"],
            filters["NOTIONAL"]["minNotional"]) == ("0.00001", "0.01", "5.00")
    # One step of BTC at a price on the tick, worth exactly the minimum notional: accepted, and it fills.
    accepted = _order(signed, **LIMIT, quantity="0.00001", price="500000.00")
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["status"] == "FILLED"


@pytest.mark.parametrize("quantity", ["1e-2", "NaN", "nan", "inf", "Infinity", "-0.01", "+0.01", "0x1", " 0.01",
                                      "0.01.0", "1_000"])
def test_a_quantity_that_is_not_a_plain_decimal_is_refused_with_1100_and_never_reaches_balances(
    sandbox: SandboxHandle, signed: SignedCaller, quantity: str
) -> None:
    before = dict(sandbox.exchange.balances["main"])
    status, code, msg = _refusal(_order(signed, type="MARKET", quantity=quantity))
    assert (status, code) == (400, -1100)
    assert msg == ("Illegal characters found in parameter 'quantity'; legal range is "
                   "'^([0-9]{1,20})(\\.[0-9]{1,20})?$'.")
    assert sandbox.exchange.orders == {} and sandbox.exchange.balances["main"] == before


@pytest.mark.parametrize("price", ["NaN", "-60000", "6e4"])
def test_a_price_that_is_not_a_plain_decimal_is_refused_with_1100(signed: SignedCaller, price: str) -> None:
    status, code, _ = _refusal(_order(signed, **LIMIT, quantity="0.001", price=price))
    assert (status, code) == (400, -1100)


@pytest.mark.parametrize("quantity", ["0", "0.0", "0.00000"])
def test_a_zero_quantity_fails_the_lot_size_filter(sandbox: SandboxHandle, signed: SignedCaller,
                                                   quantity: str) -> None:
    assert _refusal(_order(signed, type="MARKET", quantity=quantity)) == (400, -1013, "Filter failure: LOT_SIZE")
    assert sandbox.exchange.orders == {}


def test_nan_never_reaches_the_balances_even_past_the_binance_face(sandbox: SandboxHandle) -> None:
    from keyguard.sandbox.state import SandboxRejection

    sandbox.exchange.set_balance("main", "USDT", 1000.0)
    for quantity, price in ((float("nan"), None), (float("inf"), None), (0.001, float("nan"))):
        with pytest.raises(SandboxRejection):
            sandbox.exchange.place_order("main", "BTCUSDT", "BUY", "LIMIT" if price else "MARKET", quantity, None,
                                         price, "GTC", "x")
    assert sandbox.exchange.balances["main"]["USDT"] == 1000.0


def test_a_market_order_with_a_price_is_refused_with_1106(signed: SignedCaller) -> None:
    response = _order(signed, type="MARKET", quantity="0.001", price="60000")
    assert _refusal(response) == (400, -1106, "Parameter 'price' sent when not required.")


def test_a_test_order_is_held_to_the_same_rules(signed: SignedCaller) -> None:
    response = signed("POST", "/api/v3/order/test", {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET",
                                                     "quantity": "0.000015"})
    assert _refusal(response) == (400, -1013, "Filter failure: LOT_SIZE")


def python_binance(sandbox: SandboxHandle, key: dict[str, Any]) -> BinanceClient:
    """python-binance, stock: its API_URL is the one thing pointed at the sandbox (the library's own attribute)."""

    class AtSandbox(BinanceClient):
        API_URL = f"{sandbox.url}/api"

    return AtSandbox(key["api_key"], key["secret"])


def test_python_binance_gets_binance_filter_refusals_for_unrounded_amounts(sandbox: SandboxHandle) -> None:
    client = python_binance(sandbox, sandbox.create_key(flags=TRADER_FLAGS))
    # python-binance sends what it is given: a float's repr in exponent notation is not a Binance decimal.
    with pytest.raises(BinanceAPIException) as exponent:
        client.create_order(symbol="BTCUSDT", side="BUY", type="MARKET", quantity=str(1e-05))
    assert exponent.value.code == -1100
    with pytest.raises(BinanceAPIException) as off_step:
        client.order_limit_buy(symbol="BTCUSDT", quantity="0.0012345", price="59000")
    assert (off_step.value.code, off_step.value.message) == (-1013, "Filter failure: LOT_SIZE")
    placed = client.order_limit_buy(symbol="BTCUSDT", quantity="0.00123", price="59000")
    assert placed["status"] == "NEW"


@pytest.mark.parametrize(("path", "method", "extra"), [
    ("/api/v3/order", "POST", {"type": "MARKET", "quantity": "0.001", "newClientOrderID": "wrong-case"}),
    ("/api/v3/order/test", "POST", {"type": "MARKET", "quantity": "0.001", "qty": "0.001"}),
])
def test_a_misspelt_parameter_is_refused_with_1104_and_places_nothing(
    sandbox: SandboxHandle, signed: SignedCaller, path: str, method: str, extra: dict[str, str]
) -> None:
    response = signed(method, path, {"symbol": "BTCUSDT", "side": "BUY", **extra})
    # symbol, side, type, quantity, timestamp and signature are read; the misspelt seventh is not.
    assert _refusal(response) == (400, -1104, "Not all sent parameters were read; read '6' parameter(s) but was "
                                              "sent '7'.")
    assert sandbox.exchange.orders == {}


def test_a_cancel_with_an_unknown_parameter_is_refused_with_1104(signed: SignedCaller) -> None:
    placed = _order(signed, **LIMIT, quantity="0.001", price="59000").json()
    response = signed("DELETE", "/api/v3/order", {"symbol": "BTCUSDT", "orderId": str(placed["orderId"]),
                                                  "orderID": str(placed["orderId"])})
    assert _refusal(response)[:2] == (400, -1104)


@pytest.mark.parametrize("client_id", ["has space", "x" * 37, "semi;colon", "ünïcode"])
def test_a_client_order_id_outside_binance_s_pattern_is_refused_with_1100(signed: SignedCaller,
                                                                          client_id: str) -> None:
    status, code, msg = _refusal(_order(signed, type="MARKET", quantity="0.001", newClientOrderId=client_id))
    assert (status, code) == (400, -1100)
    assert msg == ("Illegal characters found in parameter 'newClientOrderId'; legal range is "
                   "'^[\\.A-Z\\:/a-z0-9_-]{1,36}$'.")


def test_a_client_order_id_inside_the_pattern_is_kept(signed: SignedCaller) -> None:
    response = _order(signed, type="MARKET", quantity="0.001", newClientOrderId="x-BOT:1/a.b_c-d")
    assert response.json()["clientOrderId"] == "x-BOT:1/a.b_c-d"
