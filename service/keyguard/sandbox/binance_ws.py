"""Binance's WebSocket faces of the sandbox, fed by the state's change events (SandboxExchange.subscribe).

- Market streams at /ws/<stream> and /stream?streams=<a>/<b> (combined: each event wrapped as {"stream", "data"}),
  with the live SUBSCRIBE, UNSUBSCRIBE, LIST_SUBSCRIPTIONS, SET_PROPERTY and GET_PROPERTY requests:
  <symbol>@trade, @bookTicker, @ticker, @miniTicker (what ccxt's watch_ticker reads), @depth and @depth@100ms
  (diffs whose U/u continue REST /api/v3/depth's lastUpdateId, so a client can keep a local book).
- The WebSocket API at /ws-api/v3: {"id", "method", "params"} requests answered {"id", "status", "result"|"error"};
  the user data stream through userDataStream.subscribe.signature, or session.logon + userDataStream.subscribe, with
  its executionReport and outboundAccountPosition events wrapped as {"subscriptionId", "event"}.

Binance retired the REST listenKey (POST/PUT/DELETE /api/v3/userDataStream) on 2026-02-20 (spot API changelog,
2026-01-21), so the sandbox has none. Rules cited below are from binance-spot-api-docs: web-socket-streams.md,
web-socket-api.md and user-data-stream.md.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import itertools
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from keyguard.sandbox.binance import READ, REFUSED, check_timing, live_key
from keyguard.sandbox.config import interval_of
from keyguard.sandbox.signing import signature_valid
from keyguard.sandbox.state import Order, SandboxExchange, SandboxKey, SandboxRejection, Trade, missing

log = logging.getLogger(__name__)

DAY_MS = 86_400_000
# The kinds of <symbol>@<kind> stream the sandbox serves.
STREAM_KINDS = ("trade", "bookTicker", "ticker", "miniTicker", "depth", "depth@100ms", "depth@1000ms")
# Binance: "All symbols for streams are lowercase".
_STREAM = re.compile(rf"^([a-z0-9]+)@({'|'.join(re.escape(kind) for kind in STREAM_KINDS)})$")
SERVED_STREAMS = "<symbol>@trade, @bookTicker, @ticker, @miniTicker, @depth and @depth@100ms"
TICKER_KINDS = ("ticker", "miniTicker")
# Binance: a stream request id is a 64-bit signed integer, an alphanumeric string of at most 36, or null; "the same
# values as used for id in the WebSocket API" (changelog 2023-12-04), where "You can use UUIDs": hence the hyphen.
_STREAM_REQUEST_ID = re.compile(r"^[A-Za-z0-9-]{1,36}$")
STREAM_METHODS = ("SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS", "SET_PROPERTY", "GET_PROPERTY")
# Binance: "WebSocket connections have a limit of 5 incoming messages per second" (market stream connections);
# "A connection that goes beyond the limit will be disconnected".
STREAM_MESSAGES_PER_SECOND = 5
# Binance: "A single session can handle a maximum of 65,535 total subscriptions over its lifetime."
MAX_SUBSCRIPTION_IDS = 65_535
# Events a connection may have waiting to be sent; a client further behind than this is disconnected.
OUTBOX_LIMIT = 10_000
TICK_S = 0.1
# Binance: <symbol>@ticker and @miniTicker "Update Speed: 1000ms"; @depth 1000ms, @depth@100ms 100ms.
TICKER_INTERVAL_S = 1.0
DEPTH_INTERVALS_S = {"depth": 1.0, "depth@1000ms": 1.0, "depth@100ms": 0.1}
# WebSocket close codes: policy violation (over the message limit), and "try again later" (fell behind).
CLOSE_POLICY, CLOSE_BEHIND = 1008, 1013


def _f(value: float) -> str:
    return f"{value:.8f}"


@dataclass
class Delivery:
    """One rendered change for the connections: kind stream (key: stream name), depth and ticker (key: symbol),
    user (key: account)."""

    kind: str
    key: str
    payload: Any = None


@dataclass
class DepthDiff:
    update_id: int
    bids: dict[float, float]
    asks: dict[float, float]


def _book_diff(before: list[tuple[float, float]], after: list[tuple[float, float]]) -> dict[float, float]:
    """The levels that changed, quantity 0 for a level that went (Binance: "If the quantity is zero, remove")."""
    old, new = dict(before), dict(after)
    return {p: new.get(p, 0.0) for p in old.keys() | new.keys() if new.get(p, 0.0) != old.get(p)}


class Outbox:
    """What a connection has to send, in order; None closes it with `close_code`."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[str | None] = asyncio.Queue()
        self.close_code: int | None = None

    def put(self, message: dict[str, Any] | list[Any]) -> None:
        if self.close_code is not None:
            return
        if self.queue.qsize() >= OUTBOX_LIMIT:
            self.close(CLOSE_BEHIND)
            return
        self.queue.put_nowait(json.dumps(message, separators=(",", ":")))

    def close(self, code: int) -> None:
        if self.close_code is None:
            self.close_code = code
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(None)


