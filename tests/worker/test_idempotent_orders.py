"""Unknown outcomes are resolved by client id: never a blind resend, never a network error read as 'absent'."""

from __future__ import annotations

import pytest

from keyguard.exchanges.binance_client import OutcomeUnknown
from keyguard.sandbox import Fault, SandboxHandle
from keyguard.worker.journal import OrderStatus
from keyguard.worker.orders import OrderIntent
from tests.worker.conftest import WorkerFactory, exchange_orders


def buy(qty: float = 0.001) -> OrderIntent:
    return OrderIntent("BTCUSDT", "BTC", "BUY", qty, reference_price=60000.0)


def test_dropped_response_after_execution_does_not_duplicate_order(sandbox: SandboxHandle,
                                                                    make_worker: WorkerFactory) -> None:
    worker = make_worker()
    worker.start()
    sandbox.set_faults(Fault(endpoint="POST /api/v3/order", kind="drop", when="after", times=3, hold_s=2.0))

    results = [worker.submit(buy()) for _ in range(3)]

    assert [r.status for r in results] == [OrderStatus.FILLED] * 3
    orders = exchange_orders(sandbox)
    assert len(orders) == 3, "each intent must exist exactly once at the exchange"
    assert {o.client_order_id for o in orders} == {r.client_order_id for r in results}
    assert all(r.attempts == 1 for r in results), "an executed order is found by its id, never resent"


def test_network_error_during_lookup_leaves_order_unknown_not_lost(sandbox: SandboxHandle,
                                                                   make_worker: WorkerFactory) -> None:
    worker = make_worker()
    worker.start()
    sandbox.set_faults(
        Fault(endpoint="POST /api/v3/order", kind="drop", when="after", times=1, hold_s=2.0),
        Fault(endpoint="GET /api/v3/order", kind="reset", when="before"),
    )

    result = worker.submit(buy())

    assert result.status is OrderStatus.UNKNOWN
    row = worker.journal.get(result.client_order_id)
    assert row is not None and row.status == OrderStatus.UNKNOWN and row.replaced_by is None
    assert len(exchange_orders(sandbox)) == 1, "no resend while the outcome is unknown"

    sandbox.set_faults()
    report = worker.reconcile()

    settled = worker.journal.get(result.client_order_id)
    assert settled is not None and settled.status == OrderStatus.FILLED
    assert [d.subject for d in report.of_kind("ORDER_SETTLED")] == [result.client_order_id]
    assert len(exchange_orders(sandbox)) == 1


def test_order_the_exchange_never_received_is_resent_under_a_linked_new_id(sandbox: SandboxHandle,
                                                                           make_worker: WorkerFactory) -> None:
    worker = make_worker()
    worker.start()
    sandbox.set_faults(Fault(endpoint="POST /api/v3/order", kind="reset", when="before", times=1))

    result = worker.submit(buy())

    assert result.status is OrderStatus.FILLED
    assert result.attempts == 2
    chain = worker.journal.chain(result.intent_id)
    assert [row.status for row in chain] == [OrderStatus.NOT_FOUND, OrderStatus.FILLED]
    assert chain[0].replaced_by == chain[1].client_order_id and chain[1].replaces == chain[0].client_order_id
    orders = exchange_orders(sandbox)
    assert [o.client_order_id for o in orders] == [chain[1].client_order_id]


def test_server_error_before_execution_is_looked_up_then_resent_once(sandbox: SandboxHandle,
                                                                     make_worker: WorkerFactory) -> None:
    worker = make_worker()
    worker.start()
    sandbox.set_faults(Fault(endpoint="POST /api/v3/order", kind="status", status=503, when="before", times=1))

    result = worker.submit(buy())

    assert result.status is OrderStatus.FILLED
    assert len(exchange_orders(sandbox)) == 1


