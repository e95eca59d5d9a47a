"""Binance spot REST face of the sandbox: signing, recvWindow, IP allowlist, permissions, weights, orders, and the
wallet and sub-account key endpoints that incident containment and foreign-activity detection read and call."""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote_plus

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from keyguard.sandbox.config import SymbolSpec, interval_of
from keyguard.sandbox.faults import apply_latency, fault_response, split_faults
from keyguard.sandbox.signing import signature_valid
from keyguard.sandbox.state import (
    Order,
    SandboxExchange,
    SandboxKey,
    SandboxRejection,
    SubAccount,
    missing,
    parse_ip_list,
)

# Security types: NONE (public), MARKET_DATA (an API key in the header, nothing signed), KEY (signed, any live key),
# or the flag a signed call needs.
NONE, MARKET_DATA, KEY = "NONE", "MARKET_DATA", "KEY"
READ, TRADE = "enableReading", "enableSpotAndMarginTrading"
WITHDRAW, UNIVERSAL_TRANSFER = "enableWithdrawals", "permitsUniversalTransfer"

_API_KEY_FORMAT = re.compile(r"^[A-Za-z0-9]{64}$")
# Binance's legal range for DECIMAL parameters and for newClientOrderId (its -1100 messages quote them).
_DECIMAL = re.compile(r"^([0-9]{1,20})(\.[0-9]{1,20})?$")
_CLIENT_ORDER_ID = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")
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
    # "Request Weight(UID)": the weight is charged to the calling account's pool for this endpoint, not the IP's.
    uid: bool = False
    # The parameters the endpoint reads (besides timestamp, recvWindow, signature); None = not checked.
    reads: frozenset[str] | None = None


SIGNING_PARAMS = frozenset({"timestamp", "recvWindow", "signature"})
# The parameters of POST /api/v3/order in Binance's spot docs (the sandbox ignores the ones it does not model).
ORDER_PARAMS = frozenset({
    "symbol", "side", "type", "timeInForce", "quantity", "quoteOrderQty", "price", "newClientOrderId",
    "strategyId", "strategyType", "stopPrice", "trailingDelta", "icebergQty", "newOrderRespType",
    "selfTradePreventionMode", "pegPriceType", "pegOffsetValue", "pegOffsetType",
})
ORDER_REF_PARAMS = frozenset({"symbol", "orderId", "origClientOrderId"})


def unread_parameters(endpoint: Endpoint, pairs: list[tuple[str, str]]) -> SandboxRejection | None:
    """Binance reads only the parameters an endpoint documents; any other (a misspelt name) is -1104."""
    if endpoint.reads is None:
        return None
    read = sum(1 for name, _ in pairs if name in endpoint.reads or name in SIGNING_PARAMS)
    if read == len(pairs):
        return None
    return SandboxRejection(400, -1104, f"Not all sent parameters were read; read '{read}' parameter(s) but was "
                                        f"sent '{len(pairs)}'.")


def _fixed(w: int) -> Callable[[dict[str, str]], int]:
    return lambda params: w


DEPTH_DEFAULT_LIMIT, DEPTH_MAX_LIMIT = 100, 5000


def _depth_weight(params: dict[str, str]) -> int:
    """GET /api/v3/depth's weight by limit: 1-100: 5, 101-500: 25, 501-1000: 50, 1001-5000: 250 (a limit past 5000
    is served, and weighed, as 5000). A limit that does not parse is refused; it weighs what the default does."""
    raw = params.get("limit") or ""
    limit = int(raw) if raw.isdigit() else DEPTH_DEFAULT_LIMIT
    for upto, w in ((100, 5), (500, 25), (1000, 50)):
        if limit <= upto:
            return w
    return 250


def _test_order_weight(params: dict[str, str]) -> int:
    """POST /api/v3/order/test: 1, or 20 with computeCommissionRates."""
    return 20 if (params.get("computeCommissionRates") or "").lower() == "true" else 1


def _my_trades_weight(params: dict[str, str]) -> int:
    """GET /api/v3/myTrades: 20, or 5 with orderId."""
    return 5 if params.get("orderId") else 20


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


def _decimal_of(raw: str) -> Decimal:
    # Binance takes a decimal only as plain digits: no sign, exponent, NaN or inf (-1100 names this pattern).
    if not _DECIMAL.match(raw):
        raise ValueError(raw)
    return Decimal(raw)


def _decimal(params: dict[str, str], name: str, required: bool = False) -> Decimal | None:
    raw = _required(params, name) if required else params.get(name)
    return _parsed(raw, name, _decimal_of, _DECIMAL.pattern)


def _number(params: dict[str, str], name: str, required: bool = False) -> float | None:
    value = _decimal(params, name, required)
    return None if value is None else float(value)


_WHOLE = re.compile(r"^[0-9]{1,20}$")


def _whole_number(raw: str) -> int:
    # Digits only, as the -1100 message says: no sign, spaces or underscores (which int() would take).
    if not _WHOLE.match(raw):
        raise ValueError(raw)
    return int(raw)


def _integer(params: dict[str, str], name: str) -> int | None:
    return _parsed(params.get(name), name, _whole_number, _WHOLE.pattern)


def _f(value: float) -> str:
    return f"{value:.8f}"