class StreamHub:
    """Renders the state's changes as Binance events (a snapshot, under the state lock) and hands them to the open
    connections on the server's event loop."""

    def __init__(self, exchange: SandboxExchange, loop: asyncio.AbstractEventLoop) -> None:
        self.exchange = exchange
        self.loop = loop
        self.market: set[MarketConnection] = set()
        self.api: set[ApiConnection] = set()
        self._execution_ids = itertools.count(1)
        self.unsubscribe = exchange.subscribe(self._on_change)

    def _on_change(self, kind: str, data: dict[str, Any]) -> None:
        try:
            deliveries = self._render(kind, data)
        except Exception:  # a rendering fault must not undo the change that was already made
            log.exception("could not render a %s change as a Binance event", kind)
            return
        try:
            self.loop.call_soon_threadsafe(self._deliver, deliveries)
        except RuntimeError:  # the server's loop has closed: nobody is listening
            pass

    def _render(self, kind: str, data: dict[str, Any]) -> list[Delivery]:
        ex = self.exchange
        now = ex.now_ms()
        if kind == "order":
            order = data["order"]
            return [Delivery("user", order.account, self.execution_report(order, data["execution"], now))]
        if kind == "fill":
            order, trade, maker = data["order"], data["trade"], data["maker"]
            buyer_maker = maker == (order.side == "BUY")
            public = {"e": "trade", "E": now, "s": trade.symbol, "t": trade.trade_id, "p": _f(trade.price),
                      "q": _f(trade.qty), "T": trade.time_ms, "m": buyer_maker, "M": True}
            return [Delivery("user", order.account, self.execution_report(order, "TRADE", now, trade, maker)),
                    Delivery("stream", f"{trade.symbol.lower()}@trade", public),
                    Delivery("ticker", trade.symbol)]
        if kind == "balance":
            return [Delivery("user", data["account"], account_position(ex, data["account"], now))]
        if kind == "book":
            symbol = data["symbol"]
            (old_bids, old_asks), (bids, asks) = data["before"], data["after"]
            update_id = ex.book_update_ids[symbol]
            # Binance's bookTicker carries no event type or time: just the book's update id and its best levels.
            best = {"u": update_id, "s": symbol, "b": _f(bids[0][0]), "B": _f(bids[0][1]), "a": _f(asks[0][0]),
                    "A": _f(asks[0][1])}
            diff = DepthDiff(update_id, _book_diff(old_bids, bids), _book_diff(old_asks, asks))
            return [Delivery("stream", f"{symbol.lower()}@bookTicker", best), Delivery("depth", symbol, diff),
                    Delivery("ticker", symbol)]
        return []

    def _deliver(self, deliveries: list[Delivery]) -> None:
        for delivery in deliveries:
            if delivery.kind == "user":
                for api in list(self.api):
                    api.user_event(delivery.key, delivery.payload)
            else:
                for market in list(self.market):
                    market.market_event(delivery)

    def execution_report(self, order: Order, execution: str, now: int, trade: Trade | None = None,
                         maker: bool = False) -> dict[str, Any]:
        """Binance's executionReport for one change of an order (user-data-stream.md, "Order Update")."""
        on_book = order.is_open and order.type == "LIMIT" and order.time_in_force == "GTC"
        report: dict[str, Any] = {
            "e": "executionReport", "E": now, "s": order.symbol, "c": order.client_order_id, "S": order.side,
            "o": order.type, "f": order.time_in_force or "GTC", "q": _f(order.orig_qty), "p": _f(order.price),
            "P": _f(0), "F": _f(0), "g": -1,
            # The original client order id: the order being canceled's.
            "C": order.client_order_id if execution == "CANCELED" else "",
            "x": execution, "X": order.status, "r": "NONE", "i": order.order_id,
            "l": _f(trade.qty if trade else 0), "z": _f(order.executed_qty), "L": _f(trade.price if trade else 0),
            # This trade's commission, in the asset it was charged in (the asset received).
            "n": _f(trade.commission) if trade else "0", "N": (trade.commission_asset or None) if trade else None,
            "T": trade.time_ms if trade else order.update_time_ms, "t": trade.trade_id if trade else -1,
            "I": next(self._execution_ids), "w": on_book, "m": maker if trade else False, "M": False,
            "O": order.time_ms, "Z": _f(order.cumulative_quote_qty), "Y": _f(trade.quote_qty if trade else 0),
            "Q": _f(0),
        }
        if on_book:
            report["W"] = order.time_ms  # "Working Time; only visible if the order has been placed on the book"
        report["V"] = "NONE"
        return report


