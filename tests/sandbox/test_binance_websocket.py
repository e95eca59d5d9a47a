"""Binance's WebSocket faces of the sandbox, over real WebSockets on 127.0.0.1: market streams fed by real fills and
price moves, the WebSocket API's user data stream, and a ccxt.pro bot that trades on events with no REST polling."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import ccxt.pro
import httpx
import pytest
from tests.sandbox.conftest import TRADER_FLAGS, BinanceFactory
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from keyguard.sandbox import SandboxHandle
from keyguard.sandbox.server import BINANCE_SPOT_ONLY_OPTIONS
from keyguard.sandbox.state import Fault

TIMEOUT_S = 10.0
# Most messages a test reads while looking for one it expects.
READ_LIMIT = 50
_T = TypeVar("_T")


def ws_url(sandbox: SandboxHandle, path: str) -> str:
    return "ws" + sandbox.url.removeprefix("http") + path


async def within(awaitable: Awaitable[_T], timeout_s: float = TIMEOUT_S) -> _T:
    return await asyncio.wait_for(awaitable, timeout_s)


async def receive(ws: ClientConnection) -> Any:
    return json.loads(await within(ws.recv()))


async def receive_until(ws: ClientConnection, wanted: Callable[[Any], bool]) -> Any:
    """The first message `wanted` accepts, reading at most READ_LIMIT messages."""
    for _ in range(READ_LIMIT):
        message = await receive(ws)
        if wanted(message):
            return message
    raise AssertionError(f"no wanted message among the first {READ_LIMIT}")


async def request(ws: ClientConnection, message: dict[str, Any]) -> Any:
    """Send a request and return the answer carrying its id (events in between are skipped)."""
    await ws.send(json.dumps(message))
    return await receive_until(ws, lambda m: isinstance(m, dict) and "id" in m and m["id"] == message["id"])


def signed(key: dict[str, Any], *, secret: str | None = None, timestamp_ms: int | None = None) -> dict[str, Any]:
    """WebSocket API params signed as Binance documents: every param but signature, sorted by name, HMAC-SHA256 hex."""
    params: dict[str, Any] = {"apiKey": key["api_key"], "timestamp": timestamp_ms or int(time.time() * 1000)}
    payload = "&".join(f"{name}={params[name]}" for name in sorted(params))
    signature = hmac.new((secret or key["secret"]).encode(), payload.encode(), hashlib.sha256).hexdigest()
    return {**params, "signature": signature}


async def subscribe_user_data(ws: ClientConnection, key: dict[str, Any]) -> Any:
    return await request(ws, {"id": "sub", "method": "userDataStream.subscribe.signature", "params": signed(key)})


def loopback_ccxt_urls(sandbox: SandboxHandle) -> dict[str, Any]:
    """The sandbox's ccxt URLs, checked to keep ccxt.pro's spot WebSockets on the sandbox: a URL left out would send
    it to the real Binance."""
    urls = sandbox.ccxt_urls()
    hosts = {urls["api"]["ws"]["spot"].split("/")[2], urls["api"]["ws"]["ws-api"]["spot"].split("/")[2]}
    assert hosts == {sandbox.url.split("/")[2]}
    return urls


def set_price(sandbox: SandboxHandle, symbol: str, price: float) -> None:
    """Move the market through the admin API, as an operator would."""
    with sandbox.admin() as admin:
        admin.put("/prices", json={"symbol": symbol, "price": price}).raise_for_status()


def is_event(kind: str, **fields: Any) -> Callable[[Any], bool]:
    def wanted(message: Any) -> bool:
        event = message.get("event", message) if isinstance(message, dict) else None
        return (isinstance(event, dict) and event.get("e") == kind
                and all(event.get(name) == value for name, value in fields.items()))

    return wanted


# -- market streams -------------------------------------------------------------------------------------
def test_trade_stream_reports_a_real_fill_in_binance_fields(sandbox: SandboxHandle, binance: BinanceFactory) -> None:
    trader = binance(sandbox.create_key(flags=TRADER_FLAGS))

    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        async with connect(ws_url(sandbox, "/ws/btcusdt@trade")) as ws:
            order = await within(asyncio.to_thread(trader.create_order, "BTC/USDT", "market", "buy", 0.01))
            return order, await receive(ws)

    order, trade = asyncio.run(scenario())
    fill = order["info"]["fills"][0]
    assert trade["e"] == "trade" and trade["s"] == "BTCUSDT"
    assert (trade["t"], trade["p"], trade["q"]) == (fill["tradeId"], fill["price"], "0.01000000")
    # The buyer was the taker (it crossed the book), so the buyer is not the maker.
    assert trade["m"] is False and isinstance(trade["T"], int)


def test_combined_stream_wraps_book_ticker_and_ticker_after_a_price_move(sandbox: SandboxHandle) -> None:
    async def scenario() -> tuple[Any, Any]:
        url = ws_url(sandbox, "/stream?streams=btcusdt@bookTicker/btcusdt@ticker")
        async with connect(url) as ws:
            await within(asyncio.to_thread(set_price, sandbox, "BTCUSDT", 61000.0))
            book = await receive_until(ws, lambda m: m["stream"] == "btcusdt@bookTicker")
            ticker = await receive_until(ws, lambda m: m["stream"] == "btcusdt@ticker" and m["data"]["c"] ==
                                         "61000.00000000")
            return book, ticker

    book, ticker = asyncio.run(scenario())
    assert set(book) == {"stream", "data"} and set(ticker) == {"stream", "data"}
    best = book["data"]
    assert best["s"] == "BTCUSDT" and float(best["b"]) < 61000.0 < float(best["a"])
    assert ticker["data"]["e"] == "24hrTicker" and ticker["data"]["o"] == "60000.00000000"
    assert ticker["data"]["p"] == "1000.00000000"


def apply_diff(side: dict[float, float], levels: list[list[str]]) -> None:
    for price, qty in levels:
        if float(qty) == 0:
            side.pop(float(price), None)
        else:
            side[float(price)] = float(qty)


def test_depth_diffs_keep_a_local_book_equal_to_rest_depth(sandbox: SandboxHandle) -> None:
    """Binance's "How to manage a local order book correctly": a REST snapshot plus the diffs after its
    lastUpdateId, U continuing the previous u, is the book REST shows afterwards."""

    def rest_depth() -> dict[str, Any]:
        response = httpx.get(f"{sandbox.url}/api/v3/depth", params={"symbol": "BTCUSDT"}, timeout=TIMEOUT_S)
        response.raise_for_status()
        return response.json()

    async def scenario() -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
        async with connect(ws_url(sandbox, "/ws/btcusdt@depth@100ms")) as ws:
            snapshot = await within(asyncio.to_thread(rest_depth))
            for price in (60100.0, 59900.0, 59950.0):
                await within(asyncio.to_thread(set_price, sandbox, "BTCUSDT", price))
            after = await within(asyncio.to_thread(rest_depth))
            events = []
            for _ in range(READ_LIMIT):
                events.append(await receive(ws))
                if events[-1]["u"] >= after["lastUpdateId"]:
                    break
            return snapshot, events, after

    snapshot, events, after = asyncio.run(scenario())
    bids = {float(p): float(q) for p, q in snapshot["bids"]}
    asks = {float(p): float(q) for p, q in snapshot["asks"]}
    book_id = snapshot["lastUpdateId"]
    for event in events:
        assert event["e"] == "depthUpdate" and event["s"] == "BTCUSDT"
        if event["u"] <= book_id:
            continue
        assert event["U"] == book_id + 1, "a gap between the snapshot or the last event and this one"
        apply_diff(bids, event["b"])
        apply_diff(asks, event["a"])
        book_id = event["u"]
    assert book_id == after["lastUpdateId"] > snapshot["lastUpdateId"]
    assert bids == {float(p): float(q) for p, q in after["bids"]}
    assert asks == {float(p): float(q) for p, q in after["asks"]}


def test_ccxt_pro_order_book_follows_a_price_move_from_rest_depth_and_diffs(sandbox: SandboxHandle) -> None:
    """ccxt.pro's watch_order_book joins REST depth to the @depth@100ms diffs by their update ids (and gives up on a
    gap): after a price move its book is the one REST depth shows."""

    async def scenario() -> tuple[Any, dict[str, Any]]:
        exchange = ccxt.pro.binance({"urls": loopback_ccxt_urls(sandbox), "options": dict(BINANCE_SPOT_ONLY_OPTIONS),
                                     "enableRateLimit": False})
        try:
            await within(exchange.load_markets())
            book = await within(exchange.watch_order_book("BTC/USDT"))
            await within(asyncio.to_thread(set_price, sandbox, "BTCUSDT", 60500.0))
            for _ in range(READ_LIMIT):
                if book["bids"][0][0] > 60000.0:
                    break
                book = await within(exchange.watch_order_book("BTC/USDT"))
            return book, httpx.get(f"{sandbox.url}/api/v3/depth", params={"symbol": "BTCUSDT"}).json()
        finally:
            await exchange.close()

    book, rest = asyncio.run(scenario())
    assert book["nonce"] == rest["lastUpdateId"]
    assert book["bids"] == [[float(p), float(q)] for p, q in rest["bids"]]
    assert book["asks"] == [[float(p), float(q)] for p, q in rest["asks"]]


def test_live_subscribe_unsubscribe_and_list_subscriptions(sandbox: SandboxHandle, binance: BinanceFactory) -> None:
    trader = binance(sandbox.create_key(flags=TRADER_FLAGS))

    async def scenario() -> tuple[list[Any], Any]:
        async with connect(ws_url(sandbox, "/ws")) as ws:
            answers = [
                await request(ws, {"method": "SUBSCRIBE", "params": ["btcusdt@trade", "ethusdt@bookTicker"],
                                   "id": 1}),
                await request(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 2}),
                await request(ws, {"method": "UNSUBSCRIBE", "params": ["btcusdt@trade"], "id": 3}),
                await request(ws, {"method": "LIST_SUBSCRIPTIONS", "id": "four"}),
            ]
            # No longer subscribed to trades: after a fill, the next event is the ETH price move's.
            await within(asyncio.to_thread(trader.create_order, "BTC/USDT", "market", "buy", 0.01))
            await within(asyncio.to_thread(set_price, sandbox, "ETHUSDT", 3100.0))
            return answers, await receive(ws)

    answers, event = asyncio.run(scenario())
    assert answers == [
        {"result": None, "id": 1},
        {"result": ["btcusdt@trade", "ethusdt@bookTicker"], "id": 2},
        {"result": None, "id": 3},
        {"result": ["ethusdt@bookTicker"], "id": "four"},
    ]
    assert event["s"] == "ETHUSDT" and float(event["b"]) < 3100.0 < float(event["a"])


def test_stream_requests_are_answered_in_binance_error_shape(sandbox: SandboxHandle) -> None:
    async def scenario() -> list[Any]:
        async with connect(ws_url(sandbox, "/ws/btcusdt@trade")) as ws:
            await ws.send("{not json")
            answers = [await receive(ws)]
            answers.append(await request(ws, {"method": "SUBSCRIBE", "params": ["btcusdt@aggTrade"], "id": 5}))
            answers.append(await request(ws, {"method": "PUBLISH", "id": 6}))
            answers.append(await request(ws, {"method": "GET_PROPERTY", "params": ["combined"], "id": 7}))
            return answers

    invalid_json, unserved, unknown, combined = asyncio.run(scenario())
    assert invalid_json["id"] is None and invalid_json["error"]["code"] == 3
    assert invalid_json["error"]["msg"].startswith("Invalid JSON")
    assert unserved["id"] == 5 and unserved["error"]["code"] == 2 and "btcusdt@aggTrade" in unserved["error"]["msg"]
    assert unknown["id"] == 6 and unknown["error"]["code"] == 2 and "`SUBSCRIBE`" in unknown["error"]["msg"]
    assert combined == {"result": False, "id": 7}


def test_more_than_five_messages_a_second_disconnect_a_stream(sandbox: SandboxHandle) -> None:
    """Binance: 5 incoming messages per second per connection; beyond that the connection is dropped."""

    async def scenario() -> tuple[int, int | None]:
        async with connect(ws_url(sandbox, "/ws")) as ws:
            for i in range(6):
                await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": i}))
            answered = 0
            try:
                for _ in range(6):
                    await receive(ws)
                    answered += 1
            except ConnectionClosed as closed:
                return answered, closed.rcvd.code if closed.rcvd else None
            return answered, None

    answered, code = asyncio.run(scenario())
    assert answered <= 5 and code == 1008


# -- user data stream over the WebSocket API -------------------------------------------------------------
def test_user_data_stream_reports_an_orders_life_and_the_balances(sandbox: SandboxHandle,
                                                                  binance: BinanceFactory) -> None:
    key = sandbox.create_key(flags=TRADER_FLAGS)
    trader = binance(key)

    async def scenario() -> tuple[Any, list[Any], list[Any]]:
        async with connect(ws_url(sandbox, "/ws-api/v3")) as ws:
            subscribed = await subscribe_user_data(ws, key)
            market = await within(asyncio.to_thread(trader.create_order, "BTC/USDT", "market", "buy", 0.01))
            filled = [await receive_until(ws, is_event("executionReport", i=int(market["id"]), x=x))
                      for x in ("NEW", "TRADE")]
            filled.append(await receive_until(ws, is_event("outboundAccountPosition")))
            resting = await within(asyncio.to_thread(trader.create_order, "BTC/USDT", "limit", "buy", 0.01, 50000))
            await within(asyncio.to_thread(trader.cancel_order, resting["id"], "BTC/USDT"))
            canceled = [await receive_until(ws, is_event("executionReport", i=int(resting["id"]), x=x))
                        for x in ("NEW", "CANCELED")]
            canceled.append(await receive_until(ws, is_event("outboundAccountPosition")))
            return subscribed, filled, canceled

    subscribed, filled, canceled = asyncio.run(scenario())
    # Binance: "rateLimits field is included with every response by default".
    assert subscribed.pop("rateLimits")[0]["rateLimitType"] == "REQUEST_WEIGHT"
    assert subscribed == {"id": "sub", "status": 200, "result": {"subscriptionId": 0}}
    new, trade, position = filled
    assert {m["subscriptionId"] for m in filled + canceled} == {0}
    assert (new["event"]["X"], new["event"]["S"], new["event"]["o"], new["event"]["z"]) == (
        "NEW", "BUY", "MARKET", "0.00000000")
    report = trade["event"]
    assert (report["X"], report["l"], report["z"]) == ("FILLED", "0.01000000", "0.01000000")
    assert float(report["L"]) > 60000.0 and report["t"] > 0 and report["m"] is False
    balances = {b["a"]: b for b in position["event"]["B"]}
    # 1 BTC to start, plus the 0.01 bought less the taker commission, which a buy pays in the BTC received.
    assert balances["BTC"]["f"] == f"{1 + 0.01 * (1 - sandbox.exchange.config.taker_commission):.8f}"
    new_limit, cancel, after_cancel = canceled
    assert (new_limit["event"]["X"], new_limit["event"]["w"], new_limit["event"]["p"]) == (
        "NEW", True, "50000.00000000")
    assert cancel["event"]["X"] == "CANCELED" and cancel["event"]["C"] == new_limit["event"]["c"]
    assert {b["a"]: b["l"] for b in after_cancel["event"]["B"]}["USDT"] == "0.00000000"


def test_a_fill_by_price_move_reaches_the_user_data_stream(sandbox: SandboxHandle, binance: BinanceFactory) -> None:
    key = sandbox.create_key(flags=TRADER_FLAGS)
    trader = binance(key)

    async def scenario() -> tuple[Any, Any]:
        async with connect(ws_url(sandbox, "/ws-api/v3")) as ws:
            await subscribe_user_data(ws, key)
            order = await within(asyncio.to_thread(trader.create_order, "BTC/USDT", "limit", "buy", 0.01, 59000))
            await within(asyncio.to_thread(set_price, sandbox, "BTCUSDT", 58900.0))
            trade = await receive_until(ws, is_event("executionReport", i=int(order["id"]), x="TRADE"))
            return trade, await receive_until(ws, is_event("outboundAccountPosition"))

    trade, position = asyncio.run(scenario())
    # A resting order the market came to: filled at its own price, as the maker.
    assert (trade["event"]["X"], trade["event"]["L"], trade["event"]["m"]) == ("FILLED", "59000.00000000", True)
    # The maker's commission, paid in the BTC received.
    assert {b["a"]: b["f"] for b in position["event"]["B"]}["BTC"] == \
        f"{1 + 0.01 * (1 - sandbox.exchange.config.maker_commission):.8f}"


def test_user_data_stream_carries_only_the_subscribed_accounts_events(sandbox: SandboxHandle,
                                                                      binance: BinanceFactory) -> None:
    mine = sandbox.create_key(flags=TRADER_FLAGS, account="alice")
    theirs = sandbox.create_key(flags=TRADER_FLAGS, account="bob")

    async def scenario() -> tuple[list[Any], str]:
        async with connect(ws_url(sandbox, "/ws-api/v3")) as ws:
            await subscribe_user_data(ws, mine)
            await within(asyncio.to_thread(binance(theirs).create_order, "BTC/USDT", "market", "buy", 0.02))
            own = await within(asyncio.to_thread(binance(mine).create_order, "BTC/USDT", "market", "buy", 0.01))
            seen = []
            for _ in range(READ_LIMIT):
                seen.append(await receive(ws))
                if is_event("executionReport", x="TRADE")(seen[-1]):
                    break
            return seen, own["id"]

    seen, own_id = asyncio.run(scenario())
    reports = [m["event"] for m in seen if m["event"]["e"] == "executionReport"]
    assert reports and {r["i"] for r in reports} == {int(own_id)}
    assert all(r["q"] == "0.01000000" for r in reports)


@pytest.mark.parametrize("refusal", ["bad signature", "revoked key", "unlisted IP", "stale timestamp"])
def test_user_data_subscription_is_refused_in_binance_error_shape(sandbox: SandboxHandle, refusal: str) -> None:
    canary = "c" * 64
    key = sandbox.create_key(secret=canary, ip_restrict=refusal == "unlisted IP",
                             ips=["127.0.0.2"] if refusal == "unlisted IP" else None)
    if refusal == "revoked key":
        with sandbox.admin() as admin:
            admin.delete(f"/keys/{key['api_key']}").raise_for_status()
    params = signed(key, secret="d" * 64 if refusal == "bad signature" else None,
                    timestamp_ms=int(time.time() * 1000) - 60_000 if refusal == "stale timestamp" else None)

    async def scenario() -> str:
        async with connect(ws_url(sandbox, "/ws-api/v3")) as ws:
            await ws.send(json.dumps({"id": 9, "method": "userDataStream.subscribe.signature", "params": params}))
            return str(await within(ws.recv()))

    raw = asyncio.run(scenario())
    expected = {"bad signature": (400, -1022), "revoked key": (401, -2015), "unlisted IP": (401, -2015),
                "stale timestamp": (400, -1021)}[refusal]
    answer = json.loads(raw)
    assert (answer["id"], answer["status"], answer["error"]["code"]) == (9, *expected)
    assert set(answer) == {"id", "status", "error", "rateLimits"} and answer["error"]["msg"]
    assert canary not in raw


def test_an_ip_listed_key_subscribes_from_its_own_address_only(sandbox: SandboxHandle) -> None:
    key = sandbox.create_key(ip_restrict=True, ips=["127.0.0.2"])

    async def subscribe_from(source_ip: str) -> Any:
        async with connect(ws_url(sandbox, "/ws-api/v3"), local_addr=(source_ip, 0)) as ws:
            return await subscribe_user_data(ws, key)

    assert asyncio.run(subscribe_from("127.0.0.2"))["status"] == 200
    assert asyncio.run(subscribe_from("127.0.0.1"))["error"]["code"] == -2015


def test_user_data_subscriptions_are_one_per_account_and_end_with_a_terminated_event(sandbox: SandboxHandle) -> None:
    key = sandbox.create_key()

    async def scenario() -> list[Any]:
        async with connect(ws_url(sandbox, "/ws-api/v3")) as ws:
            answers = [await subscribe_user_data(ws, key), await subscribe_user_data(ws, key),
                       await request(ws, {"id": "list", "method": "session.subscriptions"})]
            await ws.send(json.dumps({"id": "end", "method": "userDataStream.unsubscribe"}))
            # The answer and the event, in whichever order (Binance documents none).
            answers += sorted([await receive(ws), await receive(ws)], key=lambda m: "event" in m)
            answers.append(await request(ws, {"id": "status", "method": "session.status"}))
            return answers

    first, second, listed, ended, terminated, status = asyncio.run(scenario())
    assert first["result"] == {"subscriptionId": 0}
    assert (second["status"], second["error"]["code"]) == (400, -2035)
    assert listed["result"] == [{"subscriptionId": 0}]
    assert {"subscriptionId": 0, "event": terminated["event"]} == terminated
    ended.pop("rateLimits")
    assert terminated["event"]["e"] == "eventStreamTerminated" and ended == {"id": "end", "status": 200, "result": {}}
    assert status["result"]["userDataStream"] is False and status["result"]["apiKey"] is None


def test_session_logon_takes_ed25519_keys_only_and_subscribe_needs_it(sandbox: SandboxHandle) -> None:
    """Binance: session authentication "Only Ed25519 keys are supported"; an HMAC-signed logon is refused, and
    userDataStream.subscribe on a session nobody logged on to is not authorized."""
    key = sandbox.create_key()

    async def scenario() -> tuple[Any, Any]:
        async with connect(ws_url(sandbox, "/ws-api/v3")) as ws:
            logon = await request(ws, {"id": 1, "method": "session.logon", "params": signed(key)})
            subscribe = await request(ws, {"id": 2, "method": "userDataStream.subscribe"})
            return logon, subscribe

    logon, subscribe = asyncio.run(scenario())
    assert logon["status"] == 400 and logon["error"]["code"] == -1020 and "Ed25519" in logon["error"]["msg"]
    assert (subscribe["status"], subscribe["error"]["code"]) == (401, -1002)


def test_websocket_api_requests_share_the_ips_request_weight_with_rest(sandbox: SandboxHandle) -> None:
    """Binance: the WebSocket API and the REST API share the IP's REQUEST_WEIGHT limit (ping and time weigh 1, user
    data stream requests 2), and each answer's rateLimits says how much of it is used."""
    key = sandbox.create_key()

    async def scenario() -> list[Any]:
        async with connect(ws_url(sandbox, "/ws-api/v3")) as ws:
            return [await request(ws, {"id": 1, "method": "ping"}),
                    await request(ws, {"id": 2, "method": "time"}),
                    await request(ws, {"id": 3, "method": "userDataStream.subscribe.signature",
                                       "params": signed(key)})]

    answers = asyncio.run(scenario())
    counts = [a["rateLimits"][0]["count"] for a in answers]
    assert counts[1] - counts[0] == 1 and counts[2] - counts[1] == 2, counts
    # A REST request from the same address sees the WebSocket API's weight in its usage header.
    used = httpx.get(f"{sandbox.url}/api/v3/ping").headers["X-MBX-USED-WEIGHT-1M"]
    assert int(used) == counts[2] + 1


