"""Declarative per-endpoint cost table: what one Binance spot request charges to each rate-limit pool.

Weights are Binance's documented REQUEST_WEIGHT values (spot API, 6000/min era). Parameter-dependent
weights (depth by limit, openOrders with or without a symbol, tickers with or without symbols) are
functions of the request's parameters, so the limiter charges what the exchange will charge.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

Params = Mapping[str, Any]

# Pool kinds. REQUEST_WEIGHT and RAW_REQUESTS are per egress IP; ORDERS are per account.
REQUEST_WEIGHT = "REQUEST_WEIGHT"
RAW_REQUESTS = "RAW_REQUESTS"
ORDERS = "ORDERS"
SAPI_WEIGHT = "SAPI_IP_WEIGHT"

# Unknown endpoints are charged as heavy requests: under-charging is how bans happen.
UNKNOWN_ENDPOINT_WEIGHT = 20


@dataclass(frozen=True)
class EndpointCost:
    """What one call charges: request weight (fixed or from params), whether it counts as an order."""

    weight: int | Callable[[Params], int]
    counts_as_order: bool = False
    weight_pool: str = REQUEST_WEIGHT

    def weight_for(self, params: Params) -> int:
        return self.weight(params) if callable(self.weight) else self.weight


def _depth_weight(params: Params) -> int:
    """By limit: 1-100: 5, 101-500: 25, 501-1000: 50, more: 250. A limit that is not a whole number (a bot's typo)
    weighs what the default does: the exchange refuses it, and the caller hears its refusal."""
    raw = params.get("limit", 100)
    try:
        limit = int(raw)
    except (TypeError, ValueError):
        limit = 100
    if limit <= 100:
        return 5
    if limit <= 500:
        return 25
    if limit <= 1000:
        return 50
    return 250


def _symbols_count(params: Params) -> int | None:
    """Number of symbols a ticker request names; None when it names none (the whole market)."""
    if params.get("symbol"):
        return 1
    raw = params.get("symbols")
    if raw is None:
        return None
    if isinstance(raw, str):
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = raw.split(",")
        return len(parsed) if isinstance(parsed, list) else 1
    return len(raw)


def _ticker_price_weight(params: Params) -> int:
    return 2 if _symbols_count(params) == 1 else 4


def _ticker_24hr_weight(params: Params) -> int:
    count = _symbols_count(params)
    if count is None:
        return 80
    if count <= 20:
        return 2
    if count <= 100:
        return 40
    return 80


def _open_orders_weight(params: Params) -> int:
    return 6 if params.get("symbol") else 80


def _my_trades_weight(params: Params) -> int:
    return 5 if params.get("orderId") else 20


def _test_order_weight(params: Params) -> int:
    return 20 if str(params.get("computeCommissionRates", "")).lower() == "true" else 1


BINANCE_SPOT_COSTS: dict[tuple[str, str], EndpointCost] = {
    ("GET", "/api/v3/ping"): EndpointCost(1),
    ("GET", "/api/v3/time"): EndpointCost(1),
    ("GET", "/api/v3/exchangeInfo"): EndpointCost(20),
    ("GET", "/api/v3/depth"): EndpointCost(_depth_weight),
    ("GET", "/api/v3/trades"): EndpointCost(25),
    ("GET", "/api/v3/historicalTrades"): EndpointCost(25),
    ("GET", "/api/v3/aggTrades"): EndpointCost(2),
    ("GET", "/api/v3/klines"): EndpointCost(2),
    ("GET", "/api/v3/avgPrice"): EndpointCost(2),
    ("GET", "/api/v3/ticker/price"): EndpointCost(_ticker_price_weight),
    ("GET", "/api/v3/ticker/bookTicker"): EndpointCost(_ticker_price_weight),
    ("GET", "/api/v3/ticker/24hr"): EndpointCost(_ticker_24hr_weight),
    ("POST", "/api/v3/order"): EndpointCost(1, counts_as_order=True),
    ("POST", "/api/v3/order/test"): EndpointCost(_test_order_weight),
    ("GET", "/api/v3/order"): EndpointCost(4),
    ("DELETE", "/api/v3/order"): EndpointCost(1),
    ("GET", "/api/v3/openOrders"): EndpointCost(_open_orders_weight),
    ("DELETE", "/api/v3/openOrders"): EndpointCost(1),
    ("GET", "/api/v3/allOrders"): EndpointCost(20),
    ("GET", "/api/v3/account"): EndpointCost(20),
    ("GET", "/api/v3/myTrades"): EndpointCost(_my_trades_weight),
    ("GET", "/api/v3/rateLimit/order"): EndpointCost(40),
    ("GET", "/api/v3/account/commission"): EndpointCost(20),
    ("GET", "/sapi/v1/account/apiRestrictions"): EndpointCost(1, weight_pool=SAPI_WEIGHT),
    ("GET", "/sapi/v1/account/status"): EndpointCost(1, weight_pool=SAPI_WEIGHT),
    ("GET", "/sapi/v1/account/apiTradingStatus"): EndpointCost(1, weight_pool=SAPI_WEIGHT),
    ("POST", "/sapi/v1/capital/withdraw/apply"): EndpointCost(600, weight_pool=SAPI_WEIGHT),
    ("POST", "/sapi/v1/asset/transfer"): EndpointCost(900, weight_pool=SAPI_WEIGHT),
    # Activity reads (foreign-activity detection). Withdraw history also costs 18,000 of the account's 180,000 UID
    # weight per minute: read at most every few seconds per account, which a check interval of 60 s keeps to 10%.
    ("GET", "/sapi/v1/capital/withdraw/history"): EndpointCost(1, weight_pool=SAPI_WEIGHT),
    ("GET", "/sapi/v1/asset/transfer"): EndpointCost(1, weight_pool=SAPI_WEIGHT),
    ("GET", "/sapi/v1/capital/withdraw/address/list"): EndpointCost(10, weight_pool=SAPI_WEIGHT),
    # Master-account control of a sub-account key (containment, with a separate admin key); their cost is on the
    # master's UID weight (3,000), the IP weight is 1.
    ("GET", "/sapi/v1/sub-account/subAccountApi/ipRestriction"): EndpointCost(1, weight_pool=SAPI_WEIGHT),
    ("POST", "/sapi/v2/sub-account/subAccountApi/ipRestriction"): EndpointCost(1, weight_pool=SAPI_WEIGHT),
}


def endpoint_cost(method: str, path: str, table: Mapping[tuple[str, str], EndpointCost] | None = None) -> EndpointCost:
    """The cost entry for a call; unknown Binance endpoints are charged conservatively, never as free. An empty
    table (exchanges that publish no weights) charges every request 1."""
    costs = BINANCE_SPOT_COSTS if table is None else table
    if not costs:
        return EndpointCost(1)
    entry = costs.get((method.upper(), path.split("?", 1)[0]))
    if entry is None:
        pool = SAPI_WEIGHT if path.startswith("/sapi/") else REQUEST_WEIGHT
        return EndpointCost(UNKNOWN_ENDPOINT_WEIGHT, weight_pool=pool)
    return entry