def account_position(ex: SandboxExchange, account: str, now: int) -> dict[str, Any]:
    """outboundAccountPosition: Binance lists the assets the change possibly touched; the sandbox lists every asset
    the account holds, a superset a client reads the same way."""
    free, locked = ex.balances.get(account, {}), ex.locked.get(account, {})
    assets = sorted(set(free) | set(locked))
    return {"e": "outboundAccountPosition", "E": now, "u": now,
            "B": [{"a": a, "f": _f(free.get(a, 0.0)), "l": _f(locked.get(a, 0.0))} for a in assets]}


def ticker_event(ex: SandboxExchange, symbol: str) -> dict[str, Any]:
    """<symbol>@ticker, the 24-hour rolling statistics: open is the sandbox's starting price (it has been running
    for less than a day), volumes and trade ids come from its trades, the last price is its current price."""
    with ex.lock:
        now = ex.now_ms()
        spec = ex.symbols[symbol]
        last = ex.prices[symbol]
        trades = [t for t in ex.trades if t.symbol == symbol and t.time_ms >= now - DAY_MS]
        bids, asks = ex.book(symbol)
    open_ = spec.price
    prices = [open_, last, *(t.price for t in trades)]
    volume = sum(t.qty for t in trades)
    quote_volume = sum(t.quote_qty for t in trades)
    return {
        "e": "24hrTicker", "E": now, "s": symbol, "p": _f(last - open_), "P": f"{(last - open_) / open_ * 100:.3f}",
        "w": _f(quote_volume / volume if volume else last), "x": _f(open_), "c": _f(last),
        "Q": _f(trades[-1].qty if trades else 0), "b": _f(bids[0][0]), "B": _f(bids[0][1]), "a": _f(asks[0][0]),
        "A": _f(asks[0][1]), "o": _f(open_), "h": _f(max(prices)), "l": _f(min(prices)), "v": _f(volume),
        "q": _f(quote_volume), "O": now - DAY_MS, "C": now, "F": trades[0].trade_id if trades else -1,
        "L": trades[-1].trade_id if trades else -1, "n": len(trades),
    }


def mini_ticker_event(ticker: dict[str, Any]) -> dict[str, Any]:
    """<symbol>@miniTicker: the same 24-hour statistics, fewer fields."""
    return {"e": "24hrMiniTicker", **{name: ticker[name] for name in ("E", "s", "c", "o", "h", "l", "v", "q")}}


# -- market streams -------------------------------------------------------------------------------------
@dataclass
class DepthBuffer:
    """The diffs of one depth stream not yet sent: Binance sends them every 100 ms or 1000 ms as one event whose
    [U; u] spans the updates it folds together."""

    interval_s: float
    due: float = 0.0
    first_id: int | None = None
    last_id: int = 0
    bids: dict[float, float] = field(default_factory=dict)
    asks: dict[float, float] = field(default_factory=dict)


@dataclass
class TickerState:
    sent_at: float | None = None
    changed: bool = True


class StreamRequestError(Exception):
    """A refused stream request, in the stream API's own {"code", "msg"} (not the REST API's codes)."""

    def __init__(self, code: int, msg: str) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg


class MarketConnection:
    def __init__(self, hub: StreamHub, combined: bool, names: list[str]) -> None:
        self.hub = hub
        self.outbox = Outbox()
        self.combined = combined
        self.streams: list[str] = []
        self.depth: dict[str, DepthBuffer] = {}
        self.tickers: dict[str, TickerState] = {}
        self._window_start = 0.0
        self._window_count = 0
        # A stream named in the URL that the sandbox does not serve is ignored, as Binance ignores one it does not
        # know (ccxt connects to /ws/<n> and subscribes afterwards).
        for name in names:
            if self.stream_error(name) is None:
                self._add(name)

    def stream_error(self, name: Any) -> str | None:
        if isinstance(name, str):
            match = _STREAM.match(name)
            if match and match.group(1).upper() in self.hub.exchange.symbols:
                return None
        listed = ", ".join(s.lower() for s in self.hub.exchange.symbols)
        return f"Invalid request: invalid stream {json.dumps(name)}; the sandbox serves {SERVED_STREAMS} of {listed}"

    def _add(self, name: str) -> None:
        if name in self.streams:
            return
        self.streams.append(name)
        kind = name.split("@", 1)[1]
        if kind in DEPTH_INTERVALS_S:
            self.depth[name] = DepthBuffer(DEPTH_INTERVALS_S[kind])
        elif kind in TICKER_KINDS:
            self.tickers[name] = TickerState()

    def _remove(self, name: str) -> None:
        if name in self.streams:
            self.streams.remove(name)
        self.depth.pop(name, None)
        self.tickers.pop(name, None)

    def send_event(self, stream: str, payload: dict[str, Any]) -> None:
        self.outbox.put({"stream": stream, "data": payload} if self.combined else payload)

    def market_event(self, delivery: Delivery) -> None:
        symbol = delivery.key.lower()
        if delivery.kind == "stream":
            if delivery.key in self.streams:
                self.send_event(delivery.key, delivery.payload)
        elif delivery.kind == "depth":
            diff: DepthDiff = delivery.payload
            for kind in DEPTH_INTERVALS_S:
                buffer = self.depth.get(f"{symbol}@{kind}")
                if buffer is not None:
                    if buffer.first_id is None:
                        buffer.first_id = diff.update_id
                    buffer.last_id = diff.update_id
                    buffer.bids.update(diff.bids)
                    buffer.asks.update(diff.asks)
        elif delivery.kind == "ticker":
            for kind in TICKER_KINDS:
                ticker = self.tickers.get(f"{symbol}@{kind}")
                if ticker is not None:
                    ticker.changed = True

    def tick(self) -> None:
        """Send the depth diffs and tickers that are due."""
        now = time.monotonic()
        for name, buffer in self.depth.items():
            if buffer.first_id is None or now < buffer.due:
                continue
            symbol = name.split("@", 1)[0].upper()
            self.send_event(name, {
                "e": "depthUpdate", "E": self.hub.exchange.now_ms(), "s": symbol, "U": buffer.first_id,
                "u": buffer.last_id,
                "b": [[_f(p), _f(q)] for p, q in sorted(buffer.bids.items(), reverse=True)],
                "a": [[_f(p), _f(q)] for p, q in sorted(buffer.asks.items())],
            })
            buffer.due = now + buffer.interval_s
            buffer.first_id, buffer.bids, buffer.asks = None, {}, {}
        for name, ticker in self.tickers.items():
            # A new subscriber hears the current statistics within a second, then each second they change.
            if ticker.changed and (ticker.sent_at is None or now - ticker.sent_at >= TICKER_INTERVAL_S):
                symbol, kind = name.split("@", 1)
                event = ticker_event(self.hub.exchange, symbol.upper())
                self.send_event(name, event if kind == "ticker" else mini_ticker_event(event))
                ticker.sent_at, ticker.changed = now, False

    def receive(self, text: str) -> None:
        now = time.monotonic()
        if now - self._window_start >= 1.0:
            self._window_start, self._window_count = now, 0
        self._window_count += 1
        if self._window_count > STREAM_MESSAGES_PER_SECOND:
            self.outbox.close(CLOSE_POLICY)
            return
        request_id: Any = None
        try:
            try:
                message = json.loads(text)
            except json.JSONDecodeError as exc:
                raise StreamRequestError(3, f"Invalid JSON: expected value at line {exc.lineno} column "
                                            f"{exc.colno}") from None
            if not isinstance(message, dict) or "method" not in message:
                raise StreamRequestError(2, "Invalid request: missing field `method`")
            request_id = message.get("id")
            if not _valid_stream_request_id(message):
                request_id = None
                raise StreamRequestError(2, "Invalid request: request ID must be an unsigned integer")
            result = self._request(message["method"], message.get("params"))
        except StreamRequestError as error:
            self.outbox.put({"error": {"code": error.code, "msg": error.msg}, "id": request_id})
        else:
            self.outbox.put({"result": result, "id": request_id})

    def _request(self, method: Any, params: Any) -> Any:
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            if not isinstance(params, list):
                raise StreamRequestError(2, "Invalid request: params must be a list of stream names")
            for name in params:
                error = self.stream_error(name)
                if error is not None:
                    raise StreamRequestError(2, error)
            for name in params:
                (self._add if method == "SUBSCRIBE" else self._remove)(name)
            return None
        if method == "LIST_SUBSCRIPTIONS":
            return list(self.streams)
        if method in ("SET_PROPERTY", "GET_PROPERTY"):
            if not isinstance(params, list) or not params or not isinstance(params[0], str):
                raise StreamRequestError(2, "Invalid request: property name must be a string")
            if params[0] != "combined":
                raise StreamRequestError(0, "Unknown property")
            if method == "GET_PROPERTY":
                return self.combined
            if len(params) != 2 or not isinstance(params[1], bool):
                raise StreamRequestError(1, "Invalid value type: expected Boolean")
            self.combined = params[1]
            return None
        expected = ", ".join(f"`{m}`" for m in STREAM_METHODS)
        raise StreamRequestError(2, f"Invalid request: unknown variant {json.dumps(method)}, expected one of "
                                    f"{expected}")