def _utc(ms: int) -> str:
    """Binance's wallet timestamps: "2019-10-12 11:12:02", UTC."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _invalid(name: str) -> SandboxRejection:
    return SandboxRejection(400, -1130, f"Data sent for parameter '{name}' is not valid.")


def _page(params: dict[str, str], offset_name: str, size_name: str, default: int, most: int,
          first_page: int | None = None) -> tuple[int, int]:
    """(start index, size) of the page asked for. A size above the documented maximum is served at the maximum
    (the docs give the cap, not an error for passing it)."""
    size = _integer(params, size_name) or default
    size = min(max(size, 1), most)
    if first_page is None:
        return _integer(params, offset_name) or 0, size
    page = max(_integer(params, offset_name) or first_page, first_page)
    return (page - first_page) * size, size


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


# Binance's -1100 for a `symbols` list that is not a JSON array of symbol names quotes this pattern.
_SYMBOLS_LIST = re.compile(r'^\[("[A-Z0-9-_.]{1,20}"(,"[A-Z0-9-_.]{1,20}"){0,}){0,1}\]$')
_BAD_COMBO = "Combination of optional parameters invalid."
SYMBOL_STATUSES = ("TRADING", "HALT", "BREAK")


def _symbol_list(raw: str) -> list[str]:
    """`symbols=["BTCUSDT","ETHUSDT"]`: -1100 when it is not such a list, -1151 when a name repeats."""
    compact = raw.replace(" ", "")
    if not _SYMBOLS_LIST.match(compact):
        raise SandboxRejection(400, -1100, "Illegal characters found in parameter 'symbols'; legal range is "
                                           f"'{_SYMBOLS_LIST.pattern}'.")
    names = [str(n) for n in json.loads(compact)]
    if len(set(names)) != len(names):
        raise SandboxRejection(400, -1151, "Symbol is present multiple times in the list.")
    return names


def _permission_list(raw: str) -> set[str]:
    """`permissions=SPOT` or `permissions=["MARGIN","LEVERAGED"]`."""
    if raw.startswith("["):
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = None
        if not isinstance(parsed, list) or not all(isinstance(p, str) for p in parsed):
            raise SandboxRejection(400, -1100, "Illegal characters found in parameter 'permissions'.")
        return set(parsed)
    return {raw}


def _listed_symbols(ex: SandboxExchange, p: dict[str, str]) -> list[SymbolSpec]:
    """The symbols GET /api/v3/exchangeInfo is asked about: one (`symbol`), some (`symbols`), those with a
    permission (`permissions`) or a trading status (`symbolStatus`), or all. An unknown name is -1121; permissions or
    symbolStatus with symbol or symbols (which the docs rule out) is -1128."""
    symbol, symbols = p.get("symbol") or None, p.get("symbols") or None
    permissions, status = p.get("permissions") or None, p.get("symbolStatus") or None
    named = symbol is not None or symbols is not None
    if (symbol is not None and symbols is not None) or (named and (permissions or status)):
        raise SandboxRejection(400, -1128, _BAD_COMBO)
    if status is not None and status not in SYMBOL_STATUSES:
        raise SandboxRejection(400, -1122, "Invalid symbolStatus.")
    if named:
        names = [symbol] if symbol is not None else _symbol_list(symbols or "")
        if any(n not in ex.symbols for n in names):
            raise SandboxRejection(400, -1121, "Invalid symbol.")
        return [ex.symbols[n] for n in names]
    # Every sandbox symbol trades, with the one permission set [["SPOT"]]. Without `permissions` Binance lists the
    # symbols that have SPOT, MARGIN or LEVERAGED.
    wanted = _permission_list(permissions) if permissions else {"SPOT", "MARGIN", "LEVERAGED"}
    if "SPOT" not in wanted or status not in (None, "TRADING"):
        return []
    return list(ex.symbols.values())


def h_exchange_info(c: Call) -> tuple[Any, dict[str, str]]:
    ex = c.exchange
    symbols = []
    for s in _listed_symbols(ex, c.params):
        symbols.append({
            "symbol": s.symbol, "status": "TRADING", "baseAsset": s.base, "baseAssetPrecision": 8,
            "quoteAsset": s.quote, "quotePrecision": 8, "quoteAssetPrecision": 8,
            "baseCommissionPrecision": 8, "quoteCommissionPrecision": 8,
            "orderTypes": ["LIMIT", "MARKET"], "icebergAllowed": False, "ocoAllowed": False,
            "otoAllowed": False, "quoteOrderQtyMarketAllowed": True, "allowTrailingStop": False,
            "cancelReplaceAllowed": False, "isSpotTradingAllowed": True, "isMarginTradingAllowed": False,
            "filters": [
                {"filterType": "PRICE_FILTER", "minPrice": s.tick_size, "maxPrice": s.max_price,
                 "tickSize": s.tick_size},
                {"filterType": "LOT_SIZE", "minQty": s.step_size, "maxQty": s.max_qty, "stepSize": s.step_size},
                {"filterType": "NOTIONAL", "minNotional": s.min_notional, "applyMinToMarket": True,
                 "maxNotional": s.max_notional, "applyMaxToMarket": False, "avgPriceMins": 5},
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
    """At most `limit` levels a side (default 100; past 5000 served as 5000, as Binance does). A limit that is not
    a whole number is -1100; zero is -1130 (Binance takes 1 to 5000)."""
    symbol = _required(c.params, "symbol")
    limit = _integer(c.params, "limit")
    if limit is None:
        limit = DEPTH_DEFAULT_LIMIT
    elif limit < 1:
        raise _invalid("limit")
    if symbol not in c.exchange.symbols:
        raise SandboxRejection(400, -1121, "Invalid symbol.")
    limit = min(limit, DEPTH_MAX_LIMIT)
    # The book and its update id, which the depth streams' U/u continue, read together: a client joins the two.
    with c.exchange.lock:
        bids, asks = c.exchange.book(symbol)
        update_id = c.exchange.book_update_ids[symbol]
    return {"lastUpdateId": update_id, "bids": [[_f(p), _f(q)] for p, q in bids[:limit]],
            "asks": [[_f(p), _f(q)] for p, q in asks[:limit]]}, {}


def h_account(c: Call) -> tuple[Any, dict[str, str]]:
    ex = c.exchange
    with ex.lock:
        free = ex.balances[c.account]
        locked = ex.locked[c.account]
        assets = sorted(set(free) | set(locked))
        balances = [{"asset": a, "free": _f(free.get(a, 0.0)), "locked": _f(locked.get(a, 0.0))} for a in assets]
    maker, taker = ex.config.maker_commission, ex.config.taker_commission
    return {
        # In basis points here, as rates in commissionRates (Binance: 10 and "0.00100000" for 0.1%).
        "makerCommission": round(maker * 10000), "takerCommission": round(taker * 10000), "buyerCommission": 0,
        "sellerCommission": 0,
        "commissionRates": {"maker": _f(maker), "taker": _f(taker), "buyer": _f(0), "seller": _f(0)},
        "canTrade": True, "canWithdraw": True, "canDeposit": True, "brokered": False,
        "requireSelfTradePrevention": False, "preventSor": False, "updateTime": ex.now_ms(),
        "accountType": "SPOT", "balances": balances, "permissions": ["SPOT"], "uid": abs(hash(c.account)) % 10**9,
    }, {}


@dataclass
class OrderRequest:
    """A new order's parameters once Binance's own checks pass: what POST /api/v3/order and its test twin share."""

    symbol: str
    side: str
    type: str
    quantity: float | None
    quote_qty: float | None
    price: float | None
    time_in_force: str | None
    client_order_id: str | None


def _filter_failure(name: str) -> SandboxRejection:
    return SandboxRejection(400, -1013, f"Filter failure: {name}")


def _on_grid(value: Decimal, low: Decimal, high: Decimal, step: Decimal) -> bool:
    return low <= value <= high and (value - low) % step == 0


def check_filters(spec: SymbolSpec, type_: str, quantity: Decimal | None, quote_qty: Decimal | None,
                  price: Decimal | None, market_price: float) -> None:
    """The symbol filters exchangeInfo advertises, as https://developers.binance.com/docs/binance-spot-api-docs/filters
    defines them; the first that fails is Binance's -1013 "Filter failure: <filter>"."""
    tick, step = Decimal(spec.tick_size), Decimal(spec.step_size)
    # PRICE_FILTER: minPrice <= price <= maxPrice and (price - minPrice) % tickSize == 0.
    if price is not None and not _on_grid(price, tick, Decimal(spec.max_price), tick):
        raise _filter_failure("PRICE_FILTER")
    # LOT_SIZE: minQty <= quantity <= maxQty and (quantity - minQty) % stepSize == 0.
    if quantity is not None and not _on_grid(quantity, step, Decimal(spec.max_qty), step):
        raise _filter_failure("LOT_SIZE")
    # NOTIONAL: price * quantity within [minNotional, maxNotional]; a MARKET order is valued at the average price
    # (applyMinToMarket true, applyMaxToMarket false: only the minimum binds it).
    if type_ == "MARKET":
        notional = quote_qty if quote_qty is not None else (quantity or Decimal(0)) * Decimal(str(market_price))
        if notional < Decimal(spec.min_notional):
            raise _filter_failure("NOTIONAL")
    elif price is not None and quantity is not None:
        if not Decimal(spec.min_notional) <= price * quantity <= Decimal(spec.max_notional):
            raise _filter_failure("NOTIONAL")


