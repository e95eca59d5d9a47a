"""Pre-trade checks refuse with a code before anything reaches the exchange; the kill switch persists."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from keyguard.sandbox import SandboxHandle
from keyguard.worker.journal import OrderStatus
from keyguard.worker.orders import OrderIntent
from keyguard.worker.risk import (
    DAILY_LOSS,
    KILL_SWITCH,
    MAX_NOTIONAL,
    MAX_ORDER_SHARE,
    MAX_POSITION,
    ORDERS_PER_MINUTE,
    STAGE_CAP,
    STATE_HALTED,
    STATE_REDUCING,
    OrderCheck,
    RiskLimits,
    RiskSnapshot,
    Stage,
    TradingState,
    check_order,
)
from tests.worker.conftest import WorkerFactory, exchange_orders

PRICE = 60000.0


def intent(side: str, qty: float, order_type: str = "MARKET", price: float | None = None) -> OrderIntent:
    return OrderIntent("BTCUSDT", "BTC", side, qty, order_type=order_type, price=price, reference_price=PRICE)


def test_kill_switch_survives_restart_and_blocks_orders(sandbox: SandboxHandle, make_worker: WorkerFactory) -> None:
    worker = make_worker()
    worker.start()
    resting = worker.submit(intent("BUY", 0.001, "LIMIT", 50000.0))
    assert resting.status is OrderStatus.NEW

    worker.engage_kill_switch("test: runaway strategy")

    assert [o.status for o in exchange_orders(sandbox)] == ["CANCELED"], "engaging cancels open orders"
    restarted = make_worker()
    restarted.start()
    refused = restarted.submit(intent("BUY", 0.001))
    assert refused.refusal_code == KILL_SWITCH
    assert len(exchange_orders(sandbox)) == 1, "the refused order never reached the exchange"
    state = restarted.live_state().to_policy_input()
    assert state["state"]["kill_switch_engaged"] is True
    assert state["config"]["kill_switch"]["last_tested_at"].endswith("Z")


def test_kill_switch_engaged_by_another_process_stops_a_running_worker(
    sandbox: SandboxHandle, make_worker: WorkerFactory, tmp_path: Path
) -> None:
    worker = make_worker()
    worker.start()
    resting = worker.submit(intent("BUY", 0.001, "LIMIT", 50000.0))
    assert resting.status is OrderStatus.NEW
    config = tmp_path / "worker.yaml"
    config.write_text(yaml.safe_dump({"state_dir": str(tmp_path / "state"),
                                      "exchange": {"base_url": sandbox.url}}))

    done = subprocess.run([sys.executable, "-m", "keyguard.cli", "worker", "kill", "--config", str(config),
                           "--reason", "operator says stop"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr

    refused = worker.submit(intent("BUY", 0.001))
    assert refused.refusal_code == KILL_SWITCH
    assert [o.status for o in exchange_orders(sandbox)] == ["CANCELED"]


def test_kill_switch_engaged_while_the_worker_was_down_cancels_open_orders_at_start(
    sandbox: SandboxHandle, make_worker: WorkerFactory, tmp_path: Path
) -> None:
    from keyguard.worker.killswitch import KillSwitch

    worker = make_worker()
    worker.start()
    assert worker.submit(intent("BUY", 0.001, "LIMIT", 50000.0)).status is OrderStatus.NEW
    worker.client.close()  # the worker stops; its resting order stays at the exchange
    KillSwitch(tmp_path / "state" / "killswitch.json").engage("incident", by="operator")

    make_worker().start()

    assert [o.status for o in exchange_orders(sandbox)] == ["CANCELED"]


def test_daily_loss_limit_refuses_entry_but_lets_reducing_order_through(
    sandbox: SandboxHandle, make_worker: WorkerFactory
) -> None:
    worker = make_worker(risk={"daily_loss_limit": 500.0})
    worker.start()
    assert worker.submit(intent("BUY", 0.004)).status is OrderStatus.FILLED

    worker.record_daily_pnl(-650.0)
    entry = worker.submit(intent("BUY", 0.001))
    exit_ = worker.submit(intent("SELL", 0.002))

    assert entry.refusal_code == DAILY_LOSS
    assert exit_.status is OrderStatus.FILLED
    assert [o.side for o in exchange_orders(sandbox)] == ["BUY", "SELL"]
    # The buy holds what it received, net of the exchange's taker commission.
    taker = sandbox.exchange.config.taker_commission
    assert worker.snapshot.positions["BTC"] == pytest.approx(0.004 * (1 - taker) - 0.002, abs=1e-12)


def test_daily_loss_survives_a_restart(sandbox: SandboxHandle, make_worker: WorkerFactory) -> None:
    worker = make_worker(risk={"daily_loss_limit": 500.0})
    worker.start()
    assert worker.submit(intent("BUY", 0.004)).status is OrderStatus.FILLED
    worker.record_daily_pnl(-650.0)

    restarted = make_worker(risk={"daily_loss_limit": 500.0})
    restarted.start()

    assert restarted.snapshot.positions["BTC"] == pytest.approx(0.004 * (1 - sandbox.exchange.config.taker_commission),
                                                                abs=1e-12)
    assert restarted.snapshot.daily_pnl <= -650.0
    assert restarted.submit(intent("BUY", 0.001)).refusal_code == DAILY_LOSS


def test_a_price_drop_on_an_open_position_counts_against_the_daily_loss_limit(
    sandbox: SandboxHandle, make_worker: WorkerFactory
) -> None:
    worker = make_worker(risk={"daily_loss_limit": 100.0, "max_position": {"BTC": 1.0},
                               "max_order_notional": None, "max_order_share_of_portfolio": None})
    worker.start()
    assert worker.submit(intent("BUY", 0.01)).status is OrderStatus.FILLED

    sandbox.exchange.set_price("BTCUSDT", 48000.0)  # 0.01 BTC loses about 120
    worker.price("BTCUSDT")
    worker.mark_to_market()

    assert worker.snapshot.daily_pnl < -100.0
    assert worker.submit(intent("BUY", 0.001, "LIMIT", 48000.0)).refusal_code == DAILY_LOSS
    # Reducing is selling what the buy received: 0.01 less the taker commission (selling 0.01 would go short).
    held = worker.snapshot.positions["BTC"]
    assert held == pytest.approx(0.01 * (1 - sandbox.exchange.config.taker_commission), abs=1e-12)
    assert worker.submit(intent("SELL", 0.01)).refusal_code == DAILY_LOSS
    assert worker.submit(intent("SELL", held)).status is OrderStatus.FILLED
    assert worker.snapshot.positions["BTC"] == pytest.approx(0.0, abs=1e-12)


def test_stage_cap_refuses_oversized_order_with_its_code(sandbox: SandboxHandle, make_worker: WorkerFactory) -> None:
    # micro-live: 0.1% of a 100000 target = 100 of exposure per asset.
    worker = make_worker(stage="micro-live", risk={"target_allocation": 100000.0})
    worker.start()

    oversized = worker.submit(intent("BUY", 0.002))  # 120
    within = worker.submit(intent("BUY", 0.0015))  # 90

    assert oversized.refusal_code == STAGE_CAP
    assert within.status is OrderStatus.FILLED
    assert len(exchange_orders(sandbox)) == 1


def test_paper_mode_fills_at_live_prices_without_sending_orders(sandbox: SandboxHandle, tmp_path: Path) -> None:
    from keyguard.worker.config import WorkerConfig
    from keyguard.worker.runtime import build_worker

    read_only = sandbox.create_key(label="paper", flags={"enableReading": True})
    sandbox.exchange.set_price("BTCUSDT", 61000.0)
    config = WorkerConfig.model_validate({"stage": "paper", "state_dir": str(tmp_path / "paper"),
                                          "exchange": {"base_url": sandbox.url}})
    worker = build_worker(config, read_only["api_key"], read_only["secret"], sandbox.url)
    try:
        worker.start()
        result = worker.submit(intent("BUY", 0.001))
        # Paper fills pay commission as Binance's would (out of the BTC received), so the position, the paper
        # balance and the journal agree.
        assert worker.snapshot.positions["BTC"] == pytest.approx(0.001 * (1 - worker.venue.fee_rate), abs=1e-12)
        assert worker.reconcile().of_kind("BALANCE_MISMATCH") == []
    finally:
        worker.client.close()
    assert result.status is OrderStatus.FILLED
    assert result.avg_price == 61000.0
    assert exchange_orders(sandbox) == []


LIMITS = RiskLimits(max_order_notional=1500.0, max_order_share_of_portfolio=0.02, max_orders_per_minute=3,
                    max_position={"BTC": 0.05}, daily_loss_limit=1000.0, stage=Stage.FULL_LIVE,
                    target_allocation=100000.0)


def check(side: str, qty: float, snap: RiskSnapshot | None = None, limits: RiskLimits = LIMITS) -> str | None:
    snapshot = snap or RiskSnapshot(portfolio_value=100000.0, positions={"BTC": 0.01})
    refusal = check_order(OrderCheck("BTCUSDT", "BTC", side, qty, PRICE), limits, snapshot, now=1000.0)
    return refusal.code if refusal else None


def test_order_within_every_limit_passes() -> None:
    assert check("BUY", 0.01) is None


def test_each_limit_refuses_with_its_own_code() -> None:
    assert check("BUY", 0.03) == MAX_NOTIONAL  # 1800 > 1500
    assert check("BUY", 0.02, RiskSnapshot(portfolio_value=50000.0, positions={"BTC": 0.0})) == MAX_ORDER_SHARE
    assert check("BUY", 0.02, RiskSnapshot(portfolio_value=100000.0, positions={"BTC": 0.04})) == MAX_POSITION
    busy = RiskSnapshot(portfolio_value=100000.0)
    for t in (950.0, 970.0, 990.0):
        busy.record_order(t)
    assert check("BUY", 0.001, busy) == ORDERS_PER_MINUTE


def test_orders_older_than_a_minute_stop_counting() -> None:
    snap = RiskSnapshot(portfolio_value=100000.0)
    for t in (900.0, 930.0, 939.0):
        snap.record_order(t)
    assert check("BUY", 0.001, snap) is None


def test_trading_states_gate_entries_and_exits() -> None:
    reducing = RiskSnapshot(portfolio_value=100000.0, positions={"BTC": 0.01}, trading_state=TradingState.REDUCING)
    assert check("BUY", 0.001, reducing) == STATE_REDUCING
    assert check("SELL", 0.005, reducing) is None
    assert check("SELL", 0.02, reducing) == STATE_REDUCING, "selling past zero opens a new position"
    halted = RiskSnapshot(portfolio_value=100000.0, positions={"BTC": 0.01}, trading_state=TradingState.HALTED)
    assert check("SELL", 0.005, halted) == STATE_HALTED


def test_orders_in_flight_count_as_filled_in_their_own_direction() -> None:
    def judged(side: str, qty: float, in_flight: float, state: TradingState = TradingState.ACTIVE) -> str | None:
        snap = RiskSnapshot(portfolio_value=100000.0, positions={"BTC": 0.01}, trading_state=state)
        refusal = check_order(OrderCheck("BTCUSDT", "BTC", side, qty, PRICE), LIMITS, snap, 1000.0, in_flight)
        return refusal.code if refusal else None

    assert judged("BUY", 0.02, 0.0) is None
    assert judged("BUY", 0.02, 0.03) == MAX_POSITION, "0.01 held + 0.03 on the way + 0.02 > 0.05"
    # Reducing: 0.01 held, a 0.008 sell already on the way; another 0.005 would cross zero if both fill.
    assert judged("SELL", 0.005, 0.0, TradingState.REDUCING) is None
    assert judged("SELL", 0.005, -0.008, TradingState.REDUCING) == STATE_REDUCING


def test_an_unknown_daily_pnl_holds_entries_like_a_loss_past_the_limit() -> None:
    # The PnL could not be worked out (an asset moved today has no price): unknown is not zero.
    unknown = RiskSnapshot(portfolio_value=100000.0, positions={"BTC": 0.01}, daily_pnl_known=False)
    assert check("BUY", 0.001, unknown) == DAILY_LOSS
    assert check("SELL", 0.005, unknown) is None, "reducing stays allowed"
    no_limit = dataclasses.replace(LIMITS, daily_loss_limit=None)
    assert check_order(OrderCheck("BTCUSDT", "BTC", "BUY", 0.001, PRICE), no_limit, unknown, 1000.0) is None


def test_kill_switch_outranks_every_other_check() -> None:
    snap = RiskSnapshot(kill_switch_engaged=True, portfolio_value=100000.0, positions={"BTC": 0.01})
    assert check("SELL", 0.001, snap) == KILL_SWITCH


def test_stage_ladder_caps_exposure_per_asset() -> None:
    flat = RiskSnapshot(portfolio_value=10_000_000.0)
    for stage, allowed_qty, refused_qty in ((Stage.MICRO_LIVE, 0.0016, 0.0017), (Stage.SMALL_LIVE, 0.16, 0.17)):
        limits = RiskLimits(stage=stage, target_allocation=100000.0)
        assert check("BUY", allowed_qty, flat, limits) is None
        assert check("BUY", refused_qty, flat, limits) == STAGE_CAP


def test_resting_orders_count_against_the_position_cap_until_they_are_cancelled(
        sandbox: SandboxHandle, make_worker: WorkerFactory) -> None:
    # Each buy of 0.02 BTC rests below the market and is inside the 0.05 cap alone; filled together, three would hold
    # 0.06. The third is refused while two rest, after a restart too, and passes once they are cancelled.
    worker = make_worker(risk={"max_position": {"BTC": 0.05}})
    worker.start()
    for _ in range(2):
        assert worker.submit(intent("BUY", 0.02, "LIMIT", 50000.0)).status is OrderStatus.NEW
    third = worker.submit(intent("BUY", 0.02, "LIMIT", 50000.0))
    assert third.refusal_code == MAX_POSITION
    assert "counting 0.04 in orders not yet answered or filled" in (third.detail or "")
    assert worker.submit(intent("SELL", 0.02, "LIMIT", 70000.0)).status is OrderStatus.NEW, "the other way is free"

    restarted = make_worker(risk={"max_position": {"BTC": 0.05}})
    restarted.start()
    assert restarted.submit(intent("BUY", 0.02, "LIMIT", 50000.0)).refusal_code == MAX_POSITION
    assert len(exchange_orders(sandbox)) == 3, "refused orders never reached the exchange"

    restarted.cancel_open_orders()
    assert restarted.submit(intent("BUY", 0.02, "LIMIT", 50000.0)).status is OrderStatus.NEW