def _valid_stream_request_id(message: dict[str, Any]) -> bool:
    if "id" not in message:
        return False
    value = message["id"]
    if value is None:
        return True
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return -(2**63) <= value < 2**63
    return isinstance(value, str) and bool(_STREAM_REQUEST_ID.match(value))


# -- WebSocket API ----------------------------------------------------------------------------------------
def signature_payload(raw_params: dict[str, Any]) -> str:
    """Binance: "Take all request params except signature and sort them in alphabetical order by parameter name",
    formatted as parameter=value joined by &. Numbers keep the text the client sent (parsed as strings)."""
    def text(value: Any) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, str):
            return value
        return json.dumps(value, separators=(",", ":"))

    return "&".join(f"{name}={text(raw_params[name])}" for name in sorted(raw_params) if name != "signature")


def _millis(raw: Any, name: str) -> int | None:
    """A timestamp in milliseconds; Binance takes milliseconds or microseconds (a 16-digit value)."""
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str) or not raw.isdigit():
        raise SandboxRejection(400, -1100, f"Illegal characters found in parameter '{name}'; legal range is "
                                           "'^[0-9]{1,20}$'.")
    value = int(raw)
    return value // 1000 if value >= 10**14 else value


def authenticate_signed(exchange: SandboxExchange, ip: str, params: dict[str, Any], raw_params: dict[str, Any],
                        permission: str | None) -> SandboxKey:
    """A SIGNED WebSocket API request, checked as the REST API checks one and in its order: key format, key known
    and live and the IP allowed, timestamp and recvWindow, signature, then the permission (None: any live key)."""
    api_key = params.get("apiKey")
    if not isinstance(api_key, str) or not api_key:
        raise missing("apiKey")
    config = exchange.config
    with exchange.lock:
        key = live_key(exchange, api_key, ip)
        timestamp = _millis(raw_params.get("timestamp"), "timestamp")
        if timestamp is None:
            raise missing("timestamp")
        check_timing(exchange, timestamp, _recv_window(raw_params.get("recvWindow"), config.default_recv_window_ms))
        signature = params.get("signature")
        if not isinstance(signature, str) or not signature:
            raise missing("signature")
        if not signature_valid(key, signature_payload(raw_params), signature):
            raise SandboxRejection(400, -1022, "Signature for this request is not valid.")
        if permission is not None and not key.flags.get(permission, False):
            raise SandboxRejection(401, -2015, REFUSED)
        return key


def _recv_window(raw: Any, default: int) -> float:
    """Binance: recvWindow in milliseconds, "up to three decimal places of precision"."""
    if raw is None or raw == "":
        return float(default)
    try:
        value = Decimal(str(raw))
    except InvalidOperation:
        value = Decimal(-1)
    if not value.is_finite() or value < 0 or value.as_tuple().exponent < -3:  # type: ignore[operator]
        raise SandboxRejection(400, -1100, "Illegal characters found in parameter 'recvWindow'; legal range is "
                                           "'^[0-9]{1,20}(\\.[0-9]{1,3})?$'.")
    return float(value)