def _order_request(c: Call) -> OrderRequest:
    p = c.params
    symbol = _required(p, "symbol")
    side = _required(p, "side")
    type_ = _required(p, "type")
    quantity = _decimal(p, "quantity")
    quote_qty = _decimal(p, "quoteOrderQty")
    price = _decimal(p, "price")
    client_id = p.get("newClientOrderId") or None
    if client_id is not None and not _CLIENT_ORDER_ID.match(client_id):
        # Binance: newClientOrderId must match ^[\.A-Z\:/a-z0-9_-]{1,36}$, else -1100.
        raise SandboxRejection(400, -1100, "Illegal characters found in parameter 'newClientOrderId'; legal range "
                                           f"is '{_CLIENT_ORDER_ID.pattern}'.")
    # Binance: a parameter the order type does not take is -1106 (a MARKET price, a LIMIT quoteOrderQty).
    for unwanted, type_without in (("price", "MARKET"), ("quoteOrderQty", "LIMIT"), ("timeInForce", "MARKET")):
        if type_ == type_without and p.get(unwanted):
            raise SandboxRejection(400, -1106, f"Parameter '{unwanted}' sent when not required.")
    if p.get("quantity") and p.get("quoteOrderQty"):  # one size or the other, never both
        raise SandboxRejection(400, -1106, "Parameter 'quoteOrderQty' sent when not required.")
    ex = c.exchange
    if symbol not in ex.symbols:
        raise SandboxRejection(400, -1121, "Invalid symbol.")
    if side not in ("BUY", "SELL"):
        raise SandboxRejection(400, -1117, "Invalid side.")
    if type_ not in ("LIMIT", "MARKET"):
        raise SandboxRejection(400, -1116, "Invalid orderType.")
    if type_ == "LIMIT" and (price is None or quantity is None):
        raise missing("price" if price is None else "quantity")
    if type_ == "LIMIT":
        time_in_force = _required(p, "timeInForce")
        if time_in_force not in ("GTC", "IOC", "FOK"):
            raise SandboxRejection(400, -1115, "Invalid timeInForce.")
    if quantity is None and quote_qty is None:
        raise missing("quantity")
    with ex.lock:
        market_price = ex.prices[symbol]
    check_filters(ex.symbols[symbol], type_, quantity, quote_qty, price, market_price)
    return OrderRequest(symbol, side, type_, None if quantity is None else float(quantity),
                        None if quote_qty is None else float(quote_qty), None if price is None else float(price),
                        p.get("timeInForce"), client_id)


