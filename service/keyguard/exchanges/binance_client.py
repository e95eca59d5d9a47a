"""Thin signed HTTP client for Binance spot (and the sandbox): every call is charged to the shared limiter
first and reports the response's usage headers back to it. It never retries an order by itself; the
idempotency rules live in keyguard.worker.orders."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode

import httpx

from keyguard.errors import ExchangeError
from keyguard.redact import redact_text, register_secret
from keyguard.worker.limiter import SharedRateLimiter

ORDER_DOES_NOT_EXIST = -2013


class OutcomeUnknown(ExchangeError):
    """Timeout, reset, 5xx or an unreadable body: the request may or may not have taken effect."""


class ExchangeRejected(ExchangeError):
    """The exchange answered with an error code: the request definitively did not take effect."""

    def __init__(self, status: int, code: int | None, message: str) -> None:
        super().__init__(f"HTTP {status} code {code}: {message}")
        self.status = status
        self.code = code
        self.exchange_message = message


class RateLimited(ExchangeRejected):
    """429 or 418: refused by the exchange's rate limit (the limiter has stopped the whole IP)."""


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
    ) -> None:
        register_secret(api_key)
        register_secret(api_secret)
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._secret = api_secret.encode()
        self.limiter = limiter
        self.recv_window_ms = recv_window_ms
        self.clock = clock
        self.time_offset_ms = 0
        transport = httpx.HTTPTransport(local_address=source_address) if source_address else None
        self._http = httpx.Client(timeout=timeout_s, transport=transport)

    def close(self) -> None:
        self._http.close()

    def request(
        self, method: str, path: str, params: Mapping[str, Any] | None = None, *, signed: bool = False,
        deadline_s: float | None = None,
    ) -> Any:
        params = {k: v for k, v in (params or {}).items() if v is not None}
        permit = self.limiter.acquire(method, path, params, deadline_s=deadline_s) if self.limiter else None
        headers = {}
        if signed:
            params["timestamp"] = int(self.clock() * 1000) + self.time_offset_ms
            params.setdefault("recvWindow", self.recv_window_ms)
            query = urlencode(params)
            signature = hmac.new(self._secret, query.encode(), hashlib.sha256).hexdigest()
            query = f"{query}&signature={signature}"
            headers["X-MBX-APIKEY"] = self._api_key
        else:
            query = urlencode(params)
        url = f"{self.base_url}{path}" + (f"?{query}" if query else "")
        try:
            response = self._http.request(method, url, headers=headers)
        except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            raise OutcomeUnknown(f"{method} {path}: {type(exc).__name__}, outcome unknown") from None
        if self.limiter is not None:
            self.limiter.observe(permit, response.status_code, response.headers)
        status = response.status_code
        if status >= 500:
            raise OutcomeUnknown(f"{method} {path}: HTTP {status}, outcome unknown")
        try:
            body = response.json()
        except ValueError:
            if status < 400:
                raise OutcomeUnknown(f"{method} {path}: unreadable body with HTTP {status}") from None
            body = {}
        if status >= 400:
            code = body.get("code") if isinstance(body, dict) else None
            message = redact_text(str(body.get("msg", "")) if isinstance(body, dict) else "")
            if status in (418, 429):
                raise RateLimited(status, code, message or "rate limited")
            raise ExchangeRejected(status, code, message)
        return body

    # Endpoints the worker uses.
    def server_time_ms(self) -> int:
        return int(self.request("GET", "/api/v3/time")["serverTime"])

    def sync_time(self) -> int:
        """Measure local-vs-exchange clock offset so signed timestamps fall inside recvWindow."""
        before = self.clock()
        server = self.server_time_ms()
        after = self.clock()
        self.time_offset_ms = int(server - (before + after) / 2 * 1000)
        return self.time_offset_ms

    def exchange_info(self) -> dict[str, Any]:
        return self.request("GET", "/api/v3/exchangeInfo")

    def ticker_price(self, symbol: str) -> float:
        return float(self.request("GET", "/api/v3/ticker/price", {"symbol": symbol})["price"])

    def new_order(self, params: Mapping[str, Any], deadline_s: float | None = None) -> dict[str, Any]:
        return self.request("POST", "/api/v3/order", params, signed=True, deadline_s=deadline_s)

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

    def my_trades(self, symbol: str) -> list[dict[str, Any]]:
        return self.request("GET", "/api/v3/myTrades", {"symbol": symbol}, signed=True)
