"""The limiter's pure arithmetic and its shared stores, driven by a fake clock."""

from __future__ import annotations

from pathlib import Path

import pytest

from keyguard.exchanges.budget import (
    RATE_BANNED,
    RATE_COST_EXCEEDS_BUDGET,
    RATE_DEADLINE,
    PoolSpec,
    RateLimitRefused,
    SharedRateLimiter,
    pools_from_exchange_info,
)
from keyguard.exchanges.budget_store import FileBudgetStore, InMemoryBudgetStore, SqliteBudgetStore
from keyguard.exchanges.endpoint_costs import endpoint_cost


class FakeClock:
    def __init__(self, now: float = 1_000_040.0) -> None:  # 20 s into a 60 s window
        self.now = now
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


POOLS = (
    PoolSpec("REQUEST_WEIGHT", 60, 100, "ip"),
    PoolSpec("RAW_REQUESTS", 300, 1000, "ip"),
    PoolSpec("ORDERS", 10, 5, "account"),
    PoolSpec("ORDERS", 86400, 1000, "account"),
)


def limiter(clock: FakeClock, store: object | None = None, headroom: float = 1.0) -> SharedRateLimiter:
    return SharedRateLimiter(store or InMemoryBudgetStore(), egress_ip="127.0.0.1", account="acct", pools=POOLS,
                             headroom=headroom, clock=clock, sleep=clock.sleep, default_deadline_s=5.0)


def used(lim: SharedRateLimiter) -> dict[str, float]:
    return {key: u["used"] for key, u in lim.usage().items()}


def test_order_charges_weight_raw_requests_and_both_order_pools_at_once() -> None:
    lim = limiter(FakeClock())
    lim.acquire("POST", "/api/v3/order", {"symbol": "BTCUSDT"})
    assert used(lim) == {
        "binance:ip:127.0.0.1:REQUEST_WEIGHT:1M": 1, "binance:ip:127.0.0.1:RAW_REQUESTS:5M": 1,
        "binance:acct:acct:ORDERS:10S": 1, "binance:acct:acct:ORDERS:1D": 1,
    }


def test_parameter_dependent_weights_follow_binance_documentation() -> None:
    assert [endpoint_cost("GET", "/api/v3/depth").weight_for({"limit": n}) for n in (5, 100, 500, 1000, 5000)] == [
        5, 5, 25, 50, 250]
    assert endpoint_cost("GET", "/api/v3/openOrders").weight_for({"symbol": "BTCUSDT"}) == 6
    assert endpoint_cost("GET", "/api/v3/openOrders").weight_for({}) == 80
    assert endpoint_cost("GET", "/api/v3/ticker/price").weight_for({"symbol": "BTCUSDT"}) == 2
    assert endpoint_cost("GET", "/api/v3/ticker/price").weight_for({}) == 4
    assert endpoint_cost("GET", "/api/v3/order").weight_for({}) == 4
    assert endpoint_cost("GET", "/api/v3/somethingNew").weight_for({}) == 20, "unknown endpoints are never free"


def test_a_full_pool_blocks_the_call_without_charging_the_others() -> None:
    clock = FakeClock()
    lim = limiter(clock)
    for _ in range(5):
        lim.acquire("POST", "/api/v3/order")
    before = used(lim)
    with pytest.raises(RateLimitRefused) as refused:
        lim.acquire("POST", "/api/v3/order", deadline_s=0.0)
    assert refused.value.code == RATE_DEADLINE
    assert used(lim) == before


def test_waits_for_the_window_to_roll_when_the_deadline_allows() -> None:
    clock = FakeClock()
    lim = limiter(clock)
    lim.acquire("GET", "/api/v3/account", deadline_s=1)  # 20
    for _ in range(4):
        lim.acquire("GET", "/api/v3/account")  # 100 of 100
    permit = lim.acquire("GET", "/api/v3/account", deadline_s=60.0)
    assert permit.sent_at >= 1_000_080.0, "sent only once the 1-minute window rolled"
    assert used(lim)["binance:ip:127.0.0.1:REQUEST_WEIGHT:1M"] == 20


def test_headroom_keeps_usage_under_the_configured_share() -> None:
    lim = limiter(FakeClock(), headroom=0.9)
    granted = 0
    with pytest.raises(RateLimitRefused):
        while True:
            lim.acquire("GET", "/api/v3/ticker/price", {"symbol": "BTCUSDT"}, deadline_s=0)
            granted += 1
    assert granted == 45  # 45 * weight 2 = 90 of 100


