"""The shared limiter plugs into the exchange adapters: their calls charge the same per-IP budget, and a
429 one of them receives stops the worker's orders too."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from keyguard.exchanges import BinanceAdapter, Credentials, RateLimited, RequestLimiter, sandbox_adapter_kwargs
from keyguard.sandbox import SandboxConfig, SandboxHandle
from keyguard.worker.budget_store import FileBudgetStore
from keyguard.worker.limiter import RATE_BANNED, PoolSpec, RateLimitRefused, SharedRateLimiter


@pytest.fixture
def sandbox_config() -> SandboxConfig:
    return SandboxConfig(weight_limit=50, weight_window_s=3600)  # no window roll mid-test


def shared(tmp_path: Path) -> SharedRateLimiter:
    return SharedRateLimiter(FileBudgetStore(tmp_path / "budget"), egress_ip="127.0.0.1",
                             pools=(PoolSpec("REQUEST_WEIGHT", 3600, 50, "ip"),), headroom=1.0)


def test_adapter_calls_charge_the_shared_budget_and_a_429_stops_the_worker(
    sandbox: SandboxHandle, trading_key: dict[str, Any], tmp_path: Path
) -> None:
    adapter_limiter: RequestLimiter = shared(tmp_path)
    adapter = BinanceAdapter(Credentials(api_key=trading_key["api_key"], secret=trading_key["secret"]),
                             limiter=adapter_limiter, **sandbox_adapter_kwargs("binance", sandbox.url))
    worker_limiter = shared(tmp_path)

    adapter.server_time_ms()
    assert worker_limiter.usage()["binance:ip:127.0.0.1:REQUEST_WEIGHT:1H"]["used"] == 1

    with httpx.Client(base_url=sandbox.url) as other_tool:  # spends the IP's weight behind our back
        for _ in range(3):
            other_tool.get("/api/v3/exchangeInfo")
    with pytest.raises(RateLimited):
        adapter.server_time_ms()

    with pytest.raises(RateLimitRefused) as refused:
        worker_limiter.acquire("POST", "/api/v3/order", deadline_s=1.0)
    assert refused.value.code == RATE_BANNED


@pytest.mark.parametrize("sandbox_config", [SandboxConfig(sapi_uid_weight_limit=20_000)])
def test_an_accounts_uid_limit_429_does_not_stop_the_ips_other_requests(
    sandbox: SandboxHandle, trading_key: dict[str, Any], tmp_path: Path
) -> None:
    """Withdraw history costs 18,000 of the account's UID weight: a second read in the minute is refused for the
    account, and the worker's orders from the same IP go on (a ban-style back-off here would stop trading and
    containment alike)."""
    limiter = SharedRateLimiter(FileBudgetStore(tmp_path / "budget"), egress_ip="127.0.0.1", headroom=1.0)
    adapter = BinanceAdapter(Credentials(api_key=trading_key["api_key"], secret=trading_key["secret"]),
                             limiter=limiter, **sandbox_adapter_kwargs("binance", sandbox.url))
    since_ms = int((time.time() - 3600) * 1000)
    assert adapter.withdraw_history(since_ms) == []
    with pytest.raises(RateLimited):
        adapter.withdraw_history(since_ms)
    permit = limiter.acquire("POST", "/api/v3/order", deadline_s=0.5)  # not RATE_BANNED
    assert permit is not None
    adapter.server_time_ms()
