"""Execution worker: shared weight-aware limiter, idempotent orders, risk checks, kill switch, reconciliation."""

from keyguard.worker.demo_strategy import run_demo_worker
from keyguard.worker.limiter import RateLimitRefused, SharedRateLimiter
from keyguard.worker.orders import OrderExecutor, OrderIntent, OrderResult
from keyguard.worker.risk import RiskLimits, Stage, TradingState, check_order
from keyguard.worker.runtime import ExecutionWorker, build_worker
from keyguard.worker.state import LiveState

__all__ = [
    "ExecutionWorker", "LiveState", "OrderExecutor", "OrderIntent", "OrderResult", "RateLimitRefused", "RiskLimits",
    "SharedRateLimiter", "Stage", "TradingState", "build_worker", "check_order", "run_demo_worker",
]