def test_cost_above_a_whole_window_is_refused_immediately() -> None:
    lim = limiter(FakeClock())
    with pytest.raises(RateLimitRefused) as refused:
        lim.acquire("GET", "/api/v3/depth", {"limit": 5000})  # weight 250 > 100
    assert refused.value.code == RATE_COST_EXCEEDS_BUDGET


def test_usage_header_raises_our_count_to_what_the_exchange_saw() -> None:
    clock = FakeClock()
    lim = limiter(clock)
    permit = lim.acquire("GET", "/api/v3/order")
    lim.observe(permit, 200, {"X-MBX-USED-WEIGHT-1M": "97", "Content-Type": "application/json"})
    assert used(lim)["binance:ip:127.0.0.1:REQUEST_WEIGHT:1M"] == 97
    with pytest.raises(RateLimitRefused):
        lim.acquire("GET", "/api/v3/order", deadline_s=0)


def test_usage_header_never_lowers_our_count() -> None:
    lim = limiter(FakeClock())
    permits = [lim.acquire("GET", "/api/v3/order") for _ in range(3)]  # 12 charged, two still in flight
    lim.observe(permits[0], 200, {"X-MBX-USED-WEIGHT-1M": "4"})
    assert used(lim)["binance:ip:127.0.0.1:REQUEST_WEIGHT:1M"] == 12


def test_header_from_a_window_that_has_rolled_is_ignored() -> None:
    clock = FakeClock(1_000_079.9)
    lim = limiter(clock)
    permit = lim.acquire("GET", "/api/v3/order")
    clock.now = 1_000_080.2
    lim.observe(permit, 200, {"X-MBX-USED-WEIGHT-1M": "99"})
    assert used(lim)["binance:ip:127.0.0.1:REQUEST_WEIGHT:1M"] == 0


def test_order_count_headers_correct_the_account_pools() -> None:
    lim = limiter(FakeClock())
    permit = lim.acquire("POST", "/api/v3/order")
    lim.observe(permit, 200, {"X-MBX-ORDER-COUNT-10S": "5", "X-MBX-ORDER-COUNT-1D": "300"})
    assert used(lim)["binance:acct:acct:ORDERS:10S"] == 5
    assert used(lim)["binance:acct:acct:ORDERS:1D"] == 300


@pytest.mark.parametrize("status", [429, 418])
def test_rate_limit_response_stops_the_ip_until_retry_after(status: int) -> None:
    clock = FakeClock()
    lim = limiter(clock)
    permit = lim.acquire("GET", "/api/v3/time")
    lim.observe(permit, status, {"Retry-After": "7"})
    with pytest.raises(RateLimitRefused) as refused:
        lim.acquire("GET", "/api/v3/time", deadline_s=3)
    assert refused.value.code == RATE_BANNED
    late = lim.acquire("GET", "/api/v3/time", deadline_s=10)
    assert late.sent_at >= permit.sent_at + 7


def test_order_count_429_holds_orders_but_not_the_ip() -> None:
    clock = FakeClock()
    lim = limiter(clock)
    permit = lim.acquire("POST", "/api/v3/order")
    lim.observe(permit, 429, {"X-MBX-ORDER-COUNT-10S": "6", "X-MBX-ORDER-COUNT-1D": "6", "Retry-After": "4"})

    assert lim.banned_until() == 0.0
    lim.acquire("GET", "/api/v3/account", deadline_s=0)  # other requests go on
    with pytest.raises(RateLimitRefused) as refused:
        lim.acquire("POST", "/api/v3/order", deadline_s=1)
    assert refused.value.code == RATE_DEADLINE


def test_ban_without_retry_after_lasts_binance_minimum_of_two_minutes() -> None:
    clock = FakeClock()
    lim = limiter(clock)
    lim.observe(None, 418, {})
    assert lim.banned_until() == pytest.approx(clock.now + 120)


