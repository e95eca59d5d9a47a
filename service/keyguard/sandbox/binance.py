"""Binance spot REST face of the sandbox: signing, recvWindow, IP allowlist, permissions, weights, orders."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from keyguard.sandbox.config import interval_of
from keyguard.sandbox.faults import apply_latency, fault_response, split_faults
from keyguard.sandbox.state import Order, SandboxExchange, SandboxKey, SandboxRejection, missing

# Security types: NONE (public), KEY (signed, any live key), or the flag a signed call needs.
NONE, KEY = "NONE", "KEY"
READ, TRADE = "enableReading", "enableSpotAndMarginTrading"
WITHDRAW, UNIVERSAL_TRANSFER = "enableWithdrawals", "permitsUniversalTransfer"

_API_KEY_FORMAT = re.compile(r"^[A-Za-z0-9]{64}$")
REFUSED = "Invalid API-key, IP, or permissions for action."
_Value = TypeVar("_Value")


@dataclass
class Call:
    exchange: SandboxExchange
    params: dict[str, str]
    key: SandboxKey | None
    ip: str

    @property
    def account(self) -> str:
        assert self.key is not None
        return self.key.account


Handler = Callable[[Call], tuple[Any, dict[str, str]]]


@dataclass
class Endpoint:
    weight: Callable[[dict[str, str]], int]
    security: str
    handler: Handler
    sapi: bool = False
    # Futures venues (fapi/dapi) have limits of their own the sandbox does not model: not charged.
    charged: bool = True


def _fixed(w: int) -> Callable[[dict[str, str]], int]:
    return lambda params: w


def _depth_weight(params: dict[str, str]) -> int:
    limit = int(params.get("limit", "100") or 100)
    for upto, w in ((100, 5), (500, 25), (1000, 50)):
        if limit <= upto:
            return w
    return 250


# -- parameter parsing ----------------------------------------------------------------------------------
def _required(params: dict[str, str], name: str) -> str:
    value = params.get(name)
    if value is None or value == "":
        raise missing(name)
    return value


def _parsed(raw: str | None, name: str, parse: Callable[[str], _Value], legal: str) -> _Value | None:
    """A parameter's value, None when absent; Binance's -1100 (naming the legal pattern) when it does not parse."""
    if raw is None or raw == "":
        return None
    try:
        return parse(raw)
    except ValueError:
        raise SandboxRejection(400, -1100, f"Illegal characters found in parameter '{name}'; legal range is "
                                           f"'{legal}'.") from None


def _number(params: dict[str, str], name: str, required: bool = False) -> float | None:
    raw = _required(params, name) if required else params.get(name)
    return _parsed(raw, name, float, r"^([0-9]{1,20})(\.[0-9]{1,20})?$")


def _integer(params: dict[str, str], name: str) -> int | None:
    return _parsed(params.get(name), name, int, "^[0-9]{1,20}$")


def _f(value: float) -> str:
    return f"{value:.8f}"


# -- renderers ------------------------------------------------------------------------------------------
def render_order(o: Order, *, full: bool = False, query: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "symbol": o.symbol, "orderId": o.order_id, "orderListId": -1, "clientOrderId": o.client_order_id,
    }
    if not query:
        body["transactTime"] = o.time_ms
    body.update({
        "price": _f(o.price), "origQty": _f(o.orig_qty), "executedQty": _f(o.executed_qty),
        "origQuoteOrderQty": "0.00000000", "cummulativeQuoteQty": _f(o.cumulative_quote_qty),
        "status": o.status, "timeInForce": o.time_in_force or "GTC", "type": o.type, "side": o.side,
        "workingTime": o.time_ms, "selfTradePreventionMode": "NONE",
    })
    if query:
        body.update({"stopPrice": "0.00000000", "icebergQty": "0.00000000", "time": o.time_ms,
                     "updateTime": o.update_time_ms, "isWorking": True})
    if full:
        body["fills"] = list(o.fills)
    return body


# -- handlers -------------------------------------------------------------------------------------------
def h_ping(c: Call) -> tuple[Any, dict[str, str]]:
    return {}, {}


def h_time(c: Call) -> tuple[Any, dict[str, str]]:
    return {"serverTime": c.exchange.now_ms()}, {}


def rate_limits(exchange: SandboxExchange) -> list[dict[str, Any]]:
    cfg = exchange.config
    out = []
    for kind, window, limit in (
        ("REQUEST_WEIGHT", cfg.weight_window_s, cfg.weight_limit),
        ("ORDERS", cfg.orders_short_window_s, cfg.orders_short_limit),
        ("ORDERS", cfg.orders_long_window_s, cfg.orders_long_limit),
        ("RAW_REQUESTS", cfg.raw_request_window_s, cfg.raw_request_limit),
    ):
        interval, num, _ = interval_of(window)
        out.append({"rateLimitType": kind, "interval": interval, "intervalNum": num, "limit": limit})
    return out


def h_exchange_info(c: Call) -> tuple[Any, dict[str, str]]:
    ex = c.exchange
    symbols = []
    for s in ex.symbols.values():
        symbols.append({
            "symbol": s.symbol, "status": "TRADING", "baseAsset": s.base, "baseAssetPrecision": 8,
            "quoteAsset": s.quote, "quotePrecision": 8, "quoteAssetPrecision": 8,
            "baseCommissionPrecision": 8, "quoteCommissionPrecision": 8,
            "orderTypes": ["LIMIT", "MARKET"], "icebergAllowed": False, "ocoAllowed": False,
            "otoAllowed": False, "quoteOrderQtyMarketAllowed": True, "allowTrailingStop": False,
            "cancelReplaceAllowed": False, "isSpotTradingAllowed": True, "isMarginTradingAllowed": False,
            "filters": [
                {"filterType": "PRICE_FILTER", "minPrice": s.tick_size, "maxPrice": "1000000.00000000",
                 "tickSize": s.tick_size},
                {"filterType": "LOT_SIZE", "minQty": s.step_size, "maxQty": "9000.00000000",
                 "stepSize": s.step_size},
                {"filterType": "NOTIONAL", "minNotional": s.min_notional, "applyMinToMarket": True,
                 "maxNotional": "9000000.00000000", "applyMaxToMarket": False, "avgPriceMins": 5},
            ],
            "permissions": [], "permissionSets": [["SPOT"]],
            "defaultSelfTradePreventionMode": "NONE", "allowedSelfTradePreventionModes": ["NONE"],
        })
    return {"timezone": "UTC", "serverTime": ex.now_ms(), "rateLimits": rate_limits(ex),
            "exchangeFilters": [], "symbols": symbols}, {}


def h_ticker_price(c: Call) -> tuple[Any, dict[str, str]]:
    ex = c.exchange
    symbol = c.params.get("symbol")
    if symbol:
        if symbol not in ex.prices:
            raise SandboxRejection(400, -1121, "Invalid symbol.")
        return {"symbol": symbol, "price": _f(ex.prices[symbol])}, {}
    return [{"symbol": s, "price": _f(p)} for s, p in ex.prices.items()], {}


def h_depth(c: Call) -> tuple[Any, dict[str, str]]:
    symbol = _required(c.params, "symbol")
    if symbol not in c.exchange.symbols:
        raise SandboxRejection(400, -1121, "Invalid symbol.")
    bids, asks = c.exchange.book(symbol)
    return {"lastUpdateId": c.exchange.now_ms(), "bids": [[_f(p), _f(q)] for p, q in bids],
            "asks": [[_f(p), _f(q)] for p, q in asks]}, {}


def h_account(c: Call) -> tuple[Any, dict[str, str]]:
    ex = c.exchange
    with ex.lock:
        free = ex.balances[c.account]
        locked = ex.locked[c.account]
        assets = sorted(set(free) | set(locked))
        balances = [{"asset": a, "free": _f(free.get(a, 0.0)), "locked": _f(locked.get(a, 0.0))} for a in assets]
    return {
        "makerCommission": 10, "takerCommission": 10, "buyerCommission": 0, "sellerCommission": 0,
        "commissionRates": {"maker": "0.00100000", "taker": "0.00100000", "buyer": "0.00000000",
                            "seller": "0.00000000"},
        "canTrade": True, "canWithdraw": True, "canDeposit": True, "brokered": False,
        "requireSelfTradePrevention": False, "preventSor": False, "updateTime": ex.now_ms(),
        "accountType": "SPOT", "balances": balances, "permissions": ["SPOT"], "uid": abs(hash(c.account)) % 10**9,
    }, {}


def h_new_order(c: Call) -> tuple[Any, dict[str, str]]:
    p = c.params
    symbol = _required(p, "symbol")
    side = _required(p, "side")
    type_ = _required(p, "type")
    quantity = _number(p, "quantity")
    quote_qty = _number(p, "quoteOrderQty")
    price = _number(p, "price")
    client_id = p.get("newClientOrderId") or f"sandbox-{secrets.token_hex(8)}"
    headers = c.exchange.charge_order(c.account)
    try:
        order = c.exchange.place_order(c.account, symbol, side, type_, quantity, quote_qty, price,
                                       p.get("timeInForce"), client_id)
    except SandboxRejection as rejection:
        # A rejected order still counts, and its response still carries the order-count headers.
        rejection.headers.update(headers)
        raise
    resp_type = p.get("newOrderRespType", "FULL")
    if resp_type == "ACK":
        return {"symbol": symbol, "orderId": order.order_id, "orderListId": -1,
                "clientOrderId": order.client_order_id, "transactTime": order.time_ms}, headers
    return render_order(order, full=resp_type == "FULL"), headers


def _order_ref(p: dict[str, str]) -> tuple[str, int | None, str | None]:
    symbol = _required(p, "symbol")
    order_id = _integer(p, "orderId")
    client_id = p.get("origClientOrderId") or None
    if order_id is None and client_id is None:
        raise SandboxRejection(400, -1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were "
                                           "empty/null!")
    return symbol, order_id, client_id


def h_get_order(c: Call) -> tuple[Any, dict[str, str]]:
    symbol, order_id, client_id = _order_ref(c.params)
    return render_order(c.exchange.find_order(c.account, symbol, order_id, client_id), query=True), {}


def h_cancel_order(c: Call) -> tuple[Any, dict[str, str]]:
    symbol, order_id, client_id = _order_ref(c.params)
    order = c.exchange.cancel_order(c.account, symbol, order_id, client_id)
    body = render_order(order)
    body["origClientOrderId"] = order.client_order_id
    body["clientOrderId"] = c.params.get("newClientOrderId") or f"cancel-{secrets.token_hex(8)}"
    return body, {}


def h_open_orders(c: Call) -> tuple[Any, dict[str, str]]:
    orders = c.exchange.open_orders(c.account, c.params.get("symbol") or None)
    return [render_order(o, query=True) for o in orders], {}


def h_all_orders(c: Call) -> tuple[Any, dict[str, str]]:
    symbol = _required(c.params, "symbol")
    limit = _integer(c.params, "limit") or 500
    orders = [o for o in c.exchange.orders_of(c.account) if o.symbol == symbol]
    return [render_order(o, query=True) for o in orders[-limit:]], {}


def h_cancel_open_orders(c: Call) -> tuple[Any, dict[str, str]]:
    symbol = _required(c.params, "symbol")
    out = []
    for o in c.exchange.open_orders(c.account, symbol):
        cancelled = c.exchange.cancel_order(c.account, symbol, o.order_id, None)
        body = render_order(cancelled)
        body["origClientOrderId"] = cancelled.client_order_id
        out.append(body)
    return out, {}


def h_my_trades(c: Call) -> tuple[Any, dict[str, str]]:
    symbol = _required(c.params, "symbol")
    order_id = _integer(c.params, "orderId")
    with c.exchange.lock:
        trades = [t for t in c.exchange.trades if t.account == c.account and t.symbol == symbol
                  and (order_id is None or t.order_id == order_id)]
    return [{"symbol": t.symbol, "id": t.trade_id, "orderId": t.order_id, "orderListId": -1,
             "price": _f(t.price), "qty": _f(t.qty), "quoteQty": _f(t.quote_qty), "commission": "0.00000000",
             "commissionAsset": c.exchange.symbols[t.symbol].quote, "time": t.time_ms,
             "isBuyer": t.side == "BUY", "isMaker": False, "isBestMatch": True} for t in trades], {}


def h_api_restrictions(c: Call) -> tuple[Any, dict[str, str]]:
    key = c.key
    assert key is not None
    body: dict[str, Any] = {"ipRestrict": key.ip_restrict, "createTime": key.create_time_ms}
    body.update(key.flags)
    if key.expire_time_ms is not None:
        body["tradingAuthorityExpirationTime"] = key.expire_time_ms
    return body, {}


def h_withdraw(c: Call) -> tuple[Any, dict[str, str]]:
    coin = _required(c.params, "coin")
    address = _required(c.params, "address")
    amount = _number(c.params, "amount", required=True) or 0.0
    return {"id": c.exchange.withdraw(c.account, coin, amount, address)}, {}


def h_universal_transfer(c: Call) -> tuple[Any, dict[str, str]]:
    kind = _required(c.params, "type")
    asset = _required(c.params, "asset")
    amount = _number(c.params, "amount", required=True) or 0.0
    return {"tranId": c.exchange.transfer(c.account, kind, asset, amount)}, {}


def h_futures_exchange_info(c: Call) -> tuple[Any, dict[str, str]]:
    # The sandbox lists no futures; ccxt's loadMarkets asks anyway, so it gets an empty, well-formed answer.
    return {"timezone": "UTC", "serverTime": c.exchange.now_ms(), "rateLimits": [], "exchangeFilters": [],
            "assets": [], "symbols": []}, {}


def h_empty_list(c: Call) -> tuple[Any, dict[str, str]]:
    return [], {}


def h_capital_config(c: Call) -> tuple[Any, dict[str, str]]:
    ex = c.exchange
    with ex.lock:
        free = dict(ex.balances[c.account])
    coins = sorted({s.base for s in ex.symbols.values()} | {s.quote for s in ex.symbols.values()})
    return [{
        "coin": coin, "name": coin, "depositAllEnable": True, "withdrawAllEnable": True,
        "free": _f(free.get(coin, 0.0)), "locked": "0", "freeze": "0", "withdrawing": "0", "ipoing": "0",
        "ipoable": "0", "storage": "0", "isLegalMoney": False, "trading": True,
        "networkList": [{
            "network": coin, "coin": coin, "name": coin, "isDefault": True, "depositEnable": True,
            "withdrawEnable": True, "depositDesc": "", "withdrawDesc": "", "withdrawIntegerMultiple": "0.00000001",
            "withdrawFee": "0", "withdrawMin": "0", "withdrawMax": "9999999", "minConfirm": 1, "unLockConfirm": 1,
            "sameAddress": False, "resetAddressStatus": False, "estimatedArrivalTime": 1, "busy": False,
            "contractAddressUrl": "", "contractAddress": "",
        }],
    } for coin in coins], {}


ENDPOINTS: dict[tuple[str, str], Endpoint] = {
    ("GET", "/api/v3/ping"): Endpoint(_fixed(1), NONE, h_ping),
    ("GET", "/api/v3/time"): Endpoint(_fixed(1), NONE, h_time),
    ("GET", "/api/v3/exchangeInfo"): Endpoint(_fixed(20), NONE, h_exchange_info),
    ("GET", "/api/v3/ticker/price"): Endpoint(lambda p: 2 if p.get("symbol") else 4, NONE, h_ticker_price),
    ("GET", "/api/v3/depth"): Endpoint(_depth_weight, NONE, h_depth),
    ("GET", "/api/v3/account"): Endpoint(_fixed(20), READ, h_account),
    ("POST", "/api/v3/order"): Endpoint(_fixed(1), TRADE, h_new_order),
    ("GET", "/api/v3/order"): Endpoint(_fixed(4), READ, h_get_order),
    ("DELETE", "/api/v3/order"): Endpoint(_fixed(1), TRADE, h_cancel_order),
    ("GET", "/api/v3/openOrders"): Endpoint(lambda p: 6 if p.get("symbol") else 80, READ, h_open_orders),
    ("DELETE", "/api/v3/openOrders"): Endpoint(_fixed(1), TRADE, h_cancel_open_orders),
    ("GET", "/api/v3/myTrades"): Endpoint(_fixed(20), READ, h_my_trades),
    ("GET", "/api/v3/allOrders"): Endpoint(_fixed(20), READ, h_all_orders),
    ("GET", "/sapi/v1/account/apiRestrictions"): Endpoint(_fixed(1), KEY, h_api_restrictions, sapi=True),
    ("POST", "/sapi/v1/capital/withdraw/apply"): Endpoint(_fixed(1), WITHDRAW, h_withdraw, sapi=True),
    ("POST", "/sapi/v1/asset/transfer"): Endpoint(_fixed(1), UNIVERSAL_TRANSFER, h_universal_transfer, sapi=True),
    # What a stock ccxt client's loadMarkets also asks for, so it needs no options to run against the sandbox.
    ("GET", "/sapi/v1/capital/config/getall"): Endpoint(_fixed(10), READ, h_capital_config, sapi=True),
    ("GET", "/sapi/v1/margin/allPairs"): Endpoint(_fixed(1), KEY, h_empty_list, sapi=True),
    ("GET", "/sapi/v1/margin/isolated/allPairs"): Endpoint(_fixed(10), KEY, h_empty_list, sapi=True),
    ("GET", "/fapi/v1/exchangeInfo"): Endpoint(_fixed(1), NONE, h_futures_exchange_info, charged=False),
    ("GET", "/dapi/v1/exchangeInfo"): Endpoint(_fixed(1), NONE, h_futures_exchange_info, charged=False),
}


def _without_signature(raw: str) -> tuple[str, str | None]:
    """The signed payload part of a query string or body, and the signature it carried (if any)."""
    kept, signature = [], None
    for part in raw.split("&") if raw else []:
        if part.startswith("signature="):
            signature = part[len("signature="):]
        else:
            kept.append(part)
    return "&".join(kept), signature


def authenticate(exchange: SandboxExchange, security: str, ip: str, headers: Any, query: str,
                 body: str, params: dict[str, str]) -> SandboxKey:
    """Binance's checks in order: key format, key known and IP allowed, timestamp/recvWindow, signature, permission."""
    api_key = headers.get("X-MBX-APIKEY")
    if not api_key or not _API_KEY_FORMAT.match(api_key):
        raise SandboxRejection(401, -2014, "API-key format invalid.")
    key = exchange.keys.get(api_key)
    if key is None or key.revoked or key.exchange != "binance" or not key.allows_ip(ip):
        raise SandboxRejection(401, -2015, REFUSED)
    timestamp = _integer(params, "timestamp")
    if timestamp is None:
        raise missing("timestamp")
    recv_window = _integer(params, "recvWindow") or exchange.config.default_recv_window_ms
    if recv_window > exchange.config.max_recv_window_ms:
        raise SandboxRejection(400, -1131, f"recvWindow must be less than {exchange.config.max_recv_window_ms}.")
    server_ms = exchange.now_ms()
    if timestamp >= server_ms + 1000:
        raise SandboxRejection(400, -1021, "Timestamp for this request was 1000ms ahead of the server's time.")
    if server_ms - timestamp > recv_window:
        raise SandboxRejection(400, -1021, "Timestamp for this request is outside of the recvWindow.")
    q_payload, q_sig = _without_signature(query)
    b_payload, b_sig = _without_signature(body)
    signature = q_sig or b_sig
    if not signature:
        raise missing("signature")
    expected = hmac.new(key.secret.encode(), (q_payload + b_payload).encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature.lower()):
        raise SandboxRejection(400, -1022, "Signature for this request is not valid.")
    if security not in (KEY, NONE) and not key.flags.get(security, False):
        raise SandboxRejection(401, -2015, REFUSED)
    return key


