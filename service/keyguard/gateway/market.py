"""Public market data through the gateway: answered from a short-lived cache, so many bots polling the same
ticker cost the IP's shared budget once; a miss is one request through the shared client and limiter."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from keyguard.exchanges.binance_client import BinanceSpotClient

# Paths served from the cache (public, read-only, no key needed at the exchange).
MARKET_PATHS = frozenset({
    "/api/v3/exchangeInfo", "/api/v3/depth", "/api/v3/ticker/price", "/api/v3/ticker/24hr",
    "/api/v3/ticker/bookTicker", "/api/v3/klines", "/api/v3/trades", "/api/v3/avgPrice",
    # What a stock ccxt client's loadMarkets also asks for (public futures metadata).
    "/fapi/v1/exchangeInfo", "/dapi/v1/exchangeInfo",
})


class MarketData:
    def __init__(self, client: BinanceSpotClient, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.ttl_s = ttl_s
        self.clock = clock
        self._cache: dict[tuple[str, tuple[tuple[str, str], ...]], tuple[float, Any]] = {}
        self._lock = threading.Lock()
        self._inflight: dict[tuple[str, tuple[tuple[str, str], ...]], threading.Lock] = {}
        self.hits = 0
        self.misses = 0
        self.base_of: dict[str, str] = {}

    def get(self, path: str, params: list[tuple[str, str]], ttl_s: float | None = None) -> Any:
        """The exchange's answer for `path` with `params`, at most `ttl_s` old. Concurrent misses of one key wait
        for a single request instead of each sending their own."""
        key = (path, tuple(sorted(params)))
        ttl = self.ttl_s if ttl_s is None else ttl_s
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None and self.clock() - cached[0] <= ttl:
                self.hits += 1
                return cached[1]
            gate = self._inflight.setdefault(key, threading.Lock())
        with gate:
            with self._lock:
                cached = self._cache.get(key)
                if cached is not None and self.clock() - cached[0] <= ttl:
                    self.hits += 1
                    return cached[1]
            body = self.client.request("GET", path, dict(params))
            with self._lock:
                self.misses += 1
                self._cache[key] = (self.clock(), body)
            if path == "/api/v3/exchangeInfo" and isinstance(body, dict):
                self._learn_symbols(body)
            return body

    def _learn_symbols(self, info: dict[str, Any]) -> None:
        for entry in info.get("symbols") or []:
            if isinstance(entry, dict) and entry.get("symbol") and entry.get("baseAsset"):
                self.base_of[str(entry["symbol"])] = str(entry["baseAsset"])

    def exchange_info(self) -> dict[str, Any]:
        # Symbols and limits change rarely: a minute-old copy is fresh enough for the envelope's look-ups.
        body = self.get("/api/v3/exchangeInfo", [], ttl_s=max(self.ttl_s, 60.0))
        return body if isinstance(body, dict) else {}

    def base_asset(self, symbol: str) -> str | None:
        if symbol not in self.base_of:
            self.exchange_info()
        return self.base_of.get(symbol)

    def price(self, symbol: str) -> float:
        body = self.get("/api/v3/ticker/price", [("symbol", symbol)])
        return float(body["price"])
