"""Compatibility suite, WebSocket faces: python-binance and Binance's own binance-sdk-spot, stock and pointed at the
sandbox by their stream and WebSocket API URLs alone, subscribe to every stream kind and call every WebSocket API
method the sandbox serves, and hear what Binance would send after a real change: a fill placed over REST, or a price
moved through the admin API.

Each case goes through the library's own method where it has one; where it has none (python-binance has no
session.subscriptions call, binance-sdk-spot no method for a 1000 ms diff depth stream), through the library's own
generic request or subscribe path, so the library still builds the request and parses the answer. Every case asserts
what the library handed its user: the event's price, quantity, order id, status and balances."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import pytest
from binance import AsyncClient, BinanceSocketManager
from binance_common.configuration import ConfigurationRestAPI, ConfigurationWebSocketAPI, ConfigurationWebSocketStreams
from binance_sdk_spot.rest_api.models import NewOrderSideEnum, NewOrderTimeInForceEnum, NewOrderTypeEnum
from binance_sdk_spot.spot import Spot
from binance_sdk_spot.websocket_streams.models import DiffBookDepthResponse, DiffBookDepthUpdateSpeedEnum
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from keyguard.sandbox import SandboxConfig, SandboxHandle, run_sandbox
from keyguard.sandbox.binance_ws import API_METHODS, STREAM_KINDS

TRADER_FLAGS = {"enableReading": True, "enableSpotAndMarginTrading": True}
PYTHON_BINANCE, SDK = "python-binance", "binance-sdk-spot"
TIMEOUT_S = 10.0
# Most messages a case reads while looking for one it expects.
READ_LIMIT = 50
# python-binance's read loop sees a close only when its receive times out (its TIMEOUT, 10 s), on Binance as here; a
# user who wants a prompt close shortens it on the socket.
READ_POLL_S = 0.5
STREAM, API = "stream", "api"
Item = tuple[str, str]
_T = TypeVar("_T")


async def within(awaitable: Awaitable[_T], timeout_s: float = TIMEOUT_S) -> _T:
    return await asyncio.wait_for(awaitable, timeout_s)


def f8(value: float) -> str:
    return f"{value:.8f}"


class Inbox:
    """What a library handed its user's callback, in order, for a case to wait on."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Any] = asyncio.Queue()

    def __call__(self, message: Any) -> None:
        self.queue.put_nowait(message)

    async def until(self, wanted: Callable[[Any], bool]) -> Any:
        for _ in range(READ_LIMIT):
            message = await within(self.queue.get())
            if wanted(message):
                return message
        raise AssertionError(f"no wanted message among the first {READ_LIMIT}")


def prompt(socket: _T) -> _T:
    """A python-binance socket that closes within READ_POLL_S."""
    socket.TIMEOUT = READ_POLL_S  # type: ignore[attr-defined]
    return socket


async def recv_until(socket: Any, wanted: Callable[[Any], bool]) -> Any:
    """The first message a python-binance socket gives that `wanted` accepts."""
    for _ in range(READ_LIMIT):
        message = await within(socket.recv())
        if wanted(message):
            return message
    raise AssertionError(f"no wanted message among the first {READ_LIMIT}")


def user_event(kind: str, **fields: Any) -> Callable[[Any], bool]:
    """A binance-sdk-spot user data event (a one-of model) of class `kind` with these field values."""

    def wanted(message: Any) -> bool:
        event = message.actual_instance
        return type(event).__name__ == kind and all(getattr(event, k) == v for k, v in fields.items())

    return wanted


def raw_event(kind: str, **fields: Any) -> Callable[[Any], bool]:
    def wanted(message: Any) -> bool:
        return (isinstance(message, dict) and message.get("e") == kind
                and all(message.get(k) == v for k, v in fields.items()))

    return wanted