def h_new_order(c: Call) -> tuple[Any, dict[str, str]]:
    r = _order_request(c)
    client_id = r.client_order_id or f"sandbox-{secrets.token_hex(8)}"
    headers = c.exchange.charge_order(c.account)
    try:
        order = c.exchange.place_order(c.account, r.symbol, r.side, r.type, r.quantity, r.quote_qty, r.price,
                                       r.time_in_force, client_id)
    except SandboxRejection as rejection:
        # A rejected order still counts, and its response still carries the order-count headers.
        rejection.headers.update(headers)
        raise
    resp_type = c.params.get("newOrderRespType", "FULL")
    if resp_type == "ACK":
        return {"symbol": r.symbol, "orderId": order.order_id, "orderListId": -1,
                "clientOrderId": order.client_order_id, "transactTime": order.time_ms}, headers
    return render_order(order, full=resp_type == "FULL"), headers


def h_rate_limit_order(c: Call) -> tuple[Any, dict[str, str]]:
    """GET /api/v3/rateLimit/order: "Displays the user's unfilled order count for all intervals"."""
    body = []
    for counter, count in c.exchange.unfilled_order_counts(c.account):
        interval, num, _ = interval_of(int(counter.window_s))
        body.append({"rateLimitType": "ORDERS", "interval": interval, "intervalNum": num, "limit": counter.limit,
                     "count": count})
    return body, {}


def _boolean(params: dict[str, str], name: str) -> bool:
    raw = (params.get(name) or "false").lower()
    if raw not in ("true", "false"):
        raise _invalid(name)
    return raw == "true"


def _rate_pair(maker: float, taker: float) -> dict[str, str]:
    return {"maker": _f(maker), "taker": _f(taker)}


def _discount() -> dict[str, Any]:
    # Sandbox accounts do not pay commission in BNB: the discount exists for the symbol, not used by the account.
    return {"enabledForAccount": False, "enabledForSymbol": True, "discountAsset": "BNB", "discount": "0.75000000"}


def h_test_order(c: Call) -> tuple[Any, dict[str, str]]:
    """POST /api/v3/order/test: every check a new order passes (parameters, symbol, side, type, time in force,
    filters), and nothing placed: Binance answers {}, or with computeCommissionRates=true the rates the order's
    trades would pay (buyer or seller rates already folded in by side; the sandbox has none, and no tax or special
    commission)."""
    compute = _boolean(c.params, "computeCommissionRates")
    _order_request(c)
    if not compute:
        return {}, {}
    cfg = c.exchange.config
    return {
        "standardCommissionForOrder": _rate_pair(cfg.maker_commission, cfg.taker_commission),
        "specialCommissionForOrder": _rate_pair(0, 0),
        "taxCommissionForOrder": _rate_pair(0, 0),
        "discount": _discount(),
    }, {}


def h_account_commission(c: Call) -> tuple[Any, dict[str, str]]:
    """GET /api/v3/account/commission: the account's rates on a symbol."""
    symbol = _required(c.params, "symbol")
    if symbol not in c.exchange.symbols:
        raise SandboxRejection(400, -1121, "Invalid symbol.")
    cfg = c.exchange.config
    zero = {"maker": _f(0), "taker": _f(0), "buyer": _f(0), "seller": _f(0)}
    return {
        "symbol": symbol,
        "standardCommission": {**_rate_pair(cfg.maker_commission, cfg.taker_commission), "buyer": _f(0),
                               "seller": _f(0)},
        "specialCommission": dict(zero),
        "taxCommission": dict(zero),
        "discount": _discount(),
    }, {}


def h_account_status(c: Call) -> tuple[Any, dict[str, str]]:
    """GET /sapi/v1/account/status: a sandbox account is always in good standing."""
    return {"data": "Normal"}, {}