# -- a bot that graduates -----------------------------------------------------------------------------------
# What a polling bot would call to learn its fills and the price: faulted, so polling fails, and counted.
POLLED_ENDPOINTS = ("GET /api/v3/order", "GET /api/v3/openOrders", "GET /api/v3/allOrders", "GET /api/v3/myTrades",
                    "GET /api/v3/ticker/price", "GET /api/v3/depth", "GET /api/v3/account")
UNTOUCHED = 1_000_000


class DipBuyingBot:
    """Rests a bid 1% under the last price the ticker stream gave, and when the order stream says it filled, sells
    at market. It places orders over REST and learns fills and prices from the WebSocket only: its watchers run
    all along, as ccxt.pro hands an update only to a watch already waiting for it."""

    def __init__(self, exchange: Any, symbol: str) -> None:
        self.exchange = exchange
        self.symbol = symbol
        self.orders: dict[str, dict[str, Any]] = {}
        self.last: float | None = None
        self.changed = asyncio.Event()

    async def watch_orders(self) -> None:
        for _ in range(READ_LIMIT):
            for order in await self.exchange.watch_orders(self.symbol):
                self.orders[order["id"]] = dict(order)
            self.changed.set()

    async def watch_prices(self) -> None:
        for _ in range(READ_LIMIT):
            self.last = (await self.exchange.watch_ticker(self.symbol))["last"]
            self.changed.set()

    async def until(self, condition: Callable[[], bool]) -> None:
        for _ in range(READ_LIMIT):
            if condition():
                return
            self.changed.clear()
            await within(self.changed.wait())
        raise AssertionError("the bot waited for more updates than it should need")

    def closed(self, order_id: str) -> bool:
        return self.orders.get(order_id, {}).get("status") == "closed"

    async def run(self, rounds: int) -> list[dict[str, Any]]:
        await within(self.exchange.authenticate())  # the user data stream subscription, before any order
        watchers = [asyncio.create_task(self.watch_orders()), asyncio.create_task(self.watch_prices())]
        try:
            await self.until(lambda: self.last is not None)
            return [await self.round_trip() for _ in range(rounds)]
        finally:
            for watcher in watchers:
                watcher.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)

    async def round_trip(self) -> dict[str, Any]:
        assert self.last is not None
        bid = float(self.exchange.price_to_precision(self.symbol, self.last * 0.99))
        buy = await within(self.exchange.create_order(self.symbol, "limit", "buy", 0.01, bid))
        await self.until(lambda: self.closed(buy["id"]))
        # The fill says the market came down to the bid; the ticker stream says where it went.
        await self.until(lambda: self.last is not None and self.last < bid)
        price_seen = self.last
        sell = await within(self.exchange.create_order(self.symbol, "market", "sell", self.orders[buy["id"]]["filled"]))
        await self.until(lambda: self.closed(sell["id"]))
        return {"bid": bid, "bought": self.orders[buy["id"]], "sold": self.orders[sell["id"]], "price_seen": price_seen}


