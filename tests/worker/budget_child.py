"""Code run in separate processes by test_shared_budget: each builds its own limiter on the shared file."""

from __future__ import annotations

import time
from typing import Any

from keyguard.exchanges.binance_client import BinanceSpotClient, RateLimited
from keyguard.exchanges.budget import PoolSpec, SharedRateLimiter
from keyguard.exchanges.budget_store import FileBudgetStore


def _client(url: str, key: str, secret: str, budget_path: str, weight_limit: int, window_s: float
            ) -> BinanceSpotClient:
    # This process's view of the limit is right; what it cannot know is another program's usage on the IP.
    limiter = SharedRateLimiter(FileBudgetStore(budget_path), egress_ip="127.0.0.1",
                                pools=(PoolSpec("REQUEST_WEIGHT", window_s, weight_limit, "ip"),),
                                headroom=1.0, default_deadline_s=15.0)
    return BinanceSpotClient(url, key, secret, limiter, timeout_s=5.0)


def first_caller(url: str, key: str, secret: str, budget_path: str, weight_limit: int, window_s: float,
                 go: Any, out: Any) -> None:
    client = _client(url, key, secret, budget_path, weight_limit, window_s)
    out.put(("ready", None, 0.0))
    go.wait(30)
    try:
        client.account()
        out.put(("first", "no rate limit", 0.0))
    except RateLimited as exc:
        assert client.limiter is not None
        out.put(("first", exc.status, client.limiter.banned_until()))


def second_caller(url: str, key: str, secret: str, budget_path: str, weight_limit: int, window_s: float,
                  go: Any, out: Any) -> None:
    client = _client(url, key, secret, budget_path, weight_limit, window_s)
    out.put(("ready", None, 0.0))
    go.wait(30)
    try:
        client.account()
        out.put(("second", 200, time.time()))
    except RateLimited as exc:
        out.put(("second", exc.status, time.time()))


def grab_until_refused(backend: str, path: str, go: Any, out: Any) -> None:
    """Acquire weight-1 calls from a 600-weight hour pool until refused; report how many were granted."""
    from keyguard.exchanges.budget import RateLimitRefused
    from keyguard.exchanges.budget_store import open_budget_store

    limiter = SharedRateLimiter(open_budget_store(backend, path), egress_ip="127.0.0.1",
                                pools=(PoolSpec("REQUEST_WEIGHT", 3600, 600, "ip"),), headroom=1.0)
    out.put("ready")
    go.wait(30)
    granted = 0
    while True:
        try:
            limiter.acquire("GET", "/api/v3/time", deadline_s=0)
        except RateLimitRefused:
            break
        granted += 1
    out.put(granted)
