"""The one Binance spot client (real Binance or the sandbox), for the worker, the gateway and the Binance key
adapter: signs with HMAC, charges every call to the shared limiter first and reports the response's usage headers
back to it, and turns every failure into keyguard.exchanges.errors (Binance's codes by `binance_error`). It never
retries an order by itself; the idempotency rules live in keyguard.worker.orders."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any
from urllib.parse import quote_plus

import certifi

from keyguard.exchanges.budget import Permit, SharedRateLimiter, retry_after_s
from keyguard.exchanges.connections import ConnectionFailed, ConnectionTimeout, KeptAliveConnections
from keyguard.exchanges.errors import (
    ExchangeRejected,
    ExchangeTimeout,
    ExchangeUnavailable,
    MalformedResponse,
    OutcomeUnknown,
    RateLimited,
    binance_error,
)
from keyguard.redact import register_secret

# The names the worker and the gateway import from here: the family's classes and the code they act on.
__all__ = ["ORDER_DOES_NOT_EXIST", "BinanceSpotClient", "ExchangeRejected", "OutcomeUnknown", "RateLimited"]

ORDER_DOES_NOT_EXIST = -2013
# Binance refuses a timestamp 1 s ahead of its clock: a sync whose round trip is slower than that could be off by
# half of it, so it is not used.
MAX_SYNC_ROUND_TRIP_S = 1.0

log = logging.getLogger(__name__)

_tls_lock = threading.Lock()
_tls: list[ssl.SSLContext] = []


def shared_tls_context() -> ssl.SSLContext:
    """One verifying TLS context for every client in the process: building one (loading the CA bundle) costs
    tens of milliseconds, and the adapters make a client per key and source address."""
    with _tls_lock:
        if not _tls:
            _tls.append(ssl.create_default_context(cafile=certifi.where()))
        return _tls[0]


_UNQUOTED = re.compile(r"[A-Za-z0-9_.~-]*")


def encode_query(params: Mapping[str, Any]) -> str:
    """`urlencode(params)`, byte for byte, without quoting what needs none (every order parameter Binance takes):
    a third of the cost on the order path."""
    parts = []
    for name, value in params.items():
        text = value if isinstance(value, str) else str(value)
        if _UNQUOTED.fullmatch(text) and _UNQUOTED.fullmatch(name):
            parts.append(f"{name}={text}")
        else:
            parts.append(f"{quote_plus(name)}={quote_plus(text)}")
    return "&".join(parts)


class BinanceSpotClient:
    def __init__(
        self,
        base_url: str,
        api_key: str,
        api_secret: str,
        limiter: SharedRateLimiter | None = None,
        *,
        timeout_s: float = 5.0,
        recv_window_ms: int = 5000,
        source_address: str | None = None,
        clock: Callable[[], float] = time.time,
        defer: Callable[[Callable[[], object]], None] | None = None,
    ) -> None:
        register_secret(api_key)
        register_secret(api_secret)
        self.base_url = base_url.rstrip("/")
        # One tuple, replaced whole: a request signs with one key's id and secret, never one of each.
        self._credentials = (api_key, api_secret.encode())
        self.limiter = limiter
        self.recv_window_ms = recv_window_ms
        self.timeout_s = timeout_s
        self.source_address = source_address
        self.clock = clock
        # Takes the budget's correction from an accepted call's usage headers to run once the caller has answered
        # (the gateway's bot); refusals (429, 418) are applied before the call returns.
        self.defer = defer
        self.time_offset_ms = 0
        # When this thread's last request left and when its answer came: the wire time, without budget waits.
        self._wire = threading.local()
        # Never a proxy from the environment: a call really leaves from this host (or `source_address`).
        self._http = KeptAliveConnections(self.base_url, tls=shared_tls_context(), source_address=source_address)

    @property
    def api_key_id(self) -> str:
        """The API key (its public id) requests are signed for now."""
        return self._credentials[0]

    def credentials(self) -> tuple[str, str]:
        """The key and secret requests are signed with now (for the gateway's fast lane, which signs its own)."""
        api_key, secret = self._credentials
        return api_key, secret.decode()

    def replace_credentials(self, api_key: str, api_secret: str) -> None:
        """Sign every request from now on with another key of the same account (a rotation); a request already
        signed finishes with the key that signed it."""
        register_secret(api_key)
        register_secret(api_secret)
        self._credentials = (api_key, api_secret.encode())

    def close(self) -> None:
        self._http.close()

    def request(
        self, method: str, path: str, params: Mapping[str, Any] | None = None, *, signed: bool = False,
        deadline_s: float | None = None, timeout_s: float | None = None,
        while_waiting: Callable[[], None] | None = None,
    ) -> Any:
        """Send one call and return its JSON body. `deadline_s` bounds the wait for budget, `timeout_s` (default: the
        client's) the wait for the answer. Raises OutcomeUnknown (ExchangeTimeout, ExchangeUnavailable,
        MalformedResponse), an ExchangeRejected from `binance_error`, or the limiter's RateLimitRefused.
        `while_waiting` (it must not raise) runs once the request has left, before the answer is read."""
        what = f"binance {method} {path}"
        params = {k: v for k, v in (params or {}).items() if v is not None}
        permit = self.limiter.acquire(method, path, params, deadline_s=deadline_s) if self.limiter else None
        headers = {}
        if signed:
            params["timestamp"] = int(self.clock() * 1000) + self.time_offset_ms
            params.setdefault("recvWindow", self.recv_window_ms)
            query = encode_query(params)
            api_key, secret = self._credentials
            signature = hmac.new(secret, query.encode(), hashlib.sha256).hexdigest()
            query = f"{query}&signature={signature}"
            headers["X-MBX-APIKEY"] = api_key
        else:
            query = encode_query(params)
        target = f"{path}?{query}" if query else path
        wait_s = self.timeout_s if timeout_s is None else timeout_s
        try:
            self._wire.sent = self.clock()
            response = self._http.request(method, target, headers, wait_s, while_waiting)
            self._wire.answered = self.clock()
        except ConnectionTimeout:
            raise ExchangeTimeout(f"{what}: no answer within {round(wait_s * 1000)} ms, outcome unknown") from None
        except ConnectionFailed as exc:
            raise ExchangeUnavailable(f"{what}: {exc}, outcome unknown") from None
        return self.answer_of(what, permit, response.status, response.headers, response.body)

    def answer_of(self, what: str, permit: Permit | None, status: int, headers: Mapping[str, str],
                  raw: bytes | str) -> Any:
        """A call's answer as `request` returns it (its JSON body) or raises it, the budget corrected from its
        headers. Also for an order the gateway's fast lane sent on a permit charged here (gateway/lane.py)."""
        log.debug("%s: HTTP %s", what, status)
        if self.limiter is not None:
            if self.defer is not None and status < 400:
                self.defer(partial(self.limiter.observe, permit, status, headers))
            else:
                self.limiter.observe(permit, status, headers)
        if status >= 500:
            raise ExchangeUnavailable(f"{what}: HTTP {status}, outcome unknown")
        try:
            body = json.loads(raw)
        except ValueError:
            if status < 400:
                raise MalformedResponse(f"{what}: unreadable body with HTTP {status}, outcome unknown") from None
            body = {}
        if status >= 400:
            code = body.get("code") if isinstance(body, dict) else None
            message = str(body.get("msg", "")) if isinstance(body, dict) else ""
            raise binance_error(status, code if isinstance(code, int) else None, message,
                                retry_after=retry_after_s(headers), context=what)
        return body

    # Endpoints the worker uses.
    def server_time_ms(self) -> int:
        return int(self.request("GET", "/api/v3/time")["serverTime"])

    def sync_time(self) -> int:
        """Measure local-vs-exchange clock offset so signed timestamps fall inside recvWindow. The round trip is
        timed on the wire only (a wait for rate budget before sending is not network delay); an answer slower than
        MAX_SYNC_ROUND_TRIP_S says too little about the offset and leaves the last measurement in place."""
        server = self.server_time_ms()
        sent, answered = self._wire.sent, self._wire.answered
        if answered - sent <= MAX_SYNC_ROUND_TRIP_S:
            self.time_offset_ms = int(server - (sent + answered) / 2 * 1000)
        else:
            log.warning("clock sync: the time call took %.2fs on the wire; keeping offset %d ms", answered - sent,
                        self.time_offset_ms)
        return self.time_offset_ms

    def exchange_info(self) -> dict[str, Any]:
        return self.request("GET", "/api/v3/exchangeInfo")

    def ticker_price(self, symbol: str) -> float:
        return float(self.request("GET", "/api/v3/ticker/price", {"symbol": symbol})["price"])

    def new_order(self, params: Mapping[str, Any], deadline_s: float | None = None, *,
                  while_waiting: Callable[[], None] | None = None) -> dict[str, Any]:
        return self.request("POST", "/api/v3/order", params, signed=True, deadline_s=deadline_s,
                            while_waiting=while_waiting)

    def get_order(self, symbol: str, client_order_id: str) -> dict[str, Any]:
        return self.request("GET", "/api/v3/order", {"symbol": symbol, "origClientOrderId": client_order_id},
                            signed=True)

    def cancel_order(self, symbol: str, client_order_id: str) -> dict[str, Any]:
        return self.request("DELETE", "/api/v3/order", {"symbol": symbol, "origClientOrderId": client_order_id},
                            signed=True)

    def open_orders(self, symbol: str | None = None) -> list[dict[str, Any]]:
        return self.request("GET", "/api/v3/openOrders", {"symbol": symbol}, signed=True)

    def cancel_open_orders(self, symbol: str) -> Any:
        return self.request("DELETE", "/api/v3/openOrders", {"symbol": symbol}, signed=True)

    def account(self) -> dict[str, Any]:
        return self.request("GET", "/api/v3/account", signed=True)

    def my_trades(self, symbol: str, order_id: int | None = None) -> list[dict[str, Any]]:
        """The account's trades on `symbol` (only those of one order with `order_id`), each with its commission."""
        params: dict[str, Any] = {"symbol": symbol}
        if order_id is not None:
            params["orderId"] = order_id
        return self.request("GET", "/api/v3/myTrades", params, signed=True)
