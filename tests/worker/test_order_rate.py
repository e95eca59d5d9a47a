"""The account's ORDERS pool comes from the exchange's own rateLimits: an order that does not fit is refused
with a code before it is sent, instead of earning a -1015."""

from __future__ import annotations

import pytest

from keyguard.exchanges.budget import RATE_DEADLINE
from keyguard.sandbox import SandboxConfig, SandboxHandle
from keyguard.worker.journal import OrderStatus
from keyguard.worker.orders import OrderIntent
from tests.worker.conftest import WorkerFactory


@pytest.fixture
def sandbox_config() -> SandboxConfig:
    return SandboxConfig(orders_short_limit=3, orders_short_window_s=3600)  # no window roll mid-test


def test_order_over_the_account_order_rate_is_refused_unsent(sandbox: SandboxHandle,
                                                              make_worker: WorkerFactory) -> None:
    worker = make_worker(limiter={"headroom": 1.0, "deadline_s": 0.5})
    worker.start()

    results = [worker.submit(OrderIntent("BTCUSDT", "BTC", "BUY", 0.001, reference_price=60000.0))
               for _ in range(4)]

    assert [r.status for r in results[:3]] == [OrderStatus.FILLED] * 3
    assert results[3].status is OrderStatus.REJECTED and results[3].refusal_code == RATE_DEADLINE
    assert len(sandbox.exchange.orders_of("main")) == 3
