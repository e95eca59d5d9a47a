"""Pre-trade risk checks: a pure, in-memory function that refuses an order with a code, or lets it pass.

Everything it needs (limits, positions, PnL, kill switch flag, recent order times) is already in memory, so
the check costs microseconds; persistence (kill switch file, journal) is refreshed by the caller.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from keyguard.policy.bundle import policy_data

# Refusal codes.
KILL_SWITCH = "KILL_SWITCH"
STATE_HALTED = "STATE_HALTED"
STATE_REDUCING = "STATE_REDUCING"
DAILY_LOSS = "DAILY_LOSS"
MAX_NOTIONAL = "MAX_ORDER_NOTIONAL"
MAX_ORDER_SHARE = "MAX_ORDER_SHARE"
ORDERS_PER_MINUTE = "ORDERS_PER_MINUTE"
MAX_POSITION = "MAX_POSITION"
STAGE_CAP = "STAGE_CAP"
INVALID_ORDER = "INVALID_ORDER"


class TradingState(StrEnum):
    ACTIVE = "ACTIVE"  # anything within limits
    REDUCING = "REDUCING"  # only orders that shrink a position
    HALTED = "HALTED"  # nothing


class Stage(StrEnum):
    SANDBOX = "sandbox"
    PAPER = "paper"
    MICRO_LIVE = "micro-live"
    SMALL_LIVE = "small-live"
    FULL_LIVE = "full-live"


def stage_allocation_share(stage: Stage) -> float:
    """Share of the target allocation a go-live stage may put at risk, from the rules' own data
    (execution.golive.max_order_bps_of_target); a stage it does not cap (sandbox and paper move no real money,
    full-live is the target) runs at full size."""
    caps = policy_data("execution", "golive", "max_order_bps_of_target")
    bps = caps.get(stage.value)
    return 1.0 if bps is None else float(bps) / float(policy_data("execution", "bps_per_unit"))


@dataclass(frozen=True)
class RiskLimits:
    """The declared envelope (keyguard.yaml's worker config). None means no cap for that check."""

    max_order_notional: float | None = None
    max_order_share_of_portfolio: float | None = None
    max_orders_per_minute: int | None = None
    max_position: Mapping[str, float] = field(default_factory=dict)
    daily_loss_limit: float | None = None
    stage: Stage = Stage.SANDBOX
    target_allocation: float | None = None

    def stage_cap(self) -> float | None:
        """Largest exposure (quote currency) per asset the current stage allows."""
        if self.target_allocation is None:
            return None
        return self.target_allocation * stage_allocation_share(self.stage)


@dataclass(frozen=True)
class OrderCheck:
    """The facts of an order the checks need: base asset, signed direction, size and a price for notional."""

    symbol: str
    base_asset: str
    side: str  # BUY | SELL
    quantity: float
    price: float

    @property
    def signed_qty(self) -> float:
        return self.quantity if self.side == "BUY" else -self.quantity

    @property
    def notional(self) -> float:
        return self.quantity * self.price


@dataclass
class RiskSnapshot:
    """Live facts the checks read; the worker keeps it current (fills, PnL, kill switch refresh)."""

    kill_switch_engaged: bool = False
    trading_state: TradingState = TradingState.ACTIVE
    positions: dict[str, float] = field(default_factory=dict)
    daily_pnl: float = 0.0
    # False while today's PnL cannot be worked out (an asset moved today has no price): `daily_pnl` is then only
    # the last value known, and a daily loss limit admits reducing orders alone.
    daily_pnl_known: bool = True
    portfolio_value: float = 0.0
    order_times: deque[float] = field(default_factory=deque)

    def orders_in_last_minute(self, now: float) -> int:
        times = self.order_times
        while times and times[0] <= now - 60.0:
            times.popleft()
        return len(times)

    def record_order(self, now: float) -> None:
        self.order_times.append(now)


@dataclass(frozen=True)
class Refusal:
    code: str
    message: str


def is_reducing(order: OrderCheck, position: float) -> bool:
    """An order that moves the position toward zero without crossing it."""
    if position > 0:
        return order.side == "SELL" and order.quantity <= position + 1e-12
    if position < 0:
        return order.side == "BUY" and order.quantity <= -position + 1e-12
    return False


def check_order(order: OrderCheck, limits: RiskLimits, snap: RiskSnapshot, now: float,
                in_flight: float = 0.0) -> Refusal | None:
    """Every pre-trade check, cheapest and most absolute first. Returns the first refusal, or None to send.

    `in_flight` is the signed quantity of the asset in orders already let through in this order's direction that is
    not in the snapshot's positions (a BUY's buys, a SELL's sells, negative): orders not answered yet, whose outcome
    is unknown, or resting at the exchange unfilled. Each is judged as if they had all filled, so neither two orders
    sent at once nor a pile of resting limit orders can together pass a cap none passes alone."""
    if snap.kill_switch_engaged:
        return Refusal(KILL_SWITCH, "kill switch engaged: no orders until it is released")
    if order.quantity <= 0 or order.price <= 0:
        return Refusal(INVALID_ORDER, f"{order.symbol}: quantity and price must be positive")
    if snap.trading_state is TradingState.HALTED:
        return Refusal(STATE_HALTED, "trading state HALTED: no orders")
    position = snap.positions.get(order.base_asset, 0.0) + in_flight
    reducing = is_reducing(order, position)
    if snap.trading_state is TradingState.REDUCING and not reducing:
        return Refusal(STATE_REDUCING, f"trading state REDUCING: {order.side} {order.base_asset} would add exposure")
    if limits.daily_loss_limit is not None and not snap.daily_pnl_known and not reducing:
        return Refusal(DAILY_LOSS, f"today's PnL is unknown (no price for an asset moved today), so the daily loss "
                                   f"limit {limits.daily_loss_limit:.2f} cannot be checked: only reducing orders")
    if limits.daily_loss_limit is not None and snap.daily_pnl <= -limits.daily_loss_limit and not reducing:
        return Refusal(DAILY_LOSS, f"daily loss {-snap.daily_pnl:.2f} reached the limit {limits.daily_loss_limit:.2f}:"
                                   " only reducing orders")
    notional = order.notional
    if limits.max_order_notional is not None and notional > limits.max_order_notional:
        return Refusal(MAX_NOTIONAL,
                       f"order notional {notional:.2f} > max_order_notional {limits.max_order_notional:.2f}")
    if limits.max_order_share_of_portfolio is not None:
        allowed = limits.max_order_share_of_portfolio * snap.portfolio_value
        if notional > allowed:
            return Refusal(MAX_ORDER_SHARE, f"order notional {notional:.2f} > {limits.max_order_share_of_portfolio:.2%}"
                                            f" of portfolio {snap.portfolio_value:.2f}")
    if limits.max_orders_per_minute is not None and snap.orders_in_last_minute(now) >= limits.max_orders_per_minute:
        return Refusal(ORDERS_PER_MINUTE, f"{limits.max_orders_per_minute} orders in the last minute already")
    after = position + order.signed_qty
    if not reducing:
        cap = limits.max_position.get(order.base_asset)
        if cap is not None and abs(after) > cap:
            pending = f" counting {abs(in_flight):g} in orders not yet answered or filled" if in_flight else ""
            return Refusal(MAX_POSITION, f"{order.base_asset} position would be {after:g}{pending} > max_position "
                                         f"{cap:g}")
        stage_cap = limits.stage_cap()
        if stage_cap is not None and (notional > stage_cap or abs(after) * order.price > stage_cap):
            return Refusal(STAGE_CAP, f"stage {limits.stage.value} allows {stage_cap:.2f} exposure per asset;"
                                      f" this order makes {max(notional, abs(after) * order.price):.2f}")
    return None
