"""One limiter for every exchange call: the key adapters' calls and the worker's orders charge the same per-IP
budget, the exchange's usage headers correct it whoever's call brought them, and a 429 one of them receives stops
the others too."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from keyguard.exchanges import BinanceAdapter, Credentials, KeyDeclaration, RateLimited, sandbox_adapter_kwargs
from keyguard.exchanges.budget import RATE_BANNED, RATE_DEADLINE, PoolSpec, RateLimitRefused, SharedRateLimiter
from keyguard.exchanges.budget_store import FileBudgetStore
from keyguard.sandbox import SandboxConfig, SandboxHandle
from keyguard.worker.journal import OrderStatus
from keyguard.worker.orders import OrderIntent
from tests.worker.conftest import WorkerFactory

BOT = KeyDeclaration(id="bot", exchange="binance", purpose="execution", services=["worker"])


@pytest.fixture
def sandbox_config() -> SandboxConfig:
    return SandboxConfig(weight_limit=50, weight_window_s=3600)  # no window roll mid-test


def shared(tmp_path: Path) -> SharedRateLimiter:
    return SharedRateLimiter(FileBudgetStore(tmp_path / "budget"), egress_ip="127.0.0.1",
                             pools=(PoolSpec("REQUEST_WEIGHT", 3600, 50, "ip"),), headroom=1.0)


def test_adapter_calls_charge_the_shared_budget_and_a_429_stops_the_worker(
    sandbox: SandboxHandle, trading_key: dict[str, Any], tmp_path: Path
) -> None:
    adapter_limiter = shared(tmp_path)
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


@pytest.mark.parametrize("sandbox_config", [SandboxConfig(weight_limit=400, weight_window_s=3600)])
def test_the_inspections_reads_and_the_workers_orders_spend_one_budget_that_the_exchange_corrects(
    sandbox: SandboxHandle, trading_key: dict[str, Any], make_worker: WorkerFactory
) -> None:
    worker = make_worker(limiter={"headroom": 1.0, "deadline_s": 0.5})
    worker.start()  # the pools are the exchange's own: REQUEST_WEIGHT 400 per hour
    limiter = worker.client.limiter
    assert limiter is not None
    adapter = BinanceAdapter(Credentials(api_key=trading_key["api_key"], secret=trading_key["secret"]),
                             limiter=limiter, **sandbox_adapter_kwargs("binance", sandbox.url))
    [weight] = [k for k in limiter.usage() if "REQUEST_WEIGHT" in k]

    def used() -> float:
        return limiter.usage()[weight]["used"]

    start = used()
    assert adapter.inspect(BOT).inspection_error is None  # GET /api/v3/time, weight 1 (apiRestrictions: SAPI)
    assert used() == start + 1
    first = worker.submit(OrderIntent("BTCUSDT", "BTC", "BUY", 0.001, reference_price=60000.0))
    assert first.status is OrderStatus.FILLED
    assert used() == start + 2

    with httpx.Client(base_url=sandbox.url) as other_tool:  # spends the IP's weight behind our back, to 399
        while int(other_tool.get("/api/v3/time").headers["X-MBX-USED-WEIGHT-1H"]) < 399:
            pass
    assert used() == start + 2
    adapter.server_time_ms()  # the exchange's used-weight header puts the one budget right: 400 of 400
    assert used() == 400

    refused = worker.submit(OrderIntent("BTCUSDT", "BTC", "BUY", 0.001, reference_price=60000.0))
    assert refused.status is OrderStatus.REJECTED and refused.refusal_code == RATE_DEADLINE
    assert len(sandbox.exchange.orders_of("main")) == 1  # refused before it was sent, not by a 429