def is_ed25519_signature(signature: str) -> bool:
    """An Ed25519 signature is 64 bytes, base64-encoded; an HMAC one is hex and an RSA one far longer."""
    try:
        return len(base64.b64decode(signature, validate=True)) == 64
    except (binascii.Error, ValueError):
        return False


@dataclass
class UserSubscription:
    account: str
    api_key: str
    via_logon: bool


ApiMethod = Callable[["ApiConnection", dict[str, Any], dict[str, Any]], Any]


def rate_limit_status(exchange: SandboxExchange, ip: str) -> list[dict[str, Any]]:
    """A response's `rateLimits`: the IP's REQUEST_WEIGHT window, which its REST and WebSocket API requests share."""
    counter = exchange.weight
    with exchange.lock:
        used = counter.used(ip, exchange.now())
    interval, num, _ = interval_of(int(counter.window_s))
    return [{"rateLimitType": "REQUEST_WEIGHT", "interval": interval, "intervalNum": num, "limit": counter.limit,
             "count": int(used)}]


def _flag(raw: Any, default: bool) -> bool:
    """A boolean parameter sent as JSON true/false or as the text "true"/"false" (as Binance's own SDK sends it)."""
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    return default


class ApiConnection:
    def __init__(self, hub: StreamHub, ip: str, return_rate_limits: bool = True) -> None:
        self.hub = hub
        self.ip = ip
        # Binance: "rateLimits field is included with every response by default"; ?returnRateLimits=false on the
        # connection URL makes every request behave as if it passed "returnRateLimits": false.
        self.return_rate_limits = return_rate_limits
        self.outbox = Outbox()
        self.connected_since = hub.exchange.now_ms()
        self.logon: SandboxKey | None = None
        self.authorized_since: int | None = None
        self.subscriptions: dict[int, UserSubscription] = {}
        self._next_subscription_id = 0

    def user_event(self, account: str, event: dict[str, Any]) -> None:
        for subscription_id, subscription in self.subscriptions.items():
            if subscription.account == account:
                self.outbox.put({"subscriptionId": subscription_id, "event": event})

    def receive(self, text: str) -> None:
        request_id: Any = None
        with_limits = self.return_rate_limits
        try:
            try:
                message = json.loads(text)
                raw = json.loads(text, parse_int=str, parse_float=str)
            except json.JSONDecodeError:
                raise SandboxRejection(400, -1135, "Invalid JSON Request") from None
            if not isinstance(message, dict):
                raise SandboxRejection(400, -1135, "Invalid JSON Request")
            request_id = message.get("id")
            if "id" not in message or not isinstance(request_id, (int, str, type(None))):
                request_id = None
                raise missing("id")
            method = message.get("method")
            if not isinstance(method, str) or not method:
                raise missing("method")
            params, raw_params = message.get("params", {}), raw.get("params", {})
            if not isinstance(params, dict):
                raise SandboxRejection(400, -1135, "JSON sent for parameter 'params' is not valid")
            with_limits = _flag(params.get("returnRateLimits"), self.return_rate_limits)
            self.revoke_lapsed_logon()
            # Binance: "Request method names may be prefixed with explicit version: e.g., v3/order.place".
            handler = API_METHODS.get(method.removeprefix("v3/"))
            if handler is None:
                raise SandboxRejection(400, -1000, f"The sandbox does not implement the WebSocket API method "
                                                   f"{json.dumps(method)}.")
            # Every WebSocket API request is charged to the IP's REQUEST_WEIGHT like a REST call ("WebSocket API and
            # REST API share the same rate limits"); over the limit it is answered 429, a ban 418, as on REST.
            self.hub.exchange.charge_ip(self.ip, API_WEIGHTS[method.removeprefix("v3/")])
            result = handler(self, params, raw_params)
        except SandboxRejection as rejection:
            answer: dict[str, Any] = {"id": request_id, "status": rejection.status,
                                      "error": {"code": rejection.code, "msg": rejection.msg}}
        else:
            answer = {"id": request_id, "status": 200, "result": result}
        if with_limits:
            answer["rateLimits"] = rate_limit_status(self.hub.exchange, self.ip)
        self.outbox.put(answer)

    def revoke_lapsed_logon(self) -> None:
        """Binance: if the logged-on key becomes invalid for any reason, "after the next request the session will be
        revoked" with a -2015 error whose id is null."""
        key = self.logon
        if key is None:
            return
        with self.hub.exchange.lock:
            live = not key.revoked and key.allows_ip(self.ip)
        if not live:
            self.end_logon()
            self.outbox.put({"id": None, "status": 401, "error": {"code": -2015, "msg": REFUSED}})

    def end_logon(self) -> None:
        for subscription_id in [i for i, s in self.subscriptions.items() if s.via_logon]:
            self.terminate(subscription_id)
        self.logon, self.authorized_since = None, None

    def terminate(self, subscription_id: int) -> None:
        """user-data-stream.md: eventStreamTerminated is sent when a subscription is stopped by
        userDataStream.unsubscribe or ends with session.logout."""
        del self.subscriptions[subscription_id]
        self.outbox.put({"subscriptionId": subscription_id,
                         "event": {"e": "eventStreamTerminated", "E": self.hub.exchange.now_ms()}})

    def subscribe_account(self, key: SandboxKey, via_logon: bool) -> dict[str, Any]:
        # Binance: "You can have only one active subscription for a given account on a given connection."
        if any(s.account == key.account for s in self.subscriptions.values()):
            raise SandboxRejection(400, -2035, "User Data Stream subscription already active.")
        if self._next_subscription_id >= MAX_SUBSCRIPTION_IDS:
            raise SandboxRejection(400, -2042, "Maximum subscription ID reached for this connection.")
        subscription_id = self._next_subscription_id
        self._next_subscription_id += 1
        self.subscriptions[subscription_id] = UserSubscription(key.account, key.api_key, via_logon)
        return {"subscriptionId": subscription_id}

    def status(self) -> dict[str, Any]:
        return {"apiKey": self.logon.api_key if self.logon else None, "authorizedSince": self.authorized_since,
                "connectedSince": self.connected_since, "returnRateLimits": self.return_rate_limits,
                "serverTime": self.hub.exchange.now_ms(), "userDataStream": bool(self.subscriptions)}


