"""The clock offset is measured on the wire: a wait for rate budget before the time call is not network delay,
so it never pushes signed timestamps ahead of the exchange's clock (Binance refuses those with -1021)."""

from __future__ import annotations

import math
import time
from typing import Any

from keyguard.exchanges.binance_client import BinanceSpotClient
from keyguard.exchanges.budget import REQUEST_WEIGHT, PoolSpec, SharedRateLimiter
from keyguard.exchanges.budget_store import open_budget_store
from keyguard.sandbox import SandboxHandle


def test_a_time_call_that_waited_for_budget_still_measures_the_true_offset(sandbox: SandboxHandle) -> None:
    key: dict[str, Any] = sandbox.create_key(flags={"enableReading": True})
    window = 3.0
    # 21 weight per 3 s window: exchangeInfo (20) and a time call (1) spend it, so the next time call waits.
    limiter = SharedRateLimiter(open_budget_store("memory", ""), pools=(PoolSpec(REQUEST_WEIGHT, window, 21),),
                                headroom=1.0)
    client = BinanceSpotClient(sandbox.url, key["api_key"], key["secret"], limiter)
    time.sleep(math.ceil(time.time() / window) * window - time.time() + 0.05)  # just past a window's start
    client.exchange_info()
    client.server_time_ms()  # this window is spent

    started = time.monotonic()
    offset = client.sync_time()
    waited = time.monotonic() - started

    assert waited > 2.0, "the time call waited for the next window"
    assert abs(offset) < 200, f"offset {offset} ms: the budget wait was taken for network delay"
    # ... and a signed call right after is accepted (no -1021).
    assert "balances" in client.request("GET", "/api/v3/account", signed=True)
    client.close()