def test_order_journaled_before_send_survives_as_unknown_and_is_adopted_after_restart(
    sandbox: SandboxHandle, make_worker: WorkerFactory
) -> None:
    worker = make_worker()
    worker.start()
    sandbox.set_faults(
        Fault(endpoint="POST /api/v3/order", kind="drop", when="after", times=1, hold_s=2.0),
        Fault(endpoint="GET /api/v3/order", kind="status", status=503, when="before"),
    )
    lost_sight = worker.submit(buy())
    sandbox.set_faults()

    restarted = make_worker()
    restarted.start()

    row = restarted.journal.get(lost_sight.client_order_id)
    assert row is not None and row.status == OrderStatus.FILLED
    # The look-up that settled it says nothing of commission: the order's trades do, and the position is what
    # the buy received.
    taker = sandbox.exchange.config.taker_commission
    assert row.commissions == {"BTC": pytest.approx(0.001 * taker)} and row.commission_qty == 0.001
    assert restarted.snapshot.positions["BTC"] == pytest.approx(0.001 * (1 - taker), abs=1e-12)


def test_partial_fill_is_tracked_and_acted_on_only_past_the_min_fill_ratio(sandbox: SandboxHandle,
                                                                          make_worker: WorkerFactory) -> None:
    worker = make_worker(risk={"max_order_notional": None, "max_order_share_of_portfolio": None,
                               "max_position": {}, "target_allocation": None})
    worker.start()
    best_ask = sandbox.exchange.book("BTCUSDT")[1][0][0]  # 0.5 BTC rests at this level

    result = worker.submit(OrderIntent("BTCUSDT", "BTC", "BUY", 0.8, order_type="LIMIT", price=best_ask))

    assert result.status is OrderStatus.PARTIALLY_FILLED
    assert result.executed_qty == 0.5
    row = worker.journal.get(result.client_order_id)
    assert row is not None and row.executed_qty == 0.5 and row.status == OrderStatus.PARTIALLY_FILLED
    assert result.actionable(min_fill_ratio=0.5) and not result.actionable(min_fill_ratio=0.7)
    assert worker.snapshot.positions["BTC"] == pytest.approx(0.5 * (1 - sandbox.exchange.config.taker_commission),
                                                             abs=1e-12)


def test_data_request_retries_through_transient_server_errors(sandbox: SandboxHandle,
                                                               make_worker: WorkerFactory) -> None:
    worker = make_worker()
    sandbox.exchange.set_price("BTCUSDT", 61234.5)
    sandbox.set_faults(Fault(endpoint="GET /api/v3/ticker/price", kind="status", status=503, times=2))

    assert worker.price("BTCUSDT") == 61234.5


def test_data_request_gives_up_after_its_attempts_with_the_last_error(sandbox: SandboxHandle,
                                                                       make_worker: WorkerFactory) -> None:
    worker = make_worker(data_retry={"attempts": 3, "base_s": 0.001, "cap_s": 0.002})
    sandbox.set_faults(Fault(endpoint="GET /api/v3/ticker/price", kind="status", status=503, times=3))

    with pytest.raises(OutcomeUnknown, match="HTTP 503"):
        worker.price("BTCUSDT")
    # Exactly three attempts were spent: a fourth would have succeeded, as the next call now does.
    assert worker.price("BTCUSDT") > 0


def test_request_held_in_flight_past_the_timeout_is_not_duplicated(sandbox: SandboxHandle,
                                                                   make_worker: WorkerFactory) -> None:
    # The client gives up at 0.3 s while the request is still on its way; -2013 is not final until the
    # exchange would refuse the original as too old (recvWindow 0.3 s), so the resend cannot double it.
    worker = make_worker(exchange={"timeout_s": 0.3, "recv_window_ms": 300})
    worker.start()
    sandbox.set_faults(Fault(endpoint="POST /api/v3/order", kind="latency", latency_ms=500, times=1))

    result = worker.submit(buy())

    assert result.status is OrderStatus.FILLED
    assert len(exchange_orders(sandbox)) == 1