def _json(status: int, body: Any, headers: dict[str, str]) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=headers)


async def handle(request: Request) -> Response:
    exchange: SandboxExchange = request.app.state.exchange
    path = request.url.path
    method = request.method
    endpoint = ENDPOINTS.get((method, path))
    if endpoint is None:
        return _json(404, {"code": -1000, "msg": f"The sandbox does not implement {method} {path}."}, {})
    query = request.scope.get("query_string", b"").decode()
    body = (await request.body()).decode()
    params = dict(parse_qsl(query, keep_blank_values=True))
    params.update(parse_qsl(body, keep_blank_values=True))
    ip = request.client.host if request.client else "unknown"
    faults = exchange.take_faults(f"{method} {path}", ip)
    await apply_latency(faults)
    before, after = split_faults(faults)
    headers: dict[str, str] = {}
    try:
        if endpoint.charged:
            headers = exchange.charge_ip(ip, endpoint.weight(params), endpoint.sapi)
        if before is not None:
            return fault_response(before, exchange.stopping, exchange.config.drop_hold_s)
        key = None
        if endpoint.security != NONE:
            with exchange.lock:
                key = authenticate(exchange, endpoint.security, ip, request.headers, query, body, params)
        payload, extra = endpoint.handler(Call(exchange, params, key, ip))
        headers.update(extra)
    except SandboxRejection as rejection:
        headers.update(rejection.headers)
        status, payload = rejection.status, {"code": rejection.code, "msg": rejection.msg}
    else:
        status = 200
    # A lost or garbled response is lost whatever it said, refusal or success.
    if after is not None:
        return fault_response(after, exchange.stopping, exchange.config.drop_hold_s)
    return _json(status, payload, headers)