@dataclass
class World:
    """A fresh sandbox, an HMAC key and an Ed25519 key (made from a public key), and both libraries bound to them."""

    sandbox: SandboxHandle
    trader: dict[str, Any]
    ed25519_key: dict[str, Any]
    ed25519_private: str

    @property
    def ws(self) -> str:
        return "ws" + self.sandbox.url.removeprefix("http")

    def set_price(self, symbol: str, price: float) -> None:
        """Move the market through the admin API, as an operator would."""
        with self.sandbox.admin() as admin:
            admin.put("/prices", json={"symbol": symbol, "price": price}).raise_for_status()

    def rest_depth(self, symbol: str) -> dict[str, Any]:
        response = httpx.get(f"{self.sandbox.url}/api/v3/depth", params={"symbol": symbol}, timeout=TIMEOUT_S)
        response.raise_for_status()
        return response.json()

    # -- binance-sdk-spot
    async def sdk_streams(self) -> Any:
        # The SDK appends /stream and subscribes on that combined connection.
        streams = Spot(config_ws_streams=ConfigurationWebSocketStreams(stream_url=self.ws)).websocket_streams
        await within(streams.create_connection())
        assert streams.connections, "binance-sdk-spot could not connect to the sandbox's streams"
        return streams

    async def sdk_api(self, ed25519_key: bool = False, return_rate_limits: bool = True) -> Any:
        options: dict[str, Any] = {"stream_url": f"{self.ws}/ws-api/v3", "reconnect_attempts": 1,
                                   "return_rate_limits": return_rate_limits}
        if ed25519_key:
            config = ConfigurationWebSocketAPI(api_key=self.ed25519_key["api_key"], private_key=self.ed25519_private,
                                               **options)
        else:
            config = ConfigurationWebSocketAPI(api_key=self.trader["api_key"], api_secret=self.trader["secret"],
                                               **options)
        api = Spot(config_ws_api=config).websocket_api
        await within(api.create_connection())
        assert api.connections, "binance-sdk-spot could not connect to the sandbox's WebSocket API"
        return api

    def sdk_rest(self, ed25519_key: bool = False) -> Any:
        if ed25519_key:
            config = ConfigurationRestAPI(api_key=self.ed25519_key["api_key"], private_key=self.ed25519_private,
                                          base_path=self.sandbox.url, retries=0)
        else:
            config = ConfigurationRestAPI(api_key=self.trader["api_key"], api_secret=self.trader["secret"],
                                          base_path=self.sandbox.url, retries=0)
        return Spot(config_rest_api=config).rest_api

    # -- python-binance
    async def python_binance(self, ed25519_key: bool = False) -> tuple[AsyncClient, BinanceSocketManager]:
        ws, url = self.ws, self.sandbox.url

        class AtSandbox(AsyncClient):
            API_URL = f"{url}/api"
            WS_API_URL = f"{ws}/ws-api/v3"

        class SocketsAtSandbox(BinanceSocketManager):
            STREAM_URL = f"{ws}/"

        if ed25519_key:
            client = await within(AtSandbox.create(self.ed25519_key["api_key"], private_key=self.ed25519_private))
        else:
            client = await within(AtSandbox.create(self.trader["api_key"], self.trader["secret"]))
        client.ws_api.TIMEOUT = READ_POLL_S
        return client, SocketsAtSandbox(client)


def new_ed25519_key() -> tuple[ed25519.Ed25519PrivateKey, str, str]:
    """A client-side Ed25519 key pair made at run time: (the key, its private PEM, its public PEM)."""
    private = ed25519.Ed25519PrivateKey.generate()
    private_pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()).decode()
    public_pem = private.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private, private_pem, public_pem


@pytest.fixture
def world() -> Iterator[World]:
    _, private_pem, public_pem = new_ed25519_key()
    with run_sandbox(SandboxConfig(align_windows_to_start=True)) as sandbox:
        yield World(
            sandbox=sandbox,
            trader=sandbox.create_key(flags=TRADER_FLAGS, label="trader"),
            ed25519_key=sandbox.create_key(key_type="ED25519", public_key=public_pem, flags=TRADER_FLAGS,
                                           label="ed25519-bot"),
            ed25519_private=private_pem,
        )


Case = Callable[[World], Awaitable[None]]
CASES: list[tuple[str, tuple[Item, ...], Case]] = []


def case(library: str, *items: Item) -> Callable[[Case], Case]:
    """Register a case: the streams and WebSocket API methods it drives `library` through."""
    def register(fn: Case) -> Case:
        CASES.append((library, items, fn))
        return fn
    return register


def streams(*kinds: str) -> tuple[Item, ...]:
    return tuple((STREAM, kind) for kind in kinds)


def methods(*names: str) -> tuple[Item, ...]:
    return tuple((API, name) for name in names)