def h_api_trading_status(c: Call) -> tuple[Any, dict[str, str]]:
    """GET /sapi/v1/account/apiTradingStatus: never locked in the sandbox (it does not model Binance's trading
    rules' GTC cancellation, IOC/FOK expiration and unfilled ratios; the thresholds are the documented example's),
    so no planned recovery and no update time."""
    return {"data": {"isLocked": False, "plannedRecoverTime": 0,
                     "triggerCondition": {"GCR": 150, "IFER": 150, "UFR": 300}, "updateTime": 0}}, {}


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
    """Cancels every open order on the symbol; with none open Binance answers -2011 "Unknown order sent."."""
    symbol = _required(c.params, "symbol")
    if symbol not in c.exchange.symbols:
        raise SandboxRejection(400, -1121, "Invalid symbol.")
    opened = c.exchange.open_orders(c.account, symbol)
    if not opened:
        raise SandboxRejection(400, -2011, "Unknown order sent.")
    out = []
    for o in opened:
        cancelled = c.exchange.cancel_order(c.account, symbol, o.order_id, None)
        body = render_order(cancelled)
        body["origClientOrderId"] = cancelled.client_order_id
        out.append(body)
    return out, {}


def h_my_trades(c: Call) -> tuple[Any, dict[str, str]]:
    """The account's trades on a symbol, oldest first: those of one order (orderId), from a trade id on (fromId),
    at most `limit` (default 500, at most 1000; without fromId the most recent ones)."""
    symbol = _required(c.params, "symbol")
    if symbol not in c.exchange.symbols:
        raise SandboxRejection(400, -1121, "Invalid symbol.")
    order_id = _integer(c.params, "orderId")
    from_id = _integer(c.params, "fromId")
    limit = min(max(_integer(c.params, "limit") or 500, 1), 1000)
    with c.exchange.lock:
        trades = [t for t in c.exchange.trades if t.account == c.account and t.symbol == symbol
                  and (order_id is None or t.order_id == order_id) and (from_id is None or t.trade_id >= from_id)]
    trades = trades[:limit] if from_id is not None else trades[-limit:]
    return [{"symbol": t.symbol, "id": t.trade_id, "orderId": t.order_id, "orderListId": -1,
             "price": _f(t.price), "qty": _f(t.qty), "quoteQty": _f(t.quote_qty), "commission": _f(t.commission),
             "commissionAsset": t.commission_asset, "time": t.time_ms, "isBuyer": t.side == "BUY",
             "isMaker": t.is_maker, "isBestMatch": True} for t in trades], {}


def h_api_restrictions(c: Call) -> tuple[Any, dict[str, str]]:
    key = c.key
    assert key is not None
    body: dict[str, Any] = {"ipRestrict": key.ip_restrict, "createTime": key.create_time_ms}
    body.update(key.flags)
    if key.expire_time_ms is not None:
        body["tradingAuthorityExpirationTime"] = key.expire_time_ms
    return body, {}


def h_withdraw(c: Call) -> tuple[Any, dict[str, str]]:
    p = c.params
    coin = _required(p, "coin")
    address = _required(p, "address")
    amount = _number(p, "amount", required=True) or 0.0
    wallet_type = _integer(p, "walletType") or 0
    if wallet_type not in (0, 1):
        raise _invalid("walletType")
    wid = c.exchange.withdraw(c.account, coin, amount, address, network=p.get("network") or None,
                              address_tag=p.get("addressTag") or None,
                              withdraw_order_id=p.get("withdrawOrderId") or None, name=p.get("name") or None,
                              wallet_type=wallet_type)
    return {"id": wid}, {}


DAY_MS = 86_400_000


def render_withdrawal(w: dict[str, Any]) -> dict[str, Any]:
    """A row of GET /sapi/v1/capital/withdraw/history. withdrawOrderId only when the withdrawal had one, addressTag
    only when it had a tag, completeTime only once completed (status 6), as Binance documents them."""
    row: dict[str, Any] = {
        "id": w["id"], "amount": _f(w["amount"]), "transactionFee": "0", "coin": w["coin"], "status": w["status"],
        "address": w["address"], "txId": w["tx_id"], "applyTime": _utc(w["time_ms"]), "network": w["network"],
        # 1 would be a transfer to another Binance account; the sandbox has no chain, and no other exchange users.
        "transferType": 0, "info": "", "confirmNo": 1, "walletType": w["wallet_type"], "txKey": "",
    }
    if w["address_tag"]:
        row["addressTag"] = w["address_tag"]
    if w["withdraw_order_id"]:
        row["withdrawOrderId"] = w["withdraw_order_id"]
    if w["status"] == 6:
        row["completeTime"] = _utc(w["complete_time_ms"])
    return row


