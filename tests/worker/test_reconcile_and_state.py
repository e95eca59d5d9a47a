"""Reconciliation reports what the journal and the exchange disagree on; live state follows the contract."""

from __future__ import annotations

import hashlib
import hmac
import random
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from typer.testing import CliRunner

from keyguard.errors import ConfigError
from keyguard.policy.documents import schema_dir, validate_document
from keyguard.sandbox import SandboxHandle
from keyguard.worker.cli import app
from keyguard.worker.config import load_worker_config
from keyguard.worker.journal import OrderStatus
from keyguard.worker.orders import OrderIntent, OrderResult
from keyguard.worker.reconcile import ReconciliationReport
from keyguard.worker.reconnect import ReconnectPolicy, run_with_reconnect
from keyguard.worker.runtime import ExecutionWorker
from tests.worker.conftest import WorkerFactory


def place_by_hand(sandbox: SandboxHandle, key: dict[str, Any], **params: Any) -> dict[str, Any]:
    """Someone else (a person in the exchange UI, another bot) places an order with the same key."""
    query = urlencode({**params, "timestamp": int(time.time() * 1000)})
    sig = hmac.new(key["secret"].encode(), query.encode(), hashlib.sha256).hexdigest()
    response = httpx.post(f"{sandbox.url}/api/v3/order?{query}&signature={sig}",
                          headers={"X-MBX-APIKEY": key["api_key"]})
    response.raise_for_status()
    return response.json()


def test_order_unknown_to_the_journal_is_adopted_as_external_and_reported(
    sandbox: SandboxHandle, make_worker: WorkerFactory, trading_key: dict[str, Any]
) -> None:
    worker = make_worker()
    worker.start()
    place_by_hand(sandbox, trading_key, symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC",
                  quantity="0.002", price="50000", newClientOrderId="manual-1")

    report = worker.reconcile()

    assert [d.subject for d in report.of_kind("EXTERNAL_ORDER")] == ["manual-1"]
    row = worker.journal.get("manual-1")
    assert row is not None and row.origin == "external" and row.status == OrderStatus.NEW
    assert [i.kind for i in worker.journal.issues()] == ["EXTERNAL_ORDER"]


def test_fills_outside_the_journal_show_up_as_a_balance_mismatch(
    sandbox: SandboxHandle, make_worker: WorkerFactory, trading_key: dict[str, Any]
) -> None:
    worker = make_worker()
    worker.start()
    worker.submit(OrderIntent("BTCUSDT", "BTC", "BUY", 0.001, reference_price=60000.0))
    assert worker.reconcile().discrepancies == []

    place_by_hand(sandbox, trading_key, symbol="BTCUSDT", side="SELL", type="MARKET", quantity="0.003")
    report = worker.reconcile()

    assert [d.subject for d in report.of_kind("BALANCE_MISMATCH")] == ["BTC"]


def test_live_state_is_the_execution_policy_input(sandbox: SandboxHandle, make_worker: WorkerFactory) -> None:
    worker = make_worker(stage="sandbox")
    worker.start()
    worker.submit(OrderIntent("BTCUSDT", "BTC", "BUY", 0.001, reference_price=60000.0))

    doc = worker.live_state().to_policy_input()

    assert doc["kind"] == "execution"
    assert doc["config"]["stage"] == "sandbox" and doc["config"]["rate_limit_budget_fraction"] == 0.9
    # The position is what the buy received: 0.001 BTC less the exchange's taker commission, paid in BTC.
    taker = sandbox.exchange.config.taker_commission
    assert doc["state"]["positions"] == {"BTC": pytest.approx(0.001 * (1 - taker), abs=1e-12)}
    assert doc["state"]["orders_last_minute"] == 1
    assert doc["state"]["used_weight_1m"] > 0 and doc["state"]["weight_limit_1m"] == 6000
    assert doc["state"]["trading_state"] == "ACTIVE" and doc["state"]["kill_switch_engaged"] is False
    assert doc["golive"]["key_permissions"] == {"read": True, "trade": True, "transfer": False, "withdraw": False}
    if (schema_dir() / "execution.schema.json").exists():
        assert validate_document(doc) == "execution"


