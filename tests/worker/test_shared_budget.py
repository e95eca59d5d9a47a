"""A 429 or 418 seen by one process stops every process on the IP until Retry-After (real subprocesses)."""

from __future__ import annotations

import math
import multiprocessing
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from keyguard.sandbox import SandboxConfig, SandboxHandle
from tests.worker import budget_child

WINDOW_S = 3
WEIGHT_LIMIT = 100
# Requests ignoring a 429 before the exchange bans (Binance: "repeatedly violating rate limits").
VIOLATIONS = 3


@pytest.fixture
def sandbox_config() -> SandboxConfig:
    # The ban outlasts the window, so after Retry-After the budget is fresh again. No in-flight grace: the rogue
    # below ignores its 429 straight away, and its VIOLATIONS requests after it must earn the ban.
    return SandboxConfig(weight_limit=WEIGHT_LIMIT, weight_window_s=WINDOW_S, ban_base_s=WINDOW_S * 1.5,
                         ban_grace_s=0, ban_after_violations=VIOLATIONS)


def exhaust_weight(sandbox: SandboxHandle, then_send: int) -> list[int]:
    """Another program on the same IP (no Keyguard limiter) uses the budget up: 96 of 100, plus extra calls."""
    # Start at the beginning of a window so everything below lands in one window.
    time.sleep(WINDOW_S - (time.time() % WINDOW_S) + 0.02)
    statuses = []
    with httpx.Client(base_url=sandbox.url) as rogue:
        for _ in range(4):
            statuses.append(rogue.get("/api/v3/exchangeInfo").status_code)  # 20 each
        for _ in range(8):
            statuses.append(rogue.get("/api/v3/ticker/price", params={"symbol": "BTCUSDT"}).status_code)  # 2
        for _ in range(then_send):
            statuses.append(rogue.get("/api/v3/exchangeInfo").status_code)
    return statuses


@pytest.mark.parametrize("status", [429, 418])
def test_rate_limit_seen_by_one_process_stops_every_process_on_the_ip(
    sandbox: SandboxHandle, trading_key: dict[str, Any], tmp_path: Path, status: int
) -> None:
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    go_first, go = ctx.Event(), ctx.Event()
    args = (sandbox.url, trading_key["api_key"], trading_key["secret"], str(tmp_path / "budget"), WEIGHT_LIMIT,
            float(WINDOW_S))
    second = ctx.Process(target=budget_child.second_caller, args=(*args, go, out))
    first = ctx.Process(target=budget_child.first_caller, args=(*args, go_first, out))
    for proc in (first, second):
        proc.start()
    # Both processes have built their limiters before the window is spent.
    assert [out.get(timeout=60)[0] for _ in range(2)] == ["ready", "ready"]
    try:
        # 429 case: the rogue stops just under the limit, so the worker's own call is the one refused.
        # 418 case: the rogue keeps going past its 429, is refused again, and earns the IP a ban first.
        rogue_statuses = exhaust_weight(sandbox, then_send=0 if status == 429 else 1 + VIOLATIONS)
        if status == 418:
            assert rogue_statuses[-1 - VIOLATIONS:] == [429] * VIOLATIONS + [418]
        go_first.set()
        who, seen, banned_until = out.get(timeout=30)
        assert (who, seen) == ("first", status)
        assert banned_until > time.time()
        bans_before = sandbox.exchange.bans.standing("127.0.0.1").bans
        go.set()
        who, second_status, finished_at = out.get(timeout=30)
        first.join(30)
        second.join(30)
    finally:
        for proc in (first, second):
            if proc.is_alive():
                proc.kill()
    assert (who, second_status) == ("second", 200), "the other process waited out the back-off and succeeded"
    assert finished_at >= banned_until
    # Every request sent during a back-off counts towards a ban, and the ban did not grow: none was sent.
    assert sandbox.exchange.bans.standing("127.0.0.1").bans == bans_before
    assert math.isfinite(banned_until)


@pytest.mark.parametrize("backend", ["file", "sqlite"])
def test_concurrent_processes_never_overspend_the_shared_budget(tmp_path: Path, backend: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    out, go = ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=budget_child.grab_until_refused, args=(backend, str(tmp_path / "budget"), go, out))
             for _ in range(3)]
    for proc in procs:
        proc.start()
    try:
        assert [out.get(timeout=60) for _ in procs] == ["ready"] * 3
        go.set()
        granted = [out.get(timeout=60) for _ in procs]
    finally:
        for proc in procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
    assert sum(granted) == 600, f"grants per process {granted} must add up to the budget exactly"
