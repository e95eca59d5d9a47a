"""The gateway's live execution document: every field read from a running object (the configuration objects it
trades with, its limiter, its kill switches, its counters), none restated from a default."""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keyguard.exchanges.budget import ORDERS, REQUEST_WEIGHT
from keyguard.worker.state import kill_switch_document, order_retry_document

if TYPE_CHECKING:
    from keyguard.gateway.app import Gateway


def _rfc3339(ts: float | None) -> str | None:
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _per_minute(limit: float, interval_s: float) -> int:
    return int(limit * 60 / interval_s)


def _since(iso: str) -> float:
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def orders_since(times: Iterable[float], now: float, since: float) -> int:
    """Orders admitted in the last minute and after `since` (the moment a kill switch engaged)."""
    start = max(now - 60.0, since)
    # Copied in one step first: order threads append to (and the envelope trims) the deque while this document is
    # built, and a deque changed during a Python-level loop over it raises.
    return sum(1 for t in tuple(times) if t > start)


def execution_document(gw: Gateway) -> dict[str, Any]:
    now = gw.clock()
    env = gw.envelope
    engaged = env.account_engaged()
    # While the account's switch is engaged the gateway refuses every order: that is the state it applies, and only
    # orders admitted after the switch engaged would be orders flowing through it.
    engaged_at = _since(gw.kill_switch.state.changed_at) if engaged and gw.kill_switch is not None else 0.0
    limits = env.account_limits
    pools = gw.limiter.pools
    weight = next((p for p in pools if p.kind == REQUEST_WEIGHT), None)
    orders = sorted((p for p in pools if p.kind == ORDERS), key=lambda p: p.interval_s)
    used = next((u["used"] for k, u in gw.limiter.usage().items() if f":{REQUEST_WEIGHT}:" in k), None)
    # The fast lane's verdicts count as orders in the envelope's windows until used or released (a reservation): the
    # document counts the orders made.
    reserved = gw.lane.reserved_times() if gw.lane is not None else {}
    everyone = [t for times in reserved.values() for t in times]
    bots = {}
    for bot, watch in sorted(env.bots.items()):
        held = watch.switch.refresh()
        bots[bot] = {
            "kill_switch_engaged": held,
            "held_reason": (watch.switch.state.reason or None) if held else None,
            "trading_state": "HALTED" if held or engaged else watch.snapshot.trading_state.value,
            "orders_last_minute": orders_since(_made(env.order_times(bot), reserved.get(bot, [])), now,
                                               _since(watch.switch.state.changed_at) if held else engaged_at),
            "refusals": dict(watch.refusals),
            "positions": dict(watch.snapshot.positions),
            "daily_pnl": watch.snapshot.daily_pnl if watch.snapshot.daily_pnl_known else None,
        }
    return {
        "kind": "execution",
        "now": _rfc3339(now),
        "worker": gw.config.gateway,
        "portfolio_value": env.account.portfolio_value,
        "exchange_limits": {
            "request_weight_per_minute": _per_minute(weight.limit, weight.interval_s) if weight else None,
            "orders_per_10s": orders[0].limit if orders else None,
            "orders_per_day": orders[-1].limit if orders else None,
        },
        "config": {
            "max_order_notional": limits.max_order_notional,
            "max_orders_per_minute": limits.max_orders_per_minute,
            "max_position": dict(limits.max_position),
            "daily_loss_limit": limits.daily_loss_limit,
            "kill_switch": kill_switch_document(gw.kill_switch),
            "rate_limit_budget_fraction": gw.limiter.headroom,
            "order_retry": order_retry_document(gw.executor),
            "data_retry": gw.data_retry.document(),
            "reconnect": gw.reconnect.document(),
            "min_fill_ratio": gw.config.account.min_fill_ratio,
            "stage": limits.stage.value,
            "target_allocation": limits.target_allocation,
        },
        "golive": {"history": gw.stages.entries(), "key_permissions": gw.key_permissions},
        "state": {
            "heartbeat_at": _rfc3339(gw.heartbeat_at),
            "kill_switch_engaged": engaged,
            "trading_state": "HALTED" if engaged else env.trading.account().value,
            "orders_last_minute": orders_since(_made(env.order_times(), everyone), now, engaged_at),
            "largest_order_notional_today": env.largest_notional_today,
            "positions": dict(env.account.positions),
            "daily_pnl": env.account.daily_pnl if env.account.daily_pnl_known else None,
            "used_weight_1m": used,
            "weight_limit_1m": int(weight.limit) if weight else None,
            "bots": bots,
            "fast_lane": None if gw.lane_stats is None else {
                "running": gw.lane_stats.running,
                "problem": gw.lane_stats.problem,
                "orders_sent": gw.lane_stats.orders_placed + gw.lane_stats.orders_resolved,
                "orders_handed_back": gw.lane_stats.orders_resolved,
                "verdicts_outstanding": len(everyone),
            },
        },
    }


def _made(times: Iterable[float], reserved: list[float]) -> list[float]:
    """`times` without one entry per reservation."""
    left = Counter(reserved)
    made = []
    for t in times:
        if left[t] > 0:
            left[t] -= 1
        else:
            made.append(t)
    return made


def publish(gw: Gateway) -> Path:
    """Atomically replace <state_dir>/live_state.json, which the service's execution check reads."""
    path = gw.config.live_state_path
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(execution_document(gw)))
    os.replace(tmp, path)
    return path