# -- binance-sdk-spot: market streams --------------------------------------------------------------------
@case(SDK, *streams("trade"))
async def _sdk_trade(w: World) -> None:
    client = await w.sdk_streams()
    try:
        inbox = Inbox()
        (await within(client.trade(symbol="BTCUSDT"))).on("message", inbox)
        # The SDK does not wait for SUBSCRIBE's answer; the answer to a later request on the connection shows it done.
        assert (await within(client.list_subscribe()))["result"] == ["btcusdt@trade"]
        order = (await within(asyncio.to_thread(
            lambda: w.sdk_rest().new_order(symbol="BTCUSDT", side=NewOrderSideEnum.BUY, type=NewOrderTypeEnum.MARKET,
                                           quantity=0.002).data()))).fills[0]
        trade = await inbox.until(lambda m: m.t == order.trade_id)
    finally:
        await client.close_connection(close_session=True)
    assert (trade.e, trade.s, trade.p, trade.q) == ("trade", "BTCUSDT", order.price, "0.00200000")
    assert trade.m is False, "the buyer crossed the book: the buyer is not the maker"


@case(SDK, *streams("bookTicker", "depth@100ms", "depth@1000ms"))
async def _sdk_book_ticker_and_depth(w: World) -> None:
    client = await w.sdk_streams()
    try:
        best, fast, slow = Inbox(), Inbox(), Inbox()
        (await within(client.book_ticker(symbol="BTCUSDT"))).on("message", best)
        (await within(client.diff_book_depth(symbol="BTCUSDT", update_speed=DiffBookDepthUpdateSpeedEnum("100ms")))
         ).on("message", fast)
        # No method names the 1000 ms speed: the SDK's generic subscribe takes the stream name and its model.
        await within(client.subscribe(["btcusdt@depth@1000ms"], response_model=DiffBookDepthResponse))
        client.on("message", slow, "btcusdt@depth@1000ms")
        listed = (await within(client.list_subscribe()))["result"]
        before = await within(asyncio.to_thread(w.rest_depth, "BTCUSDT"))
        await within(asyncio.to_thread(w.set_price, "BTCUSDT", 61000.0))
        after = await within(asyncio.to_thread(w.rest_depth, "BTCUSDT"))
        book = await best.until(lambda m: m.u == after["lastUpdateId"])
        diffs = {name: await inbox.until(lambda m: m.u == after["lastUpdateId"])
                 for name, inbox in (("100ms", fast), ("1000ms", slow))}
    finally:
        await client.close_connection(close_session=True)
    assert sorted(listed) == ["btcusdt@bookTicker", "btcusdt@depth@1000ms", "btcusdt@depth@100ms"]
    assert (book.s, book.b, book.B, book.a, book.A) == ("BTCUSDT", *after["bids"][0], *after["asks"][0])
    for diff in diffs.values():
        # One price move, one diff continuing REST depth's update id; its new levels are REST's new best ones.
        assert (diff.e, diff.s, diff.U, diff.u) == ("depthUpdate", "BTCUSDT", before["lastUpdateId"] + 1,
                                                   after["lastUpdateId"])
        assert after["bids"][0] in diff.b and after["asks"][0] in diff.a


@case(SDK, *streams("ticker", "miniTicker"))
async def _sdk_tickers(w: World) -> None:
    client = await w.sdk_streams()
    try:
        full, mini = Inbox(), Inbox()
        (await within(client.ticker(symbol="ETHUSDT"))).on("message", full)
        (await within(client.mini_ticker(symbol="ETHUSDT"))).on("message", mini)
        await within(client.list_subscribe())
        await within(asyncio.to_thread(w.set_price, "ETHUSDT", 3100.0))
        ticker = await full.until(lambda m: m.c == f8(3100))
        mini_ticker = await mini.until(lambda m: m.c == f8(3100))
    finally:
        await client.close_connection(close_session=True)
    assert (ticker.e, ticker.s, ticker.o, ticker.p, ticker.h) == ("24hrTicker", "ETHUSDT", f8(3000), f8(100),
                                                                  f8(3100))
    assert (mini_ticker.e, mini_ticker.s, mini_ticker.o, mini_ticker.h) == ("24hrMiniTicker", "ETHUSDT", f8(3000),
                                                                            f8(3100))