def h_withdraw_history(c: Call) -> tuple[Any, dict[str, str]]:
    p = c.params
    now = c.exchange.now_ms()
    client_id = p.get("withdrawOrderId") or None
    # Default window: the last 90 days, or the last 7 when a withdrawOrderId is asked for; a longer window is
    # refused with -4047 (Binance documents only the 90-day message; the 7-day one says its own limit).
    span_days = 7 if client_id else 90
    start = _integer(p, "startTime")
    end = _integer(p, "endTime")
    end = now if end is None else end
    start = now - span_days * DAY_MS if start is None else start
    if end - start > span_days * DAY_MS:
        raise SandboxRejection(400, -4047, f"Time interval must be within 0-{span_days} days")
    status = _integer(p, "status")
    id_list = [i for i in (p.get("idList") or "").split(",") if i]
    if len(id_list) > 45:
        raise _invalid("idList")
    rows = [w for w in c.exchange.withdrawals_of(c.account)
            if start <= w["time_ms"] <= end
            and (not p.get("coin") or w["coin"] == p["coin"])
            and (client_id is None or w["withdraw_order_id"] == client_id)
            and (status is None or w["status"] == status)
            and (not id_list or w["id"] in id_list)]
    rows.sort(key=lambda w: w["time_ms"], reverse=True)  # newest first
    offset, limit = _page(p, "offset", "limit", 1000, 1000)
    return [render_withdrawal(w) for w in rows[offset:offset + limit]], {}


def h_transfer_history(c: Call) -> tuple[Any, dict[str, str]]:
    p = c.params
    kind = _required(p, "type")
    now = c.exchange.now_ms()
    start = _integer(p, "startTime")
    end = _integer(p, "endTime")
    if start is None and end is None:
        start = now - 7 * DAY_MS  # neither sent: the last 7 days
    rows = [t for t in c.exchange.transfers_of(c.account) if t["type"] == kind
            and (start is None or t["timestamp"] >= start) and (end is None or t["timestamp"] <= end)]
    rows.sort(key=lambda t: t["timestamp"], reverse=True)
    first, size = _page(p, "current", "size", 10, 100, first_page=1)
    page = [{"asset": t["asset"], "amount": _plain(t["amount"]), "type": t["type"], "status": t["status"],
             "tranId": t["tranId"], "timestamp": t["timestamp"]} for t in rows[first:first + size]]
    # With nothing to list Binance answers {"total": 0} without "rows" (clients read it as optional).
    return ({"total": len(rows), "rows": page} if rows else {"total": 0}), {}


def _plain(value: float) -> str:
    """An amount the way the transfer history writes it: "1", "0.5" (no padding zeros)."""
    text = f"{value:.8f}".rstrip("0").rstrip(".")
    return text or "0"


def h_withdraw_addresses(c: Call) -> tuple[Any, dict[str, str]]:
    return c.exchange.addresses_of(c.account), {}


# -- master account: its sub-accounts' API keys ---------------------------------------------------------
def _sub_account_key(c: Call) -> tuple[SubAccount, SandboxKey]:
    """The sub-account named by `email` and its key named by `subAccountApiKey`. An email that is not a
    sub-account of the caller's account is Binance's -5021 PARENT_SUB_HAVE_NO_RELATION, whether it belongs to another
    master or to nobody (Binance answers a made-up email the same way). For a key that is not that sub-account's
    live key the docs give no code: the sandbox answers -1130 INVALID_PARAMETER, Binance's general code for a
    parameter value it cannot use."""
    email = _required(c.params, "email")
    api_key = _required(c.params, "subAccountApiKey")
    ex = c.exchange
    with ex.lock:
        sub = ex.sub_account_by_email(email)
        if sub is None or sub.master != c.account:
            raise SandboxRejection(400, -5021, "This parent sub have no relation")
        key = ex.keys.get(api_key)
        if key is None or key.revoked or key.exchange != "binance" or key.account != sub.account:
            raise _invalid("subAccountApiKey")
        return sub, key


def _ip_restriction_body(key: SandboxKey) -> dict[str, Any]:
    # Binance writes ipRestrict as a string here ("true"), unlike the boolean of /sapi/v1/account/apiRestrictions.
    return {"ipRestrict": "true" if key.ip_restrict else "false", "ipList": list(key.ips),
            "updateTime": key.update_time_ms or key.create_time_ms, "apiKey": key.api_key}


def _ip_list(params: dict[str, str], required: bool) -> list[str]:
    raw = _required(params, "ipAddress") if required else params.get("ipAddress", "")
    try:
        return parse_ip_list(raw)
    except ValueError:
        raise _invalid("ipAddress") from None


def h_get_sub_ip_restriction(c: Call) -> tuple[Any, dict[str, str]]:
    _, key = _sub_account_key(c)
    return _ip_restriction_body(key), {}


def h_set_sub_ip_restriction(c: Call) -> tuple[Any, dict[str, str]]:
    """status 1: unrestricted, 2: trusted IPs only. Binance's docs do not say whether a second call adds to the
    list or replaces it; the sandbox replaces the restriction and the list (the response carries the whole list, and
    containment must be able to narrow it). status 2 without ipAddress leaves a restricted key with no trusted IP:
    refused from everywhere."""
    _, key = _sub_account_key(c)
    status = _required(c.params, "status")
    if status not in ("1", "2"):
        raise _invalid("status")
    ips = _ip_list(c.params, required=False)
    key = c.exchange.set_ip_restriction(key.api_key, status == "2", ips)
    body: dict[str, Any] = {"status": status}
    if key.ip_restrict and key.ips:  # "only return if you open IP restriction and input IP address"
        body["ipList"] = list(key.ips)
    body.update({"updateTime": key.update_time_ms, "apiKey": key.api_key})
    return body, {}