def test_go_live_history_records_each_stage_the_worker_ran_in(make_worker: WorkerFactory) -> None:
    make_worker(stage="sandbox").start()
    make_worker(stage="sandbox").start()
    promoted = make_worker(stage="paper")
    promoted.start()

    history = promoted.live_state().to_policy_input()["golive"]["history"]

    assert [h["stage"] for h in history] == ["sandbox", "paper"]
    assert all(h["entered_at"].endswith("Z") for h in history)


def test_worker_run_command_trades_against_an_in_process_sandbox(tmp_path: Path) -> None:
    config = tmp_path / "worker.yaml"
    config.write_text("state_dir: state\nreconcile_interval_s: 0.2\nlimiter: {budget_path: budget}\n"
                      "strategy: {orders: 3, interval_s: 0.05, quote_per_order: 60}\n")

    result = CliRunner().invoke(app, ["run", "--config", str(config)])

    assert result.exit_code == 0, result.output
    assert result.output.count("FILLED") == 3
    assert (tmp_path / "state" / "journal.db").exists()


def test_bad_worker_config_names_the_field_and_what_is_allowed(tmp_path: Path) -> None:
    config = tmp_path / "worker.yaml"
    config.write_text("stage: moon-live\nlimiter: {headroom: 1.5}\n")
    with pytest.raises(ConfigError) as err:
        load_worker_config(config)
    message = str(err.value)
    assert str(config) in message and "stage" in message and "limiter.headroom" in message


def test_sandbox_stage_refuses_a_non_loopback_exchange(tmp_path: Path) -> None:
    config = tmp_path / "worker.yaml"
    config.write_text("stage: sandbox\nexchange: {base_url: 'https://api.binance.com'}\n")
    with pytest.raises(ConfigError, match="not a loopback sandbox"):
        load_worker_config(config)


def test_reconnect_backs_off_with_jitter_and_resets_after_a_healthy_run() -> None:
    stop = threading.Event()
    failures: list[tuple[int, float]] = []
    attempts = {"n": 0}
    policy = ReconnectPolicy(base_s=0.001, max_delay_s=0.004, healthy_after_s=1e9, rng=random.Random(7))

    def connect() -> None:
        attempts["n"] += 1
        if attempts["n"] >= 8:
            stop.set()
            return
        raise ConnectionError("stream dropped")

    total = run_with_reconnect(connect, stop, policy, on_failure=lambda n, d, _e: failures.append((n, d)))

    assert total == 7
    assert [n for n, _ in failures] == [1, 2, 3, 4, 5, 6, 7]
    assert all(0 <= d <= min(0.004, 0.001 * 2 ** (n - 1)) for n, d in failures)
    assert len({d for _, d in failures}) == 7, "jittered delays differ"


def test_demo_worker_thread_trades_and_reports_live_state_until_stopped(
    sandbox: SandboxHandle, trading_key: dict[str, Any], tmp_path: Path
) -> None:
    from keyguard.worker.config import WorkerConfig
    from keyguard.worker.demo_strategy import run_demo_worker
    from keyguard.worker.state import LiveState

    states: list[LiveState] = []
    config = WorkerConfig.model_validate({"strategy": {"orders": None, "interval_s": 0.05},
                                          "limiter": {"budget_path": str(tmp_path / "budget")}})
    thread, stop = run_demo_worker(sandbox.url, trading_key["api_key"], trading_key["secret"],
                                   state_dir=tmp_path / "demo", config=config, on_state=states.append)
    deadline = time.monotonic() + 20
    while len(sandbox.exchange.orders_of("main")) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    thread.join(10)

    assert not thread.is_alive()
    assert len(sandbox.exchange.orders_of("main")) >= 3
    assert states and states[-1].to_policy_input()["state"]["heartbeat_at"] is not None


