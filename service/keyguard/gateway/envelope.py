"""The safety envelope every order through the gateway passes, for its bot and for the account as a whole.

The decisions are keyguard.worker.risk.check_order (pure); this keeps one snapshot per bot and one for the account,
the kill switches and trading states they read, and each bot's refusals, so a runaway bot is held."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from keyguard.worker.killswitch import KillSwitch
from keyguard.worker.portfolio import Book
from keyguard.worker.risk import (
    KILL_SWITCH,
    OrderCheck,
    Refusal,
    RiskLimits,
    RiskSnapshot,
    TradingState,
    check_order,
)

log = logging.getLogger(__name__)

RUNAWAY_WINDOW_S = 60.0


class TradingStates:
    """Trading state (ACTIVE, REDUCING, HALTED) of the account and of each bot, in one small JSON file any
    process can change (`keyguard gateway trading-state`); re-read when it changes. Unreadable reads as HALTED."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int, int] | None = None
        self._account = TradingState.ACTIVE
        self._bots: dict[str, TradingState] = {}
        self.problem: str | None = None
        # Threads refresh at once (requests, housekeeping, the fast lane's verdicts): one reads the file at a time,
        # and the stamp is taken as read only with the states it gave, so no thread reads a new stamp with old states.
        self._lock = threading.Lock()

    def refresh(self) -> None:
        with self._lock:
            try:
                st = os.stat(self.path)
                stamp = (st.st_mtime_ns, st.st_ino, st.st_size)
            except FileNotFoundError:
                stamp = (0, 0, 0)
            if stamp == self._stamp:
                return
            if stamp == (0, 0, 0):
                self._account, self._bots, self.problem = TradingState.ACTIVE, {}, None
                self._stamp = stamp
                return
            try:
                raw = json.loads(self.path.read_text())
                self._account = TradingState(raw.get("account", "ACTIVE"))
                self._bots = {str(k): TradingState(v) for k, v in (raw.get("bots") or {}).items()}
                self.problem = None
            except (OSError, ValueError, TypeError, AttributeError):
                # A state file we cannot read is not evidence that trading may flow.
                self._account, self._bots = TradingState.HALTED, {}
                self.problem = f"unreadable trading state file {self.path}: trading HALTED until it is fixed"
            self._stamp = stamp

    def account(self) -> TradingState:
        self.refresh()
        return self._account

    def states(self, bot: str) -> tuple[TradingState, TradingState]:
        """The account's and the bot's trading states, from one look at the file."""
        self.refresh()
        return self._account, self._bots.get(bot, TradingState.ACTIVE)

    def restricted(self) -> bool:
        """Whether the account or any bot is not ACTIVE (or the file is unreadable)."""
        self.refresh()
        return self._account is not TradingState.ACTIVE or any(
            state is not TradingState.ACTIVE for state in self._bots.values())

    def set(self, state: TradingState, bot: str | None = None) -> None:
        self.refresh()
        account = state if bot is None else self._account
        bots = {k: v.value for k, v in self._bots.items()}
        if bot is not None:
            bots[bot] = state.value
        data = {"account": account.value, "bots": bots}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self.path)
        self._stamp = None


@dataclass
class BotWatch:
    """One bot's envelope state: its snapshot, its own kill switch, and the refusals it has collected."""

    limits: RiskLimits
    snapshot: RiskSnapshot
    switch: KillSwitch
    max_refusals_per_minute: int | None
    refusal_times: deque[float] = field(default_factory=deque)
    refusals: dict[str, int] = field(default_factory=dict)
    last_refusal: str | None = None