def test_pools_are_built_from_exchange_info_rate_limits() -> None:
    pools = pools_from_exchange_info([
        {"rateLimitType": "REQUEST_WEIGHT", "interval": "SECOND", "intervalNum": 5, "limit": 600},
        {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
        {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
        {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
    ])
    assert PoolSpec("REQUEST_WEIGHT", 5.0, 600, "ip") in pools
    assert PoolSpec("ORDERS", 86400.0, 200000, "account") in pools
    lim = SharedRateLimiter(InMemoryBudgetStore(), pools=pools, headroom=1.0)
    permit = lim.acquire("GET", "/api/v3/order")
    lim.observe(permit, 200, {"X-MBX-USED-WEIGHT-5S": "321"})
    assert lim.usage()["binance:ip:127.0.0.1:REQUEST_WEIGHT:5S"]["used"] == 321


@pytest.mark.parametrize("store_type", [FileBudgetStore, SqliteBudgetStore])
def test_two_store_handles_on_one_file_share_one_budget(tmp_path: Path, store_type: type) -> None:
    clock = FakeClock()
    first = limiter(clock, store_type(tmp_path / "budget"))
    second = limiter(clock, store_type(tmp_path / "budget"))
    for _ in range(3):
        first.acquire("GET", "/api/v3/account")  # 60
    second.acquire("GET", "/api/v3/account")
    second.acquire("GET", "/api/v3/account")  # 100 of 100
    with pytest.raises(RateLimitRefused):
        second.acquire("GET", "/api/v3/account", deadline_s=0)
    first.observe(None, 429, {"Retry-After": "3"})
    assert second.banned_until() == pytest.approx(clock.now + 3)


def test_workers_with_separate_state_dirs_share_the_host_budget_for_their_ip(tmp_path: Path) -> None:
    from keyguard.worker.config import WorkerConfig
    from keyguard.worker.runtime import build_worker

    workers = [build_worker(WorkerConfig.model_validate({"state_dir": str(tmp_path / name),
                                                        "limiter": {"egress_ip": "127.0.0.77"}}),
                            "key-not-used", "secret-not-used", "http://127.0.0.1:9") for name in ("a", "b")]
    a, b = (w.client.limiter for w in workers)
    assert a is not None and b is not None
    key = "binance:ip:127.0.0.77:REQUEST_WEIGHT:1M"
    before = b.usage()[key]["used"]
    a.acquire("GET", "/api/v3/account")
    after = b.usage()[key]["used"]
    for w in workers:
        w.client.close()
    # The same window (or a fresh one if the minute rolled in between, where the charge is all there is).
    assert after - before == 20 or after == 20


def test_torn_budget_file_is_rebuilt_instead_of_failing_every_request(tmp_path: Path) -> None:
    path = tmp_path / "budget"
    path.write_bytes(b'{"p":{"binance:ip:127.0.0.1:REQUEST_WEIGHT:1M":[1000020.0,5]},"b":{}}trailing')
    clock = FakeClock()
    lim = limiter(clock, FileBudgetStore(path))
    permit = lim.acquire("GET", "/api/v3/order")
    lim.observe(permit, 200, {"X-MBX-USED-WEIGHT-1M": "64"})
    assert used(lim)["binance:ip:127.0.0.1:REQUEST_WEIGHT:1M"] == 64


def test_a_handle_sees_what_another_wrote_after_its_own_last_write(tmp_path: Path) -> None:
    path = tmp_path / "budget"
    clock = FakeClock()
    first = limiter(clock, FileBudgetStore(path))
    second = limiter(clock, FileBudgetStore(path))
    weight = "binance:ip:127.0.0.1:REQUEST_WEIGHT:1M"
    first.acquire("GET", "/api/v3/account")  # 20; the file holds what `first` wrote last
    first.observe(None, 200, {"X-MBX-USED-WEIGHT-1M": "12"})  # under our count: nothing changes
    second.observe(None, 200, {"X-MBX-USED-WEIGHT-1M": "90"})  # the exchange saw more: another process writes it
    with pytest.raises(RateLimitRefused):
        first.acquire("GET", "/api/v3/account", deadline_s=0)  # 90 + 20 > 100
    for _ in range(5):  # 1 each, taking turns, to 100
        first.acquire("GET", "/api/v3/time", deadline_s=0)
        second.acquire("GET", "/api/v3/time", deadline_s=0)
    assert used(first)[weight] == used(second)[weight] == 100
    for lim in (first, second):
        with pytest.raises(RateLimitRefused):
            lim.acquire("GET", "/api/v3/time", deadline_s=0)
    # Torn after `first` last wrote it (a crash between write and truncate): rebuilt, as any torn file is.
    path.write_bytes(path.read_bytes() + b"tail")
    first.acquire("GET", "/api/v3/account")
    assert used(second)[weight] == 20
