"""The execution worker: pre-trade checks, idempotent placement, kill switch, reconciliation, live state.

Wiring only: the decisions are made by risk.check_order (pure), OrderExecutor (idempotency rules) and
SharedRateLimiter (budget arithmetic); this class keeps their inputs current and records the outcomes.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keyguard.errors import ConfigError, ExchangeError
from keyguard.exchanges.binance import read_key_permissions
from keyguard.exchanges.binance_client import BinanceSpotClient
from keyguard.exchanges.budget import (
    BINANCE_SPOT_POOLS,
    PoolSpec,
    SharedRateLimiter,
    pools_from_exchange_info,
)
from keyguard.exchanges.budget_store import open_budget_store
from keyguard.exchanges.errors import UNKNOWN_ORDER
from keyguard.worker.config import WorkerConfig
from keyguard.worker.journal import JournalOrder, OrderJournal, OrderStatus, journal_engine, quote_asset
from keyguard.worker.killswitch import KillSwitch
from keyguard.worker.orders import OrderExecutor, OrderIntent, OrderResult
from keyguard.worker.paper import PaperVenue
from keyguard.worker.reconcile import Reconciler, ReconciliationReport
from keyguard.worker.retry import retry_data_request
from keyguard.worker.risk import OrderCheck, RiskLimits, RiskSnapshot, TradingState, check_order
from keyguard.worker.stages import StageHistory
from keyguard.worker.state import LiveState

log = logging.getLogger(__name__)


@dataclass
class WorkerCounters:
    sent: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    unknown: int = 0
    resent: int = 0


class ExecutionWorker:
    def __init__(
        self,
        config: WorkerConfig,
        client: BinanceSpotClient,
        *,
        journal: OrderJournal | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.client = client
        self.clock = clock
        self.limits: RiskLimits = config.risk_limits()
        config.state_dir.mkdir(parents=True, exist_ok=True)
        self.journal = journal or OrderJournal(journal_engine(config.journal()))
        self.journal.keep_intents()  # orders a crash left only in the intent log are written before any read
        # kill_switch.enabled: false leaves no switch to look at; the live document then says so.
        self.kill_switch = KillSwitch(config.kill_switch_path) if config.kill_switch.enabled else None
        self.data_retry = config.data_retry.policy()
        self.reconnect = config.reconnect.policy()
        self.snapshot = RiskSnapshot(kill_switch_engaged=bool(self.kill_switch and self.kill_switch.engaged),
                                     portfolio_value=config.risk.portfolio_value)
        self.symbols = {config.strategy.symbol: config.strategy.base_asset}
        self.venue: Any = (PaperVenue(lambda s: retry_data_request(lambda: client.ticker_price(s), self.data_retry),
                                      base_of=self.symbols, recv_window_ms=client.recv_window_ms)
                           if config.paper_mode else client)
        self.executor = OrderExecutor(self.venue, self.journal, worker=config.worker, clock=clock,
                                      lookup_attempts=config.order_retry.lookup_attempts,
                                      max_resends=config.order_retry.max_resends,
                                      max_send_delay_s=config.limiter.deadline_s + config.exchange.timeout_s)
        self.reconciler = Reconciler(self.venue, self.journal, self.executor,
                                     symbols=self.symbols, worker=config.worker)
        self.counters = WorkerCounters()
        self.largest_notional_today = 0.0
        self.cash_flow = 0.0  # quote received minus quote paid by the worker's orders, for daily PnL
        # Equity at the start of the UTC day, persisted so a restart does not wipe out today's losses.
        self.daily_file = config.state_dir / "daily.json"
        self._day: int | None = None
        self._day_start_equity = 0.0
        self.last_price: dict[str, float] = {}
        self.heartbeat_at: float | None = None
        self.stages = StageHistory(config.state_dir / "stages.json")
        self.live_state_file = config.state_dir / "live_state.json"
        self.key_permissions: dict[str, bool | None] | None = None
        self._lock = threading.Lock()
        # Orders let through by the risk check whose journal row may not be written yet: intent id -> (asset, signed
        # quantity). Counted with the journal's open rows by `_in_flight`.
        self._let_through: dict[str, tuple[str, float]] = {}

    # -- kill switch ----------------------------------------------------------------------------------
    def refresh_kill_switch(self) -> bool:
        if self.kill_switch is None:
            return False
        was = self.snapshot.kill_switch_engaged
        engaged = self.kill_switch.refresh()
        self.snapshot.kill_switch_engaged = engaged
        if engaged and not was:
            # Another process engaged it: we still owe the cancel of our open orders.
            self.cancel_open_orders()
        return engaged

    def engage_kill_switch(self, reason: str, by: str = "worker") -> None:
        if self.kill_switch is None:
            raise ConfigError(f"worker {self.config.worker}: kill_switch.enabled is false; no switch to engage")
        self.kill_switch.engage(reason, by)
        self.snapshot.kill_switch_engaged = True
        self.cancel_open_orders()

    def cancel_open_orders(self) -> list[str]:
        canceled = []
        for symbol in self.symbols:
            try:
                result = self.venue.cancel_open_orders(symbol)
            except ExchangeError as exc:
                if getattr(exc, "code", None) == UNKNOWN_ORDER:  # nothing open to cancel
                    continue
                log.error("kill switch: cancelling open orders on %s failed: %s", symbol, exc)
                continue
            for report in result if isinstance(result, list) else []:
                cid = str(report.get("origClientOrderId") or report.get("clientOrderId"))
                row = self.journal.get(cid)
                if row is not None:
                    row.status = OrderStatus.CANCELED
                    self.journal.record(row)
                canceled.append(cid)
        log.warning("kill switch: cancelled %d open orders", len(canceled))
        return canceled

    # -- orders ---------------------------------------------------------------------------------------
    def set_trading_state(self, state: TradingState) -> None:
        self.snapshot.trading_state = state

    def price(self, symbol: str) -> float:
        price = retry_data_request(lambda: self.client.ticker_price(symbol), self.data_retry)
        self.last_price[symbol] = price
        return price

    def submit(self, intent: OrderIntent) -> OrderResult:
        """Check, then place. A refusal never reaches the exchange and is counted under its code."""
        now = self.clock()
        self.refresh_kill_switch()
        price = (intent.price or intent.reference_price or self.last_price.get(intent.symbol)
                 or self.price(intent.symbol))
        check = OrderCheck(intent.symbol, intent.base_asset, intent.side, intent.quantity, price)
        with self._lock:
            refusal = check_order(check, self.limits, self.snapshot, now, self._in_flight(check))
            if refusal is not None:
                self.counters.refused[refusal.code] = self.counters.refused.get(refusal.code, 0) + 1
                log.info("order refused %s: %s", refusal.code, refusal.message)
                return OrderResult(intent.intent_id, "", OrderStatus.REJECTED, intent.quantity,
                                   refusal_code=refusal.code, detail=refusal.message, attempts=0)
            self.snapshot.record_order(now)
            self._let_through[intent.intent_id] = (check.base_asset, check.signed_qty)
        try:
            result = self.executor.place(intent, deadline_s=self.config.limiter.deadline_s)
        except BaseException:
            with self._lock:
                del self._let_through[intent.intent_id]  # its row, if one was written, is open: it counts it
            raise
        with self._lock:
            # In one step with the fill below: the order counts either here or in the positions, never in neither.
            del self._let_through[intent.intent_id]
            self.counters.sent += 1
            self.counters.resent += max(0, result.attempts - 1)
            if result.status is OrderStatus.UNKNOWN:
                self.counters.unknown += 1
            self._apply_fill(intent, result, price)
        return result

    def _in_flight(self, check: OrderCheck) -> float:
        """The signed quantity of `check`'s asset, in its direction, that orders already let through may still add to
        the positions (which hold only what executed): what a resting order has not filled yet, the whole of one not
        answered or whose outcome is unknown. Read from the journal (every open row of the worker's symbols, as the
        positions are) and the orders let through that it may not hold yet. Under `_lock`."""
        sign = 1.0 if check.side == "BUY" else -1.0
        pending = sum(qty for asset, qty in self._let_through.values()
                      if asset == check.base_asset and qty * sign > 0)
        for row in self.journal.open_orders():
            if (self.symbols.get(row.symbol) == check.base_asset and row.side == check.side
                    and row.intent_id not in self._let_through):
                pending += sign * max(row.quantity - row.executed_qty, 0.0)
        return pending

    def _apply_fill(self, intent: OrderIntent, result: OrderResult, price: float) -> None:
        """Positions and cash follow the execution, net of its commission (a buy holds what it received)."""
        if result.executed_qty <= 0:
            return
        sign = 1.0 if intent.side == "BUY" else -1.0
        asset = intent.base_asset
        quote = result.quote_qty or result.executed_qty * price
        row = result.journal_row
        if row is not None:
            moved, cash = row.base_change(asset), row.quote_change(quote_asset(intent.symbol, asset))
        else:
            moved, cash = sign * result.executed_qty, -sign * quote
        self.snapshot.positions[asset] = self.snapshot.positions.get(asset, 0.0) + moved
        self.cash_flow += cash
        self.largest_notional_today = max(self.largest_notional_today, quote)
        self.mark_to_market()

    def equity(self) -> float | None:
        """Cash flow plus the worker's positions at last price; None until every traded symbol has a price."""
        value = self.cash_flow
        for symbol, asset in self.symbols.items():
            if symbol not in self.last_price:
                return None
            value += self.snapshot.positions.get(asset, 0.0) * self.last_price[symbol]
        return value

    def mark_to_market(self) -> float:
        """Daily PnL = equity now - equity at the start of the UTC day (persisted across restarts)."""
        equity = self.equity()
        if equity is None:
            return self.snapshot.daily_pnl
        day = int(self.clock() // 86400)
        if self._day != day:
            self._start_day(day, equity)
        self.snapshot.daily_pnl = equity - self._day_start_equity
        return self.snapshot.daily_pnl

    def _start_day(self, day: int, equity: float) -> None:
        try:
            saved = json.loads(self.daily_file.read_text())
        except (OSError, ValueError):
            saved = {}
        if saved.get("day") == day and isinstance(saved.get("start_equity"), int | float):
            self._day_start_equity = float(saved["start_equity"])
        else:
            self._day_start_equity = equity
            self.largest_notional_today = 0.0
            self._save_day(day)
        self._day = day

    def _save_day(self, day: int) -> None:
        self.daily_file.write_text(json.dumps({"day": day, "start_equity": self._day_start_equity}))

    def record_daily_pnl(self, pnl: float) -> None:
        """Set today's PnL from an outside source (e.g. losses booked by another tool on the account)."""
        self.mark_to_market()
        equity = self.equity()
        if equity is None or self._day is None:
            raise ExchangeError("no price yet for every traded symbol; call start() first")
        self._day_start_equity = equity - pnl
        self._save_day(self._day)
        self.snapshot.daily_pnl = pnl

    # -- start-up, reconciliation, live state ---------------------------------------------------------

    def start(self) -> ReconciliationReport:
        """Time sync, pools from the exchange's own rateLimits, journal positions, first reconciliation."""
        self.stages.enter(self.limits.stage.value, self.clock())
        retry_data_request(self.client.sync_time, self.data_retry)
        self.key_permissions = read_key_permissions(self.client, self.data_retry)
        if self.client.limiter is not None:
            info = retry_data_request(self.client.exchange_info, self.data_retry)
            if info.get("rateLimits"):
                self.client.limiter.pools = pools_from_exchange_info(info["rateLimits"])
        if self.refresh_kill_switch():
            # Engaged while we were down: whatever is still open at the exchange is cancelled now.
            self.cancel_open_orders()
        for symbol in self.symbols:
            self.price(symbol)
        report = self.reconcile()
        self.heartbeat_at = self.clock()
        return report

    def _load_from_journal(self) -> None:
        """Positions and cash flow from every execution the journal holds, so a restart resumes exactly."""
        positions: dict[str, float] = {}
        cash = 0.0
        rows: list[JournalOrder] = self.journal.orders(symbol=None)
        for row in rows:
            if row.executed_qty and row.symbol in self.symbols:
                asset = self.symbols[row.symbol]
                positions[asset] = positions.get(asset, 0.0) + row.base_change(asset)
                cash += row.quote_change(quote_asset(row.symbol, asset))
        self.snapshot.positions = positions
        self.cash_flow = cash

    def reconcile(self) -> ReconciliationReport:
        """Journal against exchange; afterwards positions and PnL follow what the journal now knows."""
        report = self.reconciler.run()
        with self._lock:
            self._load_from_journal()
            self.mark_to_market()
        return report

    def heartbeat(self) -> None:
        """Alive; and an idle worker still notices a kill switch engaged elsewhere (one stat). The live state is
        published to state_dir/live_state.json (atomic replace) for the Keyguard service's execution check."""
        self.refresh_kill_switch()
        self.heartbeat_at = self.clock()
        self.publish_live_state()

    def publish_live_state(self) -> Path:
        tmp = self.live_state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.live_state().to_policy_input()))
        os.replace(tmp, self.live_state_file)
        return self.live_state_file

    def live_state(self) -> LiveState:
        now = self.clock()
        used, limit = 0.0, 6000
        pools: tuple[PoolSpec, ...] = BINANCE_SPOT_POOLS
        if self.client.limiter is not None:
            pools = self.client.limiter.pools
            for key, usage in self.client.limiter.usage().items():
                if ":REQUEST_WEIGHT:" in key:
                    used, limit = usage["used"], int(usage["limit"])
        weight_pool = next((p for p in pools if p.kind == "REQUEST_WEIGHT"), None)
        # Shortened sandbox windows are reported per minute, as the contract's field name says.
        weight_limit = int(weight_pool.limit * 60 / weight_pool.interval_s) if weight_pool else 6000
        orders_short = min((p for p in pools if p.kind == "ORDERS"), key=lambda p: p.interval_s, default=None)
        orders_long = max((p for p in pools if p.kind == "ORDERS"), key=lambda p: p.interval_s, default=None)
        return LiveState(
            worker=self.config.worker, now=now, limits=self.limits,
            portfolio_value=self.snapshot.portfolio_value,
            exchange_limits={"request_weight_per_minute": weight_limit,
                             "orders_per_10s": orders_short.limit if orders_short else 100,
                             "orders_per_day": orders_long.limit if orders_long else 200000},
            rate_limit_budget_fraction=self.client.limiter.headroom if self.client.limiter else 1.0,
            min_fill_ratio=self.config.risk.min_fill_ratio, executor=self.executor, data_retry=self.data_retry,
            reconnect=self.reconnect, kill_switch=self.kill_switch,
            kill_switch_engaged=self.snapshot.kill_switch_engaged,
            trading_state=self.snapshot.trading_state,
            orders_last_minute=self.snapshot.orders_in_last_minute(now),
            largest_order_notional_today=self.largest_notional_today,
            positions=dict(self.snapshot.positions), daily_pnl=self.snapshot.daily_pnl,
            used_weight_1m=used, weight_limit_1m=limit, heartbeat_at=self.heartbeat_at,
            stage_history=self.stages.entries(),
            key_permissions=self.key_permissions,
            counters={"sent": self.counters.sent, "unknown": self.counters.unknown, "resent": self.counters.resent,
                      **{f"refused_{k}": v for k, v in self.counters.refused.items()}},
        )


def build_worker(config: WorkerConfig, api_key: str, api_secret: str, base_url: str,
                 clock: Callable[[], float] = time.time) -> ExecutionWorker:
    """Client + shared limiter + worker from settings (the budget file is host-wide, per egress IP)."""
    config.state_dir.mkdir(parents=True, exist_ok=True)
    store = open_budget_store(config.limiter.backend, config.limiter.budget_file())
    limiter = SharedRateLimiter(store, egress_ip=config.limiter.egress_ip, account=config.limiter.account,
                                headroom=config.limiter.headroom, default_deadline_s=config.limiter.deadline_s,
                                clock=clock)
    client = BinanceSpotClient(base_url, api_key, api_secret, limiter, timeout_s=config.exchange.timeout_s,
                               recv_window_ms=config.exchange.recv_window_ms,
                               source_address=config.exchange.source_address, clock=clock)
    return ExecutionWorker(config, client, clock=clock)
