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


# exchangeInfo is read for the envelope's symbol look-ups at most this stale (it changes rarely).
EXCHANGE_INFO_TTL_S = 60.0
# Expired answers are dropped at most this often (each pass walks the cache once).
PRUNE_EVERY_S = 1.0

Key = tuple[str, tuple[tuple[str, str], ...]]


class MarketData:
    def __init__(self, client: BinanceSpotClient, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.ttl_s = ttl_s
        self.clock = clock
        # key -> (fetched at, dropped after, body): only answers that may still be served are kept. A bot paging
        # through klines or trades asks with new parameters every call; kept for ever, each answer (up to 1000
        # candles) would grow the gateway without bound.
        self._cache: dict[Key, tuple[float, float, Any]] = {}
        self._lock = threading.Lock()
        # key -> [its lock, how many requests hold or wait for it]: dropped when none do.
        self._inflight: dict[Key, list[Any]] = {}
        self._pruned_at = clock()
        self.hits = 0
        self.misses = 0
        self.base_of: dict[str, str] = {}
        self.quote_of: dict[str, str] = {}

    def _fresh(self, key: Key, ttl: float) -> Any | None:
        """The cached answer for `key` if it is at most `ttl` old (call under the lock)."""
        cached = self._cache.get(key)
        if cached is not None and self.clock() - cached[0] <= ttl:
            self.hits += 1
            return cached
        return None

    def get(self, path: str, params: list[tuple[str, str]], ttl_s: float | None = None) -> Any:
        """The exchange's answer for `path` with `params`, at most `ttl_s` old. Concurrent misses of one key wait
        for a single request instead of each sending their own."""
        key = (path, tuple(sorted(params)))
        ttl = self.ttl_s if ttl_s is None else ttl_s
        with self._lock:
            cached = self._fresh(key, ttl)
            if cached is not None:
                return cached[2]
            gate = self._inflight.get(key)
            if gate is None:
                gate = self._inflight[key] = [threading.Lock(), 0]
            gate[1] += 1
        try:
            with gate[0]:
                with self._lock:
                    cached = self._fresh(key, ttl)
                if cached is not None:
                    return cached[2]
                body = self.client.request("GET", path, dict(params))
                with self._lock:
                    self.misses += 1
                    now = self.clock()
                    keep = max(self.ttl_s, ttl, EXCHANGE_INFO_TTL_S if path == "/api/v3/exchangeInfo" else 0.0)
                    self._cache[key] = (now, now + keep, body)
                    if now - self._pruned_at >= PRUNE_EVERY_S:
                        self._pruned_at = now
                        for stale in [k for k, (_, until, _) in self._cache.items() if until < now]:
                            del self._cache[stale]
        finally:
            with self._lock:
                gate[1] -= 1
                if not gate[1]:
                    del self._inflight[key]
        if path == "/api/v3/exchangeInfo" and isinstance(body, dict):
            self._learn_symbols(body)
        return body

    def _learn_symbols(self, info: dict[str, Any]) -> None:
        for entry in info.get("symbols") or []:
            if isinstance(entry, dict) and entry.get("symbol") and entry.get("baseAsset"):
                self.base_of[str(entry["symbol"])] = str(entry["baseAsset"])
                if entry.get("quoteAsset"):
                    self.quote_of[str(entry["symbol"])] = str(entry["quoteAsset"])

    def exchange_info(self) -> dict[str, Any]:
        body = self.get("/api/v3/exchangeInfo", [], ttl_s=max(self.ttl_s, EXCHANGE_INFO_TTL_S))
        return body if isinstance(body, dict) else {}

    def base_asset(self, symbol: str) -> str | None:
        if symbol not in self.base_of:
            self.exchange_info()
        return self.base_of.get(symbol)

    def cached_price(self, symbol: str) -> tuple[float, float] | None:
        """The price `price` would answer now without asking the exchange, and the time (this cache's clock) until
        which it would: None when it would ask."""
        with self._lock:
            cached = self._cache.get(("/api/v3/ticker/price", (("symbol", symbol),)))
        if cached is None or self.clock() - cached[0] > self.ttl_s:
            return None
        try:
            return float(cached[2]["price"]), cached[0] + self.ttl_s
        except (KeyError, TypeError, ValueError):
            return None

    def price(self, symbol: str) -> float:
        body = self.get("/api/v3/ticker/price", [("symbol", symbol)])
        return float(body["price"])