def _ping(conn: ApiConnection, params: dict[str, Any], raw: dict[str, Any]) -> Any:
    return {}


def _time(conn: ApiConnection, params: dict[str, Any], raw: dict[str, Any]) -> Any:
    return {"serverTime": conn.hub.exchange.now_ms()}


def _session_logon(conn: ApiConnection, params: dict[str, Any], raw: dict[str, Any]) -> Any:
    key = authenticate_signed(conn.hub.exchange, conn.ip, params, raw, None)
    # Binance: "Only Ed25519 keys are supported for this feature" (session authentication). Binance documents no
    # error code for another key type; the sandbox answers -1020 UNSUPPORTED_OPERATION.
    if not is_ed25519_signature(str(params["signature"])):
        raise SandboxRejection(400, -1020, "This operation is not supported. session.logon takes Ed25519 API keys "
                                           "only; subscribe with userDataStream.subscribe.signature instead.")
    if conn.logon is not None and conn.logon.api_key != key.api_key:
        conn.end_logon()
    conn.logon, conn.authorized_since = key, conn.hub.exchange.now_ms()
    return conn.status()


def _session_status(conn: ApiConnection, params: dict[str, Any], raw: dict[str, Any]) -> Any:
    return conn.status()


def _session_logout(conn: ApiConnection, params: dict[str, Any], raw: dict[str, Any]) -> Any:
    conn.end_logon()
    return conn.status()


def _subscribe_logon(conn: ApiConnection, params: dict[str, Any], raw: dict[str, Any]) -> Any:
    key = conn.logon
    if key is None:
        raise SandboxRejection(401, -1002, "You are not authorized to execute this request.")
    if not key.flags.get(READ, False):
        raise SandboxRejection(401, -2015, REFUSED)
    return conn.subscribe_account(key, via_logon=True)


def _subscribe_signature(conn: ApiConnection, params: dict[str, Any], raw: dict[str, Any]) -> Any:
    # USER_STREAM: the stream shows the account's orders and balances, what a key with reading sees (on Binance every
    # key can read).
    key = authenticate_signed(conn.hub.exchange, conn.ip, params, raw, READ)
    return conn.subscribe_account(key, via_logon=False)