# -- binance-sdk-spot: WebSocket API -------------------------------------------------------------------------
@case(SDK, *methods("ping", "time"))
async def _sdk_ping_time(w: World) -> None:
    api = await w.sdk_api()
    quiet_api = await w.sdk_api(return_rate_limits=False)
    try:
        ping = await within(api.ping())
        server_time = (await within(api.time())).data()
        now_ms = time.time() * 1000
        quiet = await within(quiet_api.ping())
    finally:
        await api.close_connection(close_session=True)
        await quiet_api.close_connection(close_session=True)
    assert ping.data().status == 200 and ping.data().result == {}
    assert abs(server_time.result.server_time - now_ms) < 5000
    # Binance: "rateLimits field is included with every response by default"; the SDK reads it from each answer,
    # and with return_rate_limits=False asks for answers without it ("returnRateLimits": false).
    assert [(r.rateLimitType, r.interval, r.limit) for r in ping.rate_limits] == [
        ("REQUEST_WEIGHT", "MINUTE", 6000)]
    assert quiet.data().status == 200 and quiet.data().rate_limits is None


@case(SDK, *methods("userDataStream.subscribe.signature", "session.subscriptions", "userDataStream.unsubscribe"))
async def _sdk_user_data_by_signature(w: World) -> None:
    api = await w.sdk_api()
    rest = w.sdk_rest()
    try:
        inbox = Inbox()
        subscribed = await within(api.user_data_stream_subscribe_signature())
        subscribed.stream.on("message", inbox)
        listed = (await within(api.session_subscriptions())).data().result
        resting = await within(asyncio.to_thread(lambda: rest.new_order(
            symbol="BTCUSDT", side=NewOrderSideEnum.BUY, type=NewOrderTypeEnum.LIMIT,
            time_in_force=NewOrderTimeInForceEnum.GTC, quantity=0.01, price=50000.0).data()))
        new = await inbox.until(user_event("ExecutionReport", i=resting.order_id, x="NEW"))
        locked = await inbox.until(user_event("OutboundAccountPosition"))
        await within(asyncio.to_thread(lambda: rest.delete_order(symbol="BTCUSDT", order_id=resting.order_id)))
        canceled = await inbox.until(user_event("ExecutionReport", i=resting.order_id, x="CANCELED"))
        unlocked = await inbox.until(user_event("OutboundAccountPosition"))
        ended = (await within(api.user_data_stream_unsubscribe(subscription_id=0))).data()
        terminated = await inbox.until(user_event("EventStreamTerminated"))
        after = (await within(api.session_subscriptions())).data().result
    finally:
        await api.close_connection(close_session=True)
    assert subscribed.response.data().result.subscription_id == 0
    assert [s.subscription_id for s in listed] == [0] and after == []
    report = new.actual_instance
    assert (report.X, report.S, report.o, report.p, report.q, report.w) == (
        "NEW", "BUY", "LIMIT", f8(50000), f8(0.01), True)
    assert canceled.actual_instance.X == "CANCELED" and canceled.actual_instance.C == report.c
    usdt_locked = [{b.a: b.l for b in e.actual_instance.B}["USDT"] for e in (locked, unlocked)]
    assert usdt_locked == [f8(500), f8(0)]
    assert ended.status == 200 and terminated.actual_instance.E > 0


@case(SDK, *methods("session.logon", "session.status", "userDataStream.subscribe", "session.logout"))
async def _sdk_ed25519_session_logon_hears_its_orders(w: World) -> None:
    """Binance's session authentication, Ed25519 keys only: log on once, subscribe without signing, and the
    account's orders arrive on the stream."""
    api = await w.sdk_api(ed25519_key=True)
    try:
        inbox = Inbox()
        logon = (await within(api.session_logon())).data().result
        subscribed = await within(api.user_data_stream_subscribe())
        subscribed.stream.on("message", inbox)
        status = (await within(api.session_status())).data().result
        order = await within(asyncio.to_thread(lambda: w.sdk_rest(ed25519_key=True).new_order(
            symbol="BTCUSDT", side=NewOrderSideEnum.BUY, type=NewOrderTypeEnum.MARKET, quantity=0.01).data()))
        new = await inbox.until(user_event("ExecutionReport", i=order.order_id, x="NEW"))
        trade = await inbox.until(user_event("ExecutionReport", i=order.order_id, x="TRADE"))
        position = await inbox.until(user_event("OutboundAccountPosition"))
        logout = (await within(api.session_logout())).data().result
        terminated = await inbox.until(user_event("EventStreamTerminated"))
    finally:
        await api.close_connection(close_session=True)
    assert (logon.api_key, logon.user_data_stream) == (w.ed25519_key["api_key"], False)
    assert logon.authorized_since >= logon.connected_since
    assert subscribed.response.data().result.subscription_id == 0
    assert (status.api_key, status.user_data_stream) == (w.ed25519_key["api_key"], True)
    assert (new.actual_instance.X, new.actual_instance.o) == ("NEW", "MARKET")
    report = trade.actual_instance
    assert (report.X, report.l, report.z, report.L) == ("FILLED", f8(0.01), f8(0.01), order.fills[0].price)
    # The market order took liquidity: the taker commission, paid in the BTC received.
    taker = w.sandbox.exchange.config.taker_commission
    assert {b.a: b.f for b in position.actual_instance.B}["BTC"] == f8(1 + 0.01 * (1 - taker))
    # Logging out ends the subscription that the logon made.
    assert (logout.api_key, logout.user_data_stream) == (None, False)
    assert terminated.actual_instance.E > 0