async def market_mover(sandbox: SandboxHandle, rounds: int) -> list[float]:
    """Each time the bot's bid rests, the market falls 0.5% below it (through the admin API)."""
    moves = []
    for _ in range(rounds):
        for _ in range(int(TIMEOUT_S / 0.05)):
            resting = sandbox.exchange.open_orders("main", "BTCUSDT")
            if resting:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the bot never rested a bid")
        moves.append(round(resting[0].price * 0.995, 2))
        await within(asyncio.to_thread(set_price, sandbox, "BTCUSDT", moves[-1]))
        for _ in range(int(TIMEOUT_S / 0.05)):
            if not sandbox.exchange.open_orders("main", "BTCUSDT"):
                break
            await asyncio.sleep(0.05)
    return moves


def test_ccxt_pro_bot_trades_on_websocket_events_without_polling(sandbox: SandboxHandle) -> None:
    key = sandbox.create_key(flags=TRADER_FLAGS)
    rounds = 2

    urls = loopback_ccxt_urls(sandbox)

    async def scenario() -> tuple[list[dict[str, Any]], list[float]]:
        exchange = ccxt.pro.binance({"apiKey": key["api_key"], "secret": key["secret"], "urls": urls,
                                     "options": dict(BINANCE_SPOT_ONLY_OPTIONS), "enableRateLimit": False})
        try:
            await within(exchange.load_markets())
            sandbox.set_faults(*[Fault(endpoint=e, kind="status", status=503, times=UNTOUCHED)
                                 for e in POLLED_ENDPOINTS])
            journal, moves = await within(asyncio.gather(DipBuyingBot(exchange, "BTC/USDT").run(rounds),
                                                         market_mover(sandbox, rounds)), 4 * TIMEOUT_S)
            return journal, moves
        finally:
            await exchange.close()

    journal, moves = asyncio.run(scenario())
    assert len(journal) == rounds
    for entry, move in zip(journal, moves, strict=True):
        assert entry["bought"]["price"] == entry["bid"] and entry["bought"]["filled"] == 0.01
        assert entry["sold"]["filled"] == 0.01
        assert entry["price_seen"] == move  # the price came from the ticker stream
    # The second bid followed the price the stream reported after the first move.
    assert abs(journal[1]["bid"] - moves[0] * 0.99) <= 0.01
    orders = sandbox.exchange.orders_of("main")
    assert [o.status for o in orders] == ["FILLED"] * 2 * rounds
    # Not one call to an endpoint a polling bot needs, and each would have failed.
    assert {f.endpoint: f.times for f in sandbox.exchange.faults} == dict.fromkeys(POLLED_ENDPOINTS, UNTOUCHED)