def filled_while_resting(worker: ExecutionWorker, sandbox: SandboxHandle, side: str, *, price: float,
                         market: float) -> tuple[OrderResult, ReconciliationReport]:
    """A 0.004 BTC limit order that rests on the book, then the market moving through it (it fills as the maker),
    then a reconciliation: (the order as placed, the reconciliation's report)."""
    worker.start()
    resting = worker.submit(OrderIntent("BTCUSDT", "BTC", side, 0.004, order_type="LIMIT", price=price,
                                        reference_price=60000.0))
    assert resting.status is OrderStatus.NEW
    sandbox.exchange.set_price("BTCUSDT", market)
    return resting, worker.reconcile()


def test_fills_on_a_resting_order_reach_the_journal_and_positions_at_reconciliation(
    sandbox: SandboxHandle, make_worker: WorkerFactory
) -> None:
    worker = make_worker()
    resting, _ = filled_while_resting(worker, sandbox, "SELL", price=61000.0, market=62000.0)

    row = worker.journal.get(resting.client_order_id)
    assert row is not None and row.executed_qty == 0.004
    assert worker.snapshot.positions["BTC"] == -0.004


def test_a_resting_buy_filled_later_reconciles_with_the_balance_net_of_the_maker_commission(
    sandbox: SandboxHandle, make_worker: WorkerFactory
) -> None:
    worker = make_worker()
    resting, report = filled_while_resting(worker, sandbox, "BUY", price=59000.0, market=58000.0)

    # The look-up says 0.004 executed; the order's trades say what that cost. The journal, the position and the
    # exchange's balance agree on what the buy received.
    assert [d.kind for d in report.discrepancies] == ["ORDER_SETTLED"], "filled since last seen; balances agree"
    maker = sandbox.exchange.config.maker_commission
    row = worker.journal.get(resting.client_order_id)
    assert row is not None and row.executed_qty == 0.004
    assert row.commissions == {"BTC": pytest.approx(0.004 * maker)} and not row.commission_pending
    assert worker.snapshot.positions["BTC"] == pytest.approx(0.004 * (1 - maker), abs=1e-12)


def test_a_journal_from_before_commissions_gains_their_columns_and_reads_every_execution_as_pending(
    tmp_path: Path,
) -> None:
    from keyguard.worker.journal import JournalOrder, OrderJournal, journal_engine

    url = f"sqlite:///{tmp_path / 'journal.db'}"
    old = journal_engine(url)
    with old.begin() as connection:
        connection.exec_driver_sql("ALTER TABLE worker_order DROP COLUMN commissions")
        connection.exec_driver_sql("ALTER TABLE worker_order DROP COLUMN commission_qty")
        connection.exec_driver_sql(
            "INSERT INTO worker_order (client_order_id, intent_id, attempt, origin, worker, symbol, side, order_type,"
            " quantity, status, executed_qty, quote_qty, reduce_only, created_at, updated_at) VALUES ('kg-old-1',"
            " 'old', 1, 'worker', 'worker', 'BTCUSDT', 'BUY', 'MARKET', 0.001, 'FILLED', 0.001, 60.0, 0,"
            " '2024-01-01 00:00:00', '2024-01-01 00:00:00')")
    old.dispose()

    journal = OrderJournal(journal_engine(url))
    row = journal.get("kg-old-1")
    assert row is not None and row.commissions == {} and row.commission_qty == 0.0
    assert [r.client_order_id for r in journal.commission_pending()] == ["kg-old-1"]
    journal.record(JournalOrder(client_order_id="kg-new-1", intent_id="new", symbol="BTCUSDT", side="SELL",
                                order_type="MARKET", quantity=0.001, executed_qty=0.001, commission_qty=0.001,
                                commissions={"USDT": 0.06}))
    again = journal.get("kg-new-1")
    assert again is not None and again.commissions == {"USDT": 0.06} and not again.commission_pending