# -- python-binance: market streams ---------------------------------------------------------------------------
@case(PYTHON_BINANCE, *streams("trade"))
async def _pb_trade(w: World) -> None:
    client, sockets = await w.python_binance()
    try:
        async with prompt(sockets.trade_socket("BTCUSDT")) as trades:
            order = await within(client.order_market_sell(symbol="BTCUSDT", quantity="0.003"))
            trade = await recv_until(trades, raw_event("trade", t=order["fills"][0]["tradeId"]))
    finally:
        await client.close_connection()
    assert (trade["s"], trade["p"], trade["q"]) == ("BTCUSDT", order["fills"][0]["price"], f8(0.003))
    assert trade["m"] is True, "the seller crossed the book: the buyer rested, the buyer is the maker"


@case(PYTHON_BINANCE, *streams("bookTicker", "depth", "depth@100ms"))
async def _pb_book_ticker_and_depth(w: World) -> None:
    client, sockets = await w.python_binance()
    try:
        async with (prompt(sockets.symbol_book_ticker_socket("ETHUSDT")) as best,
                    prompt(sockets.depth_socket("ETHUSDT")) as slow,
                    prompt(sockets.depth_socket("ETHUSDT", interval=100)) as fast):
            before = await within(client.get_order_book(symbol="ETHUSDT"))
            await within(asyncio.to_thread(w.set_price, "ETHUSDT", 2950.0))
            after = await within(client.get_order_book(symbol="ETHUSDT"))
            book = await recv_until(best, lambda m: m.get("u") == after["lastUpdateId"])
            diffs = [await recv_until(socket, raw_event("depthUpdate", u=after["lastUpdateId"]))
                     for socket in (slow, fast)]
    finally:
        await client.close_connection()
    assert (book["s"], book["b"], book["B"], book["a"], book["A"]) == ("ETHUSDT", *after["bids"][0],
                                                                      *after["asks"][0])
    for diff in diffs:
        assert (diff["s"], diff["U"]) == ("ETHUSDT", before["lastUpdateId"] + 1)
        assert after["bids"][0] in diff["b"] and after["asks"][0] in diff["a"]


@case(PYTHON_BINANCE, *streams("ticker", "miniTicker"))
async def _pb_tickers(w: World) -> None:
    client, sockets = await w.python_binance()
    try:
        # Raw streams on /ws/<stream>, and both kinds combined on one /stream?streams= connection.
        async with (prompt(sockets.symbol_ticker_socket("BTCUSDT")) as full,
                    prompt(sockets.symbol_miniticker_socket("BTCUSDT")) as mini,
                    prompt(sockets.multiplex_socket(["btcusdt@ticker", "btcusdt@miniTicker"])) as combined):
            await within(asyncio.to_thread(w.set_price, "BTCUSDT", 59000.0))
            ticker = await recv_until(full, raw_event("24hrTicker", c=f8(59000)))
            mini_ticker = await recv_until(mini, raw_event("24hrMiniTicker", c=f8(59000)))
            wrapped = {}
            for _ in range(READ_LIMIT):
                message = await within(combined.recv())
                if message["data"]["c"] == f8(59000):
                    wrapped[message["stream"]] = message["data"]["e"]
                if len(wrapped) == 2:
                    break
    finally:
        await client.close_connection()
    assert (ticker["s"], ticker["o"], ticker["p"], ticker["l"]) == ("BTCUSDT", f8(60000), f8(-1000), f8(59000))
    assert (mini_ticker["s"], mini_ticker["o"]) == ("BTCUSDT", f8(60000))
    assert wrapped == {"btcusdt@ticker": "24hrTicker", "btcusdt@miniTicker": "24hrMiniTicker"}


