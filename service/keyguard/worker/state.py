"""The worker's live state, shaped as the `execution` policy input (docs/contracts.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from keyguard.worker.killswitch import KillSwitch
from keyguard.worker.orders import OrderExecutor
from keyguard.worker.reconnect import ReconnectPolicy
from keyguard.worker.retry import RetryPolicy
from keyguard.worker.risk import RiskLimits, TradingState


def _rfc3339(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def kill_switch_document(switch: KillSwitch | None) -> dict[str, Any]:
    """Enabled only when a switch object is consulted before orders; tested = when it was last engaged."""
    if switch is None:
        return {"enabled": False, "last_tested_at": None}
    return {"enabled": True, "last_tested_at": switch.state.last_engaged_at or None}


def order_retry_document(executor: OrderExecutor) -> dict[str, Any]:
    """What the executor does with an unknown outcome: ids minted per intent, looked up unless look-ups are off."""
    return {"client_order_ids": executor.mints_client_order_ids, "status_lookup": executor.status_lookup}


@dataclass
class LiveState:
    worker: str
    now: float
    limits: RiskLimits
    portfolio_value: float
    exchange_limits: dict[str, int]
    rate_limit_budget_fraction: float
    min_fill_ratio: float | None
    # The objects that really place orders, retry reads, reconnect and stop trading: the document reads them.
    executor: OrderExecutor
    data_retry: RetryPolicy
    reconnect: ReconnectPolicy
    kill_switch: KillSwitch | None
    kill_switch_engaged: bool
    trading_state: TradingState
    orders_last_minute: int
    largest_order_notional_today: float
    positions: dict[str, float]
    daily_pnl: float
    used_weight_1m: float
    weight_limit_1m: int
    heartbeat_at: float | None
    stage_history: list[dict[str, str]] = field(default_factory=list)
    key_permissions: dict[str, bool | None] | None = None
    counters: dict[str, int] = field(default_factory=dict)

    def to_policy_input(self) -> dict[str, Any]:
        lim = self.limits
        return {
            "kind": "execution",
            "now": _rfc3339(self.now),
            "worker": self.worker,
            "portfolio_value": self.portfolio_value,
            "exchange_limits": self.exchange_limits,
            "config": {
                "max_order_notional": lim.max_order_notional,
                "max_orders_per_minute": lim.max_orders_per_minute,
                "max_position": dict(lim.max_position),
                "daily_loss_limit": lim.daily_loss_limit,
                "kill_switch": kill_switch_document(self.kill_switch),
                "rate_limit_budget_fraction": self.rate_limit_budget_fraction,
                "order_retry": order_retry_document(self.executor),
                "data_retry": self.data_retry.document(),
                "reconnect": self.reconnect.document(),
                "min_fill_ratio": self.min_fill_ratio,
                "stage": lim.stage.value,
                "target_allocation": lim.target_allocation,
            },
            "golive": {
                "history": self.stage_history,
                "key_permissions": self.key_permissions,
            },
            "state": {
                "heartbeat_at": _rfc3339(self.heartbeat_at),
                "kill_switch_engaged": self.kill_switch_engaged,
                "trading_state": self.trading_state.value,
                "orders_last_minute": self.orders_last_minute,
                "largest_order_notional_today": self.largest_order_notional_today,
                "positions": dict(self.positions),
                "daily_pnl": self.daily_pnl,
                "used_weight_1m": self.used_weight_1m,
                "weight_limit_1m": self.weight_limit_1m,
            },
        }