def _unsubscribe(conn: ApiConnection, params: dict[str, Any], raw: dict[str, Any]) -> Any:
    # subscriptionId is an INT, taken as a JSON number or its decimal text (as the timestamp is): Binance's own SDK
    # (binance-sdk-spot) sends every number as text.
    wanted = raw.get("subscriptionId")
    if wanted is None:
        closing = list(conn.subscriptions)
    elif isinstance(wanted, str) and wanted.isdigit() and int(wanted) in conn.subscriptions:
        closing = [int(wanted)]
    else:
        closing = []
    if not closing:
        raise SandboxRejection(400, -2036, "User Data Stream subscription not active.")
    for subscription_id in closing:
        conn.terminate(subscription_id)
    return {}


def _subscriptions(conn: ApiConnection, params: dict[str, Any], raw: dict[str, Any]) -> Any:
    return [{"subscriptionId": i} for i in conn.subscriptions]


API_METHODS: dict[str, ApiMethod] = {
    "ping": _ping,
    "time": _time,
    "session.logon": _session_logon,
    "session.status": _session_status,
    "session.logout": _session_logout,
    "session.subscriptions": _subscriptions,
    "userDataStream.subscribe": _subscribe_logon,
    "userDataStream.subscribe.signature": _subscribe_signature,
    "userDataStream.unsubscribe": _unsubscribe,
}

# Each method's request weight (web-socket-api.md: ping and time 1; session and user data stream requests 2).
API_WEIGHTS: dict[str, int] = {name: 1 if name in ("ping", "time") else 2 for name in API_METHODS}


# -- routes ---------------------------------------------------------------------------------------------
def _hub(websocket: WebSocket) -> StreamHub:
    state = websocket.app.state
    hub: StreamHub | None = getattr(state, "binance_stream_hub", None)
    if hub is None:
        hub = StreamHub(state.exchange, asyncio.get_running_loop())
        state.binance_stream_hub = hub
    return hub


async def _serve(websocket: WebSocket, outbox: Outbox, receive: Callable[[str], None],
                 tick: Callable[[], None] | None = None) -> None:
    """Read requests, send what the outbox holds and, for streams, tick, until either side closes."""

    async def reading() -> None:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            receive(text if text is not None else (message.get("bytes") or b"").decode(errors="replace"))

    async def sending() -> None:
        while True:
            text = await outbox.queue.get()
            if text is None:
                return
            await websocket.send_text(text)

    async def ticking() -> None:
        assert tick is not None
        while True:
            await asyncio.sleep(TICK_S)
            tick()

    tasks = [asyncio.create_task(reading()), asyncio.create_task(sending())]
    if tick is not None:
        tasks.append(asyncio.create_task(ticking()))
    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    for task in done:
        error = task.exception()
        if error is not None and not isinstance(error, (WebSocketDisconnect, OSError, RuntimeError)):
            log.warning("a sandbox WebSocket connection ended on %s", type(error).__name__)
    if outbox.close_code is not None and websocket.application_state == WebSocketState.CONNECTED:
        try:
            await websocket.close(outbox.close_code)
        except (RuntimeError, OSError):
            pass


async def serve_streams(websocket: WebSocket) -> None:
    """/ws/<stream> (raw) and /stream?streams=<a>/<b> (combined)."""
    hub = _hub(websocket)
    combined = websocket.url.path.rstrip("/") == "/stream"
    if combined:
        names = websocket.query_params.get("streams", "").split("/")
    else:
        names = websocket.path_params.get("path", "").split("/")
    await websocket.accept()
    connection = MarketConnection(hub, combined, [n for n in names if n])
    hub.market.add(connection)
    try:
        await _serve(websocket, connection.outbox, connection.receive, connection.tick)
    finally:
        hub.market.discard(connection)


async def serve_api(websocket: WebSocket) -> None:
    """/ws-api/v3: the WebSocket API (the user data stream's requests)."""
    hub = _hub(websocket)
    await websocket.accept()
    connection = ApiConnection(hub, websocket.client.host if websocket.client else "unknown",
                               _flag(websocket.query_params.get("returnRateLimits"), True))
    hub.api.add(connection)
    try:
        await _serve(websocket, connection.outbox, connection.receive)
    finally:
        hub.api.discard(connection)
