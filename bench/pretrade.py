"""Pre-trade check latency per order, p50 and p99.

Keyguard: the pure in-memory `check_order` plus the kill switch's `stat` (how another process's change is
seen before every order). Baseline: the naive design that asks persistence each time: read the kill switch
file and count the last minute's orders and the position from the journal with SQL, then apply the limits.

    uv run python -m bench.pretrade [--orders 20000]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text

from keyguard.worker.journal import JournalOrder, OrderJournal, OrderStatus, journal_engine
from keyguard.worker.killswitch import KillSwitch
from keyguard.worker.risk import OrderCheck, RiskLimits, RiskSnapshot, Stage, check_order

LIMITS = RiskLimits(max_order_notional=1500.0, max_order_share_of_portfolio=0.02, max_orders_per_minute=10**9,
                    max_position={"BTC": 5.0}, daily_loss_limit=2000.0, stage=Stage.SMALL_LIVE,
                    target_allocation=1_000_000.0)
ORDER = OrderCheck("BTCUSDT", "BTC", "BUY", 0.01, 60000.0)


def percentiles(samples_ns: list[int]) -> tuple[float, float]:
    ordered = sorted(samples_ns)
    return ordered[len(ordered) // 2] / 1000, ordered[int(len(ordered) * 0.99)] / 1000


def keyguard(n: int, state_dir: Path) -> tuple[tuple[float, float], tuple[float, float]]:
    switch = KillSwitch(state_dir / "killswitch.json")
    switch.release("bench")
    snap = RiskSnapshot(portfolio_value=1_000_000.0, positions={"BTC": 0.5})
    pure, with_stat = [], []
    clock = time.perf_counter_ns
    for i in range(n):
        now = 1_000_000.0 + i * 0.01
        t0 = clock()
        refusal = check_order(ORDER, LIMITS, snap, now)
        t1 = clock()
        snap.kill_switch_engaged = switch.refresh()
        refusal = check_order(ORDER, LIMITS, snap, now)
        t2 = clock()
        assert refusal is None
        snap.record_order(now)
        pure.append(t1 - t0)
        with_stat.append(t2 - t1)
    return percentiles(pure), percentiles(with_stat)


def naive(n: int, state_dir: Path) -> tuple[float, float]:
    engine = journal_engine(f"sqlite:///{state_dir / 'journal.db'}")
    journal = OrderJournal(engine)
    base = datetime.now(UTC)
    for i in range(300):  # a realistic journal: the last few minutes of orders
        journal.record(JournalOrder(client_order_id=f"o{i}", intent_id=f"i{i}", symbol="BTCUSDT", side="BUY",
                                    order_type="MARKET", quantity=0.001, executed_qty=0.001,
                                    status=OrderStatus.FILLED, created_at=base - timedelta(seconds=i)))
    switch_file = state_dir / "killswitch.json"
    samples = []
    with engine.connect() as conn:
        for _ in range(n):
            t0 = time.perf_counter_ns()
            engaged = json.loads(switch_file.read_text())["engaged"]
            since = (datetime.now(UTC) - timedelta(seconds=60)).isoformat()
            recent = conn.execute(text("SELECT COUNT(*) FROM worker_order WHERE created_at > :s"),
                                  {"s": since}).scalar()
            position = conn.execute(text(
                "SELECT COALESCE(SUM(CASE WHEN side='BUY' THEN executed_qty ELSE -executed_qty END), 0) "
                "FROM worker_order WHERE symbol='BTCUSDT'")).scalar()
            snap = RiskSnapshot(kill_switch_engaged=engaged, portfolio_value=1_000_000.0,
                                positions={"BTC": float(position or 0)})
            refusal = check_order(ORDER, LIMITS, snap, time.time())
            samples.append(time.perf_counter_ns() - t0)
            assert refusal is None and recent is not None
    return percentiles(samples)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=20000)
    args = parser.parse_args(argv)
    state_dir = Path(tempfile.mkdtemp(prefix="kg-bench-pretrade-"))
    (pure, with_stat) = keyguard(args.orders, state_dir)
    base = naive(args.orders, state_dir)
    print(f"pre-trade check latency, {args.orders} orders (µs)")
    print(f"{'variant':<44}{'p50':>8}{'p99':>8}")
    print(f"{'keyguard check_order (in memory)':<44}{pure[0]:>8.1f}{pure[1]:>8.1f}")
    print(f"{'keyguard + kill switch stat':<44}{with_stat[0]:>8.1f}{with_stat[1]:>8.1f}")
    print(f"{'naive: kill switch file + journal SQL':<44}{base[0]:>8.1f}{base[1]:>8.1f}")
    print(f"ratio p50 naive / keyguard+stat: {base[0] / with_stat[0]:.0f}x")


if __name__ == "__main__":
    main()