def h_delete_sub_ips(c: Call) -> tuple[Any, dict[str, str]]:
    """Drops the given IPs; the restriction stays on, so a restricted key whose list empties is refused everywhere."""
    _, key = _sub_account_key(c)
    key = c.exchange.remove_ips(key.api_key, _ip_list(c.params, required=True))
    return _ip_restriction_body(key), {}


def h_delete_sub_key(c: Call) -> tuple[Any, dict[str, str]]:
    _, key = _sub_account_key(c)
    c.exchange.revoke_key(key.api_key)
    return {}, {}


# POST /sapi/v1/sub-account/subAccountApiPermission: parameter -> the sandbox's flag. Withdrawals are not among
# them: a master cannot grant a sub-account key withdrawals through the API.
SUB_KEY_PERMISSIONS = {
    "canTrade": "enableSpotAndMarginTrading",
    "canMarginLoanRepay": "enableMargin",
    "canFuturesTrade": "enableFutures",
    "canUniversalTransfer": "permitsUniversalTransfer",
    "canVanillaOptions": "enableVanillaOptions",
}


def h_sub_key_permission(c: Call) -> tuple[Any, dict[str, str]]:
    _, key = _sub_account_key(c)
    changes: dict[str, bool] = {}
    for param, flag in SUB_KEY_PERMISSIONS.items():
        raw = c.params.get(param)
        if raw is None or raw == "":
            continue
        if raw.lower() not in ("true", "false"):
            raise _invalid(param)
        changes[flag] = raw.lower() == "true"
    key = c.exchange.set_flags(key.api_key, changes)
    body: dict[str, Any] = {"apiName": key.label, "apikey": key.api_key}
    body.update({param: bool(key.flags.get(flag)) for param, flag in SUB_KEY_PERMISSIONS.items()})
    body["timestamp"] = key.update_time_ms
    return body, {}


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
    ("POST", "/api/v3/order"): Endpoint(_fixed(1), TRADE, h_new_order, reads=ORDER_PARAMS),
    ("POST", "/api/v3/order/test"): Endpoint(_test_order_weight, TRADE, h_test_order,
                                             reads=ORDER_PARAMS | {"computeCommissionRates"}),
    ("GET", "/api/v3/account/commission"): Endpoint(_fixed(20), READ, h_account_commission,
                                                    reads=frozenset({"symbol"})),
    ("GET", "/api/v3/order"): Endpoint(_fixed(4), READ, h_get_order, reads=ORDER_REF_PARAMS),
    ("DELETE", "/api/v3/order"): Endpoint(_fixed(1), TRADE, h_cancel_order,
                                          reads=ORDER_REF_PARAMS | {"newClientOrderId", "cancelRestrictions"}),
    ("GET", "/api/v3/openOrders"): Endpoint(lambda p: 6 if p.get("symbol") else 80, READ, h_open_orders,
                                            reads=frozenset({"symbol"})),
    ("DELETE", "/api/v3/openOrders"): Endpoint(_fixed(1), TRADE, h_cancel_open_orders, reads=frozenset({"symbol"})),
    ("GET", "/api/v3/myTrades"): Endpoint(_my_trades_weight, READ, h_my_trades,
                                          reads=frozenset({"symbol", "orderId", "startTime", "endTime", "fromId",
                                                           "limit"})),
    ("GET", "/api/v3/rateLimit/order"): Endpoint(_fixed(40), READ, h_rate_limit_order, reads=frozenset()),
    ("GET", "/api/v3/allOrders"): Endpoint(_fixed(20), READ, h_all_orders),
    ("GET", "/sapi/v1/account/apiRestrictions"): Endpoint(_fixed(1), KEY, h_api_restrictions, sapi=True),
    ("GET", "/sapi/v1/account/status"): Endpoint(_fixed(1), READ, h_account_status, sapi=True),
    ("GET", "/sapi/v1/account/apiTradingStatus"): Endpoint(_fixed(1), READ, h_api_trading_status, sapi=True),
    ("POST", "/sapi/v1/capital/withdraw/apply"): Endpoint(_fixed(1), WITHDRAW, h_withdraw, sapi=True),
    ("POST", "/sapi/v1/asset/transfer"): Endpoint(_fixed(1), UNIVERSAL_TRANSFER, h_universal_transfer, sapi=True),
    # Wallet history and the address book: what foreign-activity detection reads (USER_DATA: any readable key).
    ("GET", "/sapi/v1/capital/withdraw/history"): Endpoint(_fixed(18000), READ, h_withdraw_history, sapi=True,
                                                           uid=True),
    ("GET", "/sapi/v1/asset/transfer"): Endpoint(_fixed(1), READ, h_transfer_history, sapi=True),
    ("GET", "/sapi/v1/capital/withdraw/address/list"): Endpoint(_fixed(10), READ, h_withdraw_addresses, sapi=True),
    # A master account's control of its sub-accounts' keys: what incident containment calls. Binance requires
    # "Enable Spot & Margin Trading" on the master's key for the calls that change a key (TRADE).
    ("GET", "/sapi/v1/sub-account/subAccountApi/ipRestriction"): Endpoint(
        _fixed(3000), READ, h_get_sub_ip_restriction, sapi=True, uid=True),
    ("POST", "/sapi/v2/sub-account/subAccountApi/ipRestriction"): Endpoint(
        _fixed(3000), TRADE, h_set_sub_ip_restriction, sapi=True, uid=True),
    ("DELETE", "/sapi/v1/sub-account/subAccountApi/ipRestriction/ipList"): Endpoint(
        _fixed(3000), TRADE, h_delete_sub_ips, sapi=True, uid=True),
    ("DELETE", "/sapi/v1/sub-account/subAccountApi"): Endpoint(
        _fixed(3000), TRADE, h_delete_sub_key, sapi=True, uid=True),
    # USER_DATA in the docs: no trading permission asked of the master's key.
    ("POST", "/sapi/v1/sub-account/subAccountApiPermission"): Endpoint(
        _fixed(3000), READ, h_sub_key_permission, sapi=True, uid=True),
    # What a stock ccxt client's loadMarkets also asks for, so it needs no options to run against the sandbox.
    ("GET", "/sapi/v1/capital/config/getall"): Endpoint(_fixed(10), READ, h_capital_config, sapi=True),
    # "Get All Cross Margin Pairs (MARKET_DATA)": the X-MBX-APIKEY header only; clients send it unsigned.
    ("GET", "/sapi/v1/margin/allPairs"): Endpoint(_fixed(1), MARKET_DATA, h_empty_list, sapi=True),
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


