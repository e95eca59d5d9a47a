"""Unmodified third-party Binance clients (ccxt, python-binance) trade through the gateway with only their base URL
changed and only a gateway key in hand: orders placed, queried, cancelled; refusals as -2010 with Keyguard's code;
money-moving endpoints refused whatever the exchange key allows; never the exchange secret in anything they see."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import ccxt
import httpx
import pytest
import requests
from binance.client import Client as BinanceClient
from binance.exceptions import BinanceAPIException
from binance_common.configuration import ConfigurationRestAPI
from binance_common.errors import BadRequestError
from binance_sdk_spot.rest_api.models import (
    NewOrderSideEnum,
    NewOrderTimeInForceEnum,
    NewOrderTypeEnum,
    OrderTestSideEnum,
    OrderTestTypeEnum,
)
from binance_sdk_spot.spot import Spot

from keyguard.gateway.server import GatewayHandle
from keyguard.sandbox import SandboxHandle
from tests.gateway.conftest import GatewayFactory, bot_key, ccxt_bot, signed_call


def python_binance(handle: GatewayHandle, bot: str) -> BinanceClient:
    """python-binance, stock: its API_URL is the one thing pointed at the gateway (the library's own attribute)."""
    key = bot_key(handle, bot)

    class AtGateway(BinanceClient):
        API_URL = f"{handle.url}/api"

    return AtGateway(key.api_key, key.secret)


def exchange_orders(sandbox: SandboxHandle) -> list[Any]:
    return list(sandbox.exchange.orders.values())


def test_ccxt_bot_places_queries_and_cancels_orders_through_the_gateway(gateway: GatewayHandle,
                                                                         sandbox: SandboxHandle) -> None:
    bot = ccxt_bot(gateway, bot_key(gateway, "alpha"))
    assert {"BTC/USDT", "ETH/USDT"} <= set(bot.load_markets())

    filled = bot.create_order("BTC/USDT", "market", "buy", 0.001)
    resting = bot.create_order("ETH/USDT", "limit", "sell", 0.1, 9999, {"clientOrderId": "alpha-rest-1"})

    assert filled["status"] == "closed" and filled["filled"] == pytest.approx(0.001)
    assert resting["clientOrderId"] == "alpha-rest-1", "the bot sees its own client order id"
    assert bot.fetch_order(resting["id"], "ETH/USDT")["status"] == "open"
    assert [o["id"] for o in bot.fetch_open_orders("ETH/USDT")] == [resting["id"]]
    assert bot.cancel_order(resting["id"], "ETH/USDT")["status"] == "canceled"
    assert bot.fetch_order(resting["id"], "ETH/USDT")["status"] == "canceled"
    assert {o["id"] for o in bot.fetch_orders("BTC/USDT")} == {filled["id"]}
    assert [t["order"] for t in bot.fetch_my_trades("BTC/USDT")] == [filled["id"]]
    # 1 BTC to start, plus the 0.001 bought less the exchange's taker commission, which a buy pays in BTC.
    taker = sandbox.exchange.config.taker_commission
    assert bot.fetch_balance()["BTC"]["total"] == pytest.approx(1 + 0.001 * (1 - taker), abs=1e-12)
    # The gateway holds the bot to the position the exchange shows: what the buy received.
    assert gateway.gateway.envelope.watch("alpha").snapshot.positions["BTC"] == pytest.approx(0.001 * (1 - taker),
                                                                                              abs=1e-12)
    # What reached the exchange: the gateway's own ids, never the bot's, so two bots' ids cannot collide.
    assert len(exchange_orders(sandbox)) == 2
    assert all(o.client_order_id.startswith("kg-") for o in exchange_orders(sandbox))


def test_python_binance_bot_trades_through_the_gateway(gateway: GatewayHandle, sandbox: SandboxHandle) -> None:
    client = python_binance(gateway, "beta")
    assert "serverTime" in client.get_server_time()
    order = client.create_order(symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.002")
    assert order["status"] == "FILLED"
    looked_up = client.get_order(symbol="BTCUSDT", orderId=order["orderId"])
    assert looked_up["clientOrderId"] == order["clientOrderId"]
    resting = client.create_order(symbol="ETHUSDT", side="SELL", type="LIMIT", timeInForce="GTC", quantity="0.1",
                                  price="9999")
    assert [o["orderId"] for o in client.get_open_orders(symbol="ETHUSDT")] == [resting["orderId"]]
    assert client.cancel_order(symbol="ETHUSDT", origClientOrderId=resting["clientOrderId"])["status"] == "CANCELED"
    assert client.create_test_order(symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.001") == {}
    assert len(exchange_orders(sandbox)) == 2, "a test order reaches no book"

    with pytest.raises(BinanceAPIException) as refused:
        client.create_order(symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.2")
    assert refused.value.status_code == 400 and refused.value.code == -2010
    assert refused.value.message.startswith("KEYGUARD_MAX_ORDER_NOTIONAL: ")
    with pytest.raises(BinanceAPIException) as refused_test:
        client.create_test_order(symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.2")
    assert refused_test.value.message.startswith("KEYGUARD_MAX_ORDER_NOTIONAL: ")


def test_binances_own_sdk_trades_through_the_gateway(gateway: GatewayHandle, sandbox: SandboxHandle) -> None:
    # binance-sdk-spot, Binance's official connector, stock: only its base path is the gateway's.
    key = bot_key(gateway, "alpha")
    api = Spot(config_rest_api=ConfigurationRestAPI(api_key=key.api_key, api_secret=key.secret,
                                                    base_path=gateway.url)).rest_api
    assert api.time().data().server_time > 0
    filled = api.new_order(symbol="BTCUSDT", side=NewOrderSideEnum.BUY, type=NewOrderTypeEnum.MARKET,
                           quantity=0.002, new_client_order_id="sdk-buy-1").data()
    assert filled.status == "FILLED" and filled.client_order_id == "sdk-buy-1"
    assert api.get_order(symbol="BTCUSDT", orig_client_order_id="sdk-buy-1").data().order_id == filled.order_id
    # Sent again with the same id (a retry): the same order, not a second one.
    again = api.new_order(symbol="BTCUSDT", side=NewOrderSideEnum.BUY, type=NewOrderTypeEnum.MARKET,
                          quantity=0.002, new_client_order_id="sdk-buy-1").data()
    assert again.order_id == filled.order_id
    resting = api.new_order(symbol="ETHUSDT", side=NewOrderSideEnum.SELL, type=NewOrderTypeEnum.LIMIT,
                            time_in_force=NewOrderTimeInForceEnum.GTC, quantity=0.1, price=9999.0,
                            new_client_order_id="sdk-rest-1").data()
    assert [o.client_order_id for o in api.get_open_orders(symbol="ETHUSDT").data()] == ["sdk-rest-1"]
    cancelled = api.delete_order(symbol="ETHUSDT", orig_client_order_id="sdk-rest-1").data()
    assert cancelled.status == "CANCELED" and cancelled.orig_client_order_id == "sdk-rest-1"
    assert {o.order_id for o in api.all_orders(symbol="BTCUSDT").data()} == {filled.order_id}
    assert {t.order_id for t in api.my_trades(symbol="BTCUSDT").data()} == {filled.order_id}
    assert resting.order_id != filled.order_id
    api.order_test(symbol="BTCUSDT", side=OrderTestSideEnum.BUY, type=OrderTestTypeEnum.MARKET, quantity=0.001)
    assert len(exchange_orders(sandbox)) == 2, "a retry and a test order reach no book"
    # alpha's cap is 2000: a refusal is the SDK's own error with Binance's code and Keyguard's reason.
    with pytest.raises(BadRequestError, match="-2010.*KEYGUARD_MAX_ORDER_NOTIONAL: bot alpha"):
        api.new_order(symbol="BTCUSDT", side=NewOrderSideEnum.BUY, type=NewOrderTypeEnum.MARKET, quantity=0.2)
    assert len(exchange_orders(sandbox)) == 2


def test_refusals_arrive_as_rejected_orders_with_the_keyguard_code(gateway: GatewayHandle,
                                                                   sandbox: SandboxHandle) -> None:
    alpha = ccxt_bot(gateway, bot_key(gateway, "alpha"))
    beta = ccxt_bot(gateway, bot_key(gateway, "beta"))
    alpha.load_markets()
    beta.load_markets()

    def refusal(bot: ccxt.binance, *args: Any) -> str:
        """The rejection as it came over the wire (ccxt raises its usual order errors for it)."""
        with pytest.raises(ccxt.ExchangeError):
            bot.create_order(*args)
        body = json.loads(bot.last_http_response)
        assert body["code"] == -2010
        return str(body["msg"])

    # alpha's own cap (2000) is below the account's (5000); beta has only the account's.
    assert refusal(alpha, "BTC/USDT", "market", "buy", 0.05).startswith("KEYGUARD_MAX_ORDER_NOTIONAL: bot alpha")
    assert refusal(beta, "BTC/USDT", "market", "buy", 0.1).startswith("KEYGUARD_MAX_ORDER_NOTIONAL: account")
    assert refusal(beta, "ETH/USDT", "limit", "buy", 6, 100).startswith("KEYGUARD_MAX_POSITION: account")

    cfg = gateway.gateway.config
    gateway.gateway.trading.set(__import__("keyguard.worker.risk", fromlist=["x"]).TradingState.REDUCING, "beta")
    assert refusal(beta, "BTC/USDT", "market", "buy", 0.001).startswith("KEYGUARD_STATE_REDUCING: bot beta")
    assert alpha.create_order("BTC/USDT", "market", "buy", 0.001)["status"] == "closed", "alpha is not reducing"

    from keyguard.worker.killswitch import KillSwitch

    KillSwitch(cfg.kill_switch_path).engage("on-call says stop", by="test")
    assert refusal(alpha, "BTC/USDT", "market", "buy", 0.001).startswith("KEYGUARD_KILL_SWITCH: the account's kill "
                                                                         "switch is engaged (on-call says stop)")
    assert len(exchange_orders(sandbox)) == 1, "no refused order reached the exchange"


def test_withdraw_transfer_and_key_management_are_refused_even_when_the_exchange_key_allows_them(
        start_gateway: GatewayFactory, sandbox: SandboxHandle, exchange_key: dict[str, Any]) -> None:
    sandbox.exchange.set_flags(exchange_key["api_key"], {"enableWithdrawals": True, "permitsUniversalTransfer": True,
                                                         "enableInternalTransfer": True})
    handle = start_gateway()
    bot = ccxt_bot(handle, bot_key(handle, "alpha"))
    bot.load_markets()

    with pytest.raises(ccxt.AuthenticationError, match="KEYGUARD_ENDPOINT_REFUSED: POST /sapi/v1/capital/withdraw/"
                                                       "apply: withdrawals never pass"):
        bot.withdraw("USDT", 100, "0x000000000000000000000000000000000000dEaD")
    key = bot_key(handle, "beta")
    for method, path, params in (
        ("POST", "/sapi/v1/capital/withdraw/apply", {"coin": "USDT", "amount": 5, "address": "0xabc"}),
        ("POST", "/wapi/v3/withdraw.html", {"asset": "USDT", "amount": 5, "address": "0xabc"}),
        ("POST", "/sapi/v1/asset/transfer", {"type": "MAIN_UMFUTURE", "asset": "USDT", "amount": 10}),
        ("POST", "/sapi/v1/futures/transfer", {"asset": "USDT", "amount": 10, "type": 1}),
        ("POST", "/sapi/v1/sub-account/transfer/subToSub", {"toEmail": "a@b.c", "asset": "BTC", "amount": 1}),
        ("GET", "/sapi/v1/account/apiRestrictions", {}),
        ("POST", "/sapi/v2/sub-account/subAccountApi/ipRestriction", {"email": "a@b.c", "subAccountApiKey": "k",
                                                                      "status": "1", "ipAddress": "1.2.3.4"}),
        ("DELETE", "/sapi/v1/sub-account/subAccountApi", {"email": "a@b.c", "subAccountApiKey": "k"}),
        ("POST", "/api/v3/userDataStream", {}),
        ("PUT", "/api/v3/order/cancelReplace", {"symbol": "BTCUSDT"}),
    ):
        answer = signed_call(handle, key, method, path, params)
        assert answer.status_code == 401, f"{method} {path} passed the gateway"
        assert answer.json()["msg"].startswith(f"KEYGUARD_ENDPOINT_REFUSED: {method} {path}")
    assert sandbox.exchange.withdrawals_of(sandbox.exchange.keys[exchange_key["api_key"]].account) == []


def test_a_bot_never_sees_the_exchange_key_or_secret(gateway: GatewayHandle, sandbox: SandboxHandle,
                                                     exchange_key: dict[str, Any], tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    seen: list[str] = []
    session = requests.Session()
    session.hooks["response"].append(lambda r, *a, **k: seen.append(f"{r.status_code} {r.headers} {r.text}"))
    key = bot_key(gateway, "alpha")
    bot = ccxt.binance({"apiKey": key.api_key, "secret": key.secret, "urls": gateway.ccxt_urls(),
                        "session": session})
    caplog.set_level(logging.DEBUG)
    bot.load_markets()
    bot.create_order("BTC/USDT", "market", "buy", 0.001)
    order = bot.create_order("ETH/USDT", "limit", "sell", 0.1, 9999)
    bot.fetch_order(order["id"], "ETH/USDT")
    bot.cancel_order(order["id"], "ETH/USDT")
    bot.fetch_balance()
    for failing in (lambda: bot.create_order("BTC/USDT", "market", "buy", 1),
                    lambda: bot.withdraw("USDT", 1, "0xabc"),
                    lambda: bot.fetch_order("999999", "BTC/USDT")):
        with pytest.raises(ccxt.BaseError):
            failing()
    sandbox.exchange.revoke_key(exchange_key["api_key"])  # the exchange now refuses the gateway's own key
    with pytest.raises(ccxt.BaseError):
        bot.create_order("BTC/USDT", "market", "buy", 0.001)

    gateway.gateway.publish()
    state_dir = gateway.gateway.config.state_dir
    stored = b"".join(p.read_bytes() for p in state_dir.rglob("*") if p.is_file() and "keys" not in p.name)
    for secret_value in (exchange_key["secret"], exchange_key["api_key"]):
        assert not any(secret_value in text for text in seen), "a response carried the exchange's key or secret"
        assert secret_value not in caplog.text
        assert secret_value.encode() not in stored
    assert len(seen) >= 8


@pytest.mark.usefixtures("aws_env")
def test_the_gateway_reads_the_exchange_key_from_secrets_manager(start_gateway: GatewayFactory, moto_url: str,
                                                                 sandbox: SandboxHandle,
                                                                 exchange_key: dict[str, Any]) -> None:
    import boto3

    sm = boto3.client("secretsmanager", region_name="eu-west-1", endpoint_url=moto_url)
    arn = sm.create_secret(Name="kg/gateway-exchange-key", SecretString=json.dumps(
        {"api_key": exchange_key["api_key"], "secret": exchange_key["secret"]}))["ARN"]
    handle = start_gateway(exchange={"base_url": sandbox.url, "aws_secret": {
        "secret_id": arn, "region": "eu-west-1", "endpoint_url": moto_url}})
    bot = ccxt_bot(handle, bot_key(handle, "alpha"))
    assert bot.create_order("BTC/USDT", "market", "buy", 0.001)["status"] == "closed"
    assert handle.gateway.client.api_key_id == exchange_key["api_key"]


def test_garbage_in_the_signed_fields_gets_binances_codes_not_an_internal_error(gateway: GatewayHandle) -> None:
    key = bot_key(gateway, "alpha")
    now = int(time.time() * 1000)
    answers = {}
    for name, query in {
        "signature not ASCII": f"symbol=BTCUSDT&timestamp={now}&signature=%C3%A9%C3%A9",
        "timestamp in superscript": "symbol=BTCUSDT&timestamp=%C2%B2&signature=00",
        "timestamp in Arabic-Indic digits": "symbol=BTCUSDT&timestamp=%D9%A1%D9%A7&signature=00",
    }.items():
        answer = httpx.get(f"{gateway.url}/api/v3/openOrders?{query}", headers={"X-MBX-APIKEY": key.api_key})
        answers[name] = (answer.status_code, answer.json()["code"])
    assert answers == {"signature not ASCII": (400, -1022), "timestamp in superscript": (400, -1100),
                       "timestamp in Arabic-Indic digits": (400, -1100)}
