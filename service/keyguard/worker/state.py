"""The worker's live state, shaped as the `execution` policy input (docs/contracts.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from keyguard.worker.risk import RiskLimits, TradingState


def _rfc3339(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


@dataclass
class LiveState:
    worker: str
    now: float
    limits: RiskLimits
    portfolio_value: float
    exchange_limits: dict[str, int]
    rate_limit_budget_fraction: float
    min_fill_ratio: float | None
    data_retry_attempts: int
    kill_switch_engaged: bool
    kill_switch_last_tested_at: str | None
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
                "kill_switch": {"enabled": True, "last_tested_at": self.kill_switch_last_tested_at},
                "rate_limit_budget_fraction": self.rate_limit_budget_fraction,
                "order_retry": {"client_order_ids": True, "status_lookup": True},
                "data_retry": {"attempts": self.data_retry_attempts, "backoff": "exponential", "jitter": True},
                "reconnect": {"backoff": "exponential", "jitter": True, "max_delay_s": 60},
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