def check_timing(exchange: SandboxExchange, timestamp: int, recv_window: float) -> None:
    """Binance's timing security: recvWindow at most its maximum (-1131); timestamp < serverTime + 1 s and
    serverTime - timestamp <= recvWindow (-1021). The REST and WebSocket API faces apply the same rule."""
    if recv_window > exchange.config.max_recv_window_ms:
        raise SandboxRejection(400, -1131, f"recvWindow must be less than {exchange.config.max_recv_window_ms}.")
    server_ms = exchange.now_ms()
    if timestamp >= server_ms + 1000:
        raise SandboxRejection(400, -1021, "Timestamp for this request was 1000ms ahead of the server's time.")
    if server_ms - timestamp > recv_window:
        raise SandboxRejection(400, -1021, "Timestamp for this request is outside of the recvWindow.")


def live_key(exchange: SandboxExchange, api_key: str | None, ip: str) -> SandboxKey:
    """Binance's first two checks, for REST and the WebSocket API alike: the key's format (-2014), then the key known,
    not revoked and this IP allowed (-2015, one answer for all three, so a caller learns nothing about which)."""
    if not api_key or not _API_KEY_FORMAT.match(api_key):
        raise SandboxRejection(401, -2014, "API-key format invalid.")
    key = exchange.keys.get(api_key)
    if key is None or key.revoked or key.exchange != "binance" or not key.allows_ip(ip):
        raise SandboxRejection(401, -2015, REFUSED)
    return key


def authenticate(exchange: SandboxExchange, security: str, ip: str, headers: Any, query: str,
                 body: str, params: dict[str, str]) -> SandboxKey:
    """Binance's checks in order: key format, key known and IP allowed, timestamp/recvWindow, signature, permission.
    A MARKET_DATA endpoint stops after the first two: "endpoints require sending a valid API-Key" and no signature
    (a timestamp and signature sent anyway are not read)."""
    key = live_key(exchange, headers.get("X-MBX-APIKEY"), ip)
    if security == MARKET_DATA:
        return key
    timestamp = _integer(params, "timestamp")
    if timestamp is None:
        raise missing("timestamp")
    check_timing(exchange, timestamp, _integer(params, "recvWindow") or exchange.config.default_recv_window_ms)
    q_payload, q_sig = _without_signature(query)
    b_payload, b_sig = _without_signature(body)
    signature = q_sig or b_sig
    if not signature:
        raise missing("signature")
    # The payload is the query string concatenated without separator to the body, as sent (percent-encoded); the
    # signature parameter is percent-decoded like any other (an RSA or Ed25519 one is base64, sent percent-encoded).
    if not signature_valid(key, q_payload + b_payload, unquote_plus(signature)):
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
    pairs = parse_qsl(query, keep_blank_values=True) + parse_qsl(body, keep_blank_values=True)
    params = dict(pairs)
    ip = request.client.host if request.client else "unknown"
    faults = exchange.take_faults(f"{method} {path}", ip)
    await apply_latency(faults)
    before, after = split_faults(faults)
    headers: dict[str, str] = {}
    try:
        if endpoint.charged:
            if not endpoint.sapi:
                headers = exchange.charge_ip(ip, endpoint.weight(params))
            elif endpoint.uid:
                exchange.refuse_if_banned(ip)  # charged to the account below, once the key names it
            else:
                headers = exchange.charge_sapi_ip(ip, f"{method} {path}", endpoint.weight(params))
        if before is not None:
            return fault_response(before, exchange.stopping, exchange.config.drop_hold_s)
        key = None
        if endpoint.security != NONE:
            with exchange.lock:
                key = authenticate(exchange, endpoint.security, ip, request.headers, query, body, params)
        if endpoint.uid and key is not None:
            # Only an authenticated call has an account to charge.
            headers.update(exchange.charge_uid(key.account, f"{method} {path}", endpoint.weight(params)))
        if len({name for name, _ in pairs}) != len(pairs):
            raise SandboxRejection(400, -1101, "Duplicate values for a parameter detected.")
        unread = unread_parameters(endpoint, pairs)
        if unread is not None:
            raise unread
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