# -- python-binance: WebSocket API ----------------------------------------------------------------------------
@case(PYTHON_BINANCE, *methods("ping", "time"))
async def _pb_ping_time(w: World) -> None:
    client, _ = await w.python_binance()
    try:
        ping = await within(client.ws_ping())
        server_time = await within(client.ws_get_time())
        now_ms = time.time() * 1000
    finally:
        await client.close_connection()
    assert ping == {}
    assert abs(server_time["serverTime"] - now_ms) < 5000


@case(PYTHON_BINANCE, *methods("userDataStream.subscribe.signature", "userDataStream.unsubscribe",
                               "session.subscriptions"))
async def _pb_user_socket(w: World) -> None:
    """python-binance's user_socket subscribes with userDataStream.subscribe.signature and unsubscribes on exit."""
    client, sockets = await w.python_binance()
    try:
        async with prompt(sockets.user_socket()) as user:
            listed = await within(client._ws_api_request("session.subscriptions", False, {}))
            order = await within(client.order_limit_buy(symbol="BTCUSDT", quantity="0.01", price="59000"))
            new = await recv_until(user, raw_event("executionReport", i=order["orderId"], x="NEW"))
            # The market comes down to the bid: the resting order fills at its own price, as the maker.
            await within(asyncio.to_thread(w.set_price, "BTCUSDT", 58900.0))
            trade = await recv_until(user, raw_event("executionReport", i=order["orderId"], x="TRADE"))
            position = await recv_until(user, raw_event("outboundAccountPosition"))
        after = await within(client._ws_api_request("session.subscriptions", False, {}))
    finally:
        await client.close_connection()
    assert listed == [{"subscriptionId": 0}] and after == []
    assert (new["X"], new["p"], new["w"]) == ("NEW", f8(59000), True)
    assert (trade["X"], trade["L"], trade["z"], trade["m"]) == ("FILLED", f8(59000), f8(0.01), True)
    # The resting bid was the maker: the maker commission, paid in the BTC received.
    maker = w.sandbox.exchange.config.maker_commission
    assert {b["a"]: b["f"] for b in position["B"]}["BTC"] == f8(1 + 0.01 * (1 - maker))


@case(PYTHON_BINANCE, *methods("userDataStream.subscribe.signature"))
async def _pb_user_socket_ed25519(w: World) -> None:
    """The same subscription signed with an Ed25519 private key, as python-binance does when given one."""
    client, sockets = await w.python_binance(ed25519_key=True)
    try:
        async with prompt(sockets.user_socket()) as user:
            order = await within(client.order_market_buy(symbol="ETHUSDT", quantity="0.5"))
            trade = await recv_until(user, raw_event("executionReport", i=order["orderId"], x="TRADE"))
    finally:
        await client.close_connection()
    assert (trade["X"], trade["S"], trade["z"], trade["L"]) == ("FILLED", "BUY", f8(0.5), order["fills"][0]["price"])


# -- the suite ---------------------------------------------------------------------------------------------
def _case_id(entry: tuple[str, tuple[Item, ...], Case]) -> str:
    library, items, _ = entry
    return f"{library}:{','.join(name for _, name in items)}"


@pytest.mark.parametrize("entry", CASES, ids=[_case_id(e) for e in CASES])
def test_library_hears_what_binance_would_send(world: World, entry: tuple[str, tuple[Item, ...], Case]) -> None:
    _, _, run = entry
    asyncio.run(within(run(world), 4 * TIMEOUT_S))


def test_every_stream_kind_and_api_method_the_sandbox_serves_is_covered() -> None:
    served = {(STREAM, kind) for kind in STREAM_KINDS} | {(API, name) for name in API_METHODS}
    covered = {item for _, items, _ in CASES for item in items}
    assert not sorted(served - covered), f"served with no library case: {sorted(served - covered)}"
    assert not sorted(covered - served), "cases for streams or methods the sandbox no longer serves"
    # Every WebSocket API method the sandbox serves and every stream kind a library has a method for, with both
    # libraries where both can: python-binance has no session authentication, neither has a 1000 ms depth method.
    by_library = {lib: {item for entry_lib, items, _ in CASES if entry_lib == lib for item in items}
                  for lib in (PYTHON_BINANCE, SDK)}
    both = sorted(methods("ping", "time", "userDataStream.subscribe.signature", "userDataStream.unsubscribe",
                          "session.subscriptions") + streams("trade", "bookTicker", "ticker", "miniTicker",
                                                             "depth@100ms"))
    assert all(item in by_library[PYTHON_BINANCE] and item in by_library[SDK] for item in both)