class Envelope:
    def __init__(self, account_limits: RiskLimits, portfolio_value: float, account_switch: KillSwitch | None,
                 trading: TradingStates) -> None:
        self.account_limits = account_limits
        self.account = RiskSnapshot(portfolio_value=portfolio_value)
        self.account_switch = account_switch
        self.trading = trading
        self.bots: dict[str, BotWatch] = {}
        self.refusals: dict[str, int] = {}
        self.largest_notional_today = 0.0
        self._lock = threading.Lock()
        # Quantity let through and not in the books, by (bot, base asset) and by (None, base asset) for the account:
        # [buys, sells]. Added when an order passes; taken off (`count`) as what it executed reaches the books and
        # once nothing more of it can fill. An order resting at the exchange counts for what it has not filled yet.
        self._in_flight: dict[tuple[str | None, str], list[float]] = {}
        # The same for the fast lane's verdicts (gateway/lane.py): quantity an order not made yet may take, counted
        # against the caps with the orders in flight, kept apart so what is in flight stays what was let through.
        self._reserved: dict[tuple[str | None, str], list[float]] = {}
        # The books and prices last set: a bot watched later starts from its own.
        self._books: Mapping[str, Book] = {}
        self._prices: Mapping[str, float] = {}

    def add_bot(self, bot: str, limits: RiskLimits, switch: KillSwitch, max_refusals_per_minute: int | None) -> None:
        """Watch a bot from now on; its snapshot starts from its book as last set (a bot first seen after a restart
        has traded before it)."""
        watch = BotWatch(limits, RiskSnapshot(portfolio_value=self.account.portfolio_value), switch,
                         max_refusals_per_minute)
        with self._lock:
            self._fill(watch.snapshot, self._books.get(bot, Book()), self._prices)
            self.bots[bot] = watch

    def watch(self, bot: str) -> BotWatch:
        return self.bots[bot]

    def account_engaged(self) -> bool:
        """The account's switch (None = kill_switch.enabled false: nothing is consulted, nothing stops orders)."""
        return bool(self.account_switch is not None and self.account_switch.refresh())

    def check(self, bot: str, order: OrderCheck, now: float, *, admit: bool = True,
              reserve: bool = False) -> Refusal | None:
        """The first refusal of the bot's envelope or the account's; with `admit`, a pass counts as an order sent
        (with `reserve`, its quantity as reserved for a verdict, not in flight: see `release` and `unreserve`)."""
        watch = self.bots[bot]
        with self._lock:
            self.account.kill_switch_engaged = self.account_engaged()
            self.account.trading_state, watch.snapshot.trading_state = self.trading.states(bot)
            watch.snapshot.kill_switch_engaged = watch.switch.refresh()
            refusal = None
            if self.account.kill_switch_engaged:
                refusal = Refusal(KILL_SWITCH, f"the account's kill switch is engaged ({self._reason()}): no orders")
            elif watch.snapshot.kill_switch_engaged:
                refusal = Refusal(KILL_SWITCH, f"bot {bot} is held by its kill switch "
                                               f"({watch.switch.state.reason or 'no reason given'}): no orders")
            else:
                refusal = check_order(order, watch.limits, watch.snapshot, now, self._pending(bot, order))
                if refusal is not None:
                    refusal = Refusal(refusal.code, f"bot {bot}: {refusal.message}")
                else:
                    refusal = check_order(order, self.account_limits, self.account, now, self._pending(None, order))
                    if refusal is not None:
                        refusal = Refusal(refusal.code, f"account: {refusal.message}")
            if refusal is None and admit:
                watch.snapshot.record_order(now)
                self.account.record_order(now)
                self._move_in_flight(bot, order, order.quantity, self._reserved if reserve else self._in_flight)
            return refusal

    def _move_in_flight(self, bot: str, order: OrderCheck, quantity: float,
                        table: dict[tuple[str | None, str], list[float]] | None = None) -> None:
        """Add `quantity` (taken off when negative) to what is in flight (or reserved: `table`) in `order`'s
        direction, for the bot and the account (caller holds the lock)."""
        table = self._in_flight if table is None else table
        side = 0 if order.side == "BUY" else 1
        for owner in (bot, None):
            pending = table.setdefault((owner, order.base_asset), [0.0, 0.0])
            left = pending[side] + quantity
            pending[side] = left if left > 1e-12 else 0.0
            if pending == [0.0, 0.0]:
                del table[(owner, order.base_asset)]

    def release(self, bot: str, order: OrderCheck, at: float) -> None:
        """Undo `check(bot, order, at, reserve=True)` for an order that was never made (a fast-lane verdict revoked
        unused): its reservation ends, its place in the bot's and the account's rate windows goes."""
        with self._lock:
            self._move_in_flight(bot, order, -order.quantity, self._reserved)
            for snapshot in (self.bots[bot].snapshot, self.account):
                with contextlib.suppress(ValueError):
                    snapshot.order_times.remove(at)

    def unreserve(self, bot: str, reserved: OrderCheck, made: OrderCheck) -> None:
        """A verdict's order was made (`made`, within `reserved`): its reservation becomes the order's count in
        flight, its place in the rate windows stays."""
        with self._lock:
            self._move_in_flight(bot, reserved, -reserved.quantity, self._reserved)
            self._move_in_flight(bot, made, made.quantity)

    def order_times(self, bot: str | None = None) -> list[float]:
        """When the bot's (None: the account's) orders in its rate windows were let through, copied under the lock
        (orders are let through and verdicts released on other threads meanwhile)."""
        with self._lock:
            return list((self.bots[bot].snapshot if bot is not None else self.account).order_times)

    def count(self, bot: str, order: OrderCheck, quantity: float) -> None:
        """Add `quantity` (taken off when negative) to what counts as in flight in `order`'s direction: an order let
        through by `check` (which counts its whole quantity), whose outcome is unknown, or that rests at the exchange
        unfilled counts until the books hold what it executed and nothing more of it can fill (OrderDesk keeps each
        order's count)."""
        with self._lock:
            self._move_in_flight(bot, order, quantity)

    def _pending(self, owner: str | None, order: OrderCheck) -> float:
        """The signed quantity counted in `order`'s direction (see check_order's `in_flight`)."""
        side = 0 if order.side == "BUY" else 1
        total = 0.0
        for table in (self._in_flight, self._reserved):
            pending = table.get((owner, order.base_asset))
            if pending is not None:
                total += pending[side]
        return total if side == 0 else -total

    def in_flight(self, bot: str | None = None) -> dict[str, tuple[float, float]]:
        """(buys, sells) let through and not in the books by base asset (on the wire, unknown, or resting unfilled),
        for `bot` (None: the account)."""
        with self._lock:
            return {base: (p[0], p[1]) for (owner, base), p in self._in_flight.items() if owner == bot}

    def _reason(self) -> str:
        state = self.account_switch.state if self.account_switch is not None else None
        return (state.reason if state is not None else "") or "no reason given"

    def count_refusal(self, bot: str, code: str, now: float) -> bool:
        """Record a refusal; True when it makes the bot runaway (more refusals in a minute than it may have)."""
        watch = self.bots[bot]
        with self._lock:
            self.refusals[code] = self.refusals.get(code, 0) + 1
            watch.refusals[code] = watch.refusals.get(code, 0) + 1
            watch.last_refusal = code
            if code == KILL_SWITCH:
                return False  # already held: nothing more to engage
            watch.refusal_times.append(now)
            while watch.refusal_times and watch.refusal_times[0] <= now - RUNAWAY_WINDOW_S:
                watch.refusal_times.popleft()
            cap = watch.max_refusals_per_minute
            return cap is not None and len(watch.refusal_times) > cap

    @staticmethod
    def _fill(snapshot: RiskSnapshot, book: Book, prices: Mapping[str, float]) -> None:
        snapshot.positions = dict(book.positions)
        pnl = book.daily_pnl(prices)
        snapshot.daily_pnl_known = pnl is not None
        if pnl is not None:
            snapshot.daily_pnl = pnl

    def set_books(self, books: Mapping[str, Book], prices: Mapping[str, float]) -> None:
        """Positions and today's PnL of each bot and of the account, from the journal's fold. The account's are
        every bot's book summed, whether or not the bot has been seen since the gateway started."""
        account = Book()
        for book in books.values():
            for base, qty in book.positions.items():
                account.positions[base] = account.positions.get(base, 0.0) + qty
            for base, qty in book.moved_today.items():
                account.moved_today[base] = account.moved_today.get(base, 0.0) + qty
            account.cash_today += book.cash_today
            account.largest_notional_today = max(account.largest_notional_today, book.largest_notional_today)
        with self._lock:
            self._books, self._prices = books, prices
            for bot, watch in self.bots.items():
                self._fill(watch.snapshot, books.get(bot, Book()), prices)
            self._fill(self.account, account, prices)
            self.largest_notional_today = account.largest_notional_today
