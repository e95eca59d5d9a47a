"""A small demo strategy: alternately buy and sell a fixed quote amount, reconcile periodically.

It exists to exercise the worker end to end against the sandbox (`keyguard worker run`, `keyguard demo`).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from pathlib import Path

from keyguard.errors import KeyguardError
from keyguard.worker.config import WorkerConfig
from keyguard.worker.orders import OrderIntent, OrderResult
from keyguard.worker.runtime import ExecutionWorker, build_worker
from keyguard.worker.state import LiveState

log = logging.getLogger(__name__)


def round_down(qty: float, step: float = 0.00001) -> float:
    return math.floor(qty / step) * step


def run_strategy(
    worker: ExecutionWorker,
    stop: threading.Event,
    *,
    on_order: Callable[[OrderResult], None] | None = None,
    on_state: Callable[[LiveState], None] | None = None,
) -> list[OrderResult]:
    cfg = worker.config.strategy
    results: list[OrderResult] = []
    failures = 0
    while not stop.is_set():
        try:
            worker.start()
            break
        except KeyguardError as exc:  # the exchange is unreachable: come back on the reconnect policy's schedule
            failures += 1
            delay = worker.reconnect.delay(failures)
            log.error("worker start failed (%s); reconnecting in %.2fs", exc, delay)
            stop.wait(delay)
    failures = 0
    last_reconcile = time.monotonic()
    side = "BUY"
    while not stop.is_set() and (cfg.orders is None or len(results) < cfg.orders):
        wait = cfg.interval_s
        try:
            price = worker.price(cfg.symbol)
            worker.mark_to_market()
            qty = round_down(cfg.quote_per_order / price)
            result = worker.submit(OrderIntent(cfg.symbol, cfg.base_asset, side, qty, reference_price=price))
            results.append(result)
            if on_order is not None:
                on_order(result)
            if result.actionable(worker.config.risk.min_fill_ratio):
                side = "SELL" if side == "BUY" else "BUY"
            if time.monotonic() - last_reconcile >= worker.config.reconcile_interval_s:
                worker.reconcile()
                last_reconcile = time.monotonic()
            failures = 0
        except KeyguardError as exc:  # one failed cycle is reported, the loop carries on after the backoff
            failures += 1
            wait = max(wait, worker.reconnect.delay(failures))
            log.error("demo strategy cycle failed (%s); next attempt in %.2fs", exc, wait)
        worker.heartbeat()
        if on_state is not None:
            on_state(worker.live_state())
        stop.wait(wait)
    return results


def run_demo_worker(
    base_url: str,
    api_key: str,
    api_secret: str,
    *,
    state_dir: str | Path,
    stop: threading.Event | None = None,
    config: WorkerConfig | None = None,
    on_state: Callable[[LiveState], None] | None = None,
) -> tuple[threading.Thread, threading.Event]:
    """Start the worker with the demo strategy in a daemon thread against `base_url` (e.g. the sandbox).

    Returns (thread, stop event); set the event to stop it. `config` overrides the defaults (sandbox stage,
    BTCUSDT, unbounded order count, 2 s interval); its state_dir is replaced by `state_dir`.
    """
    cfg = (config or WorkerConfig()).model_copy(deep=True)
    cfg.state_dir = Path(state_dir)
    if config is None:
        cfg.strategy.orders = None
        cfg.strategy.interval_s = 2.0
    stop_event = stop or threading.Event()
    worker = build_worker(cfg, api_key, api_secret, base_url)

    def target() -> None:
        try:
            run_strategy(worker, stop_event, on_state=on_state)
        except Exception:  # a demo thread must report, not die silently
            log.exception("demo worker stopped on an error")
        finally:
            worker.client.close()

    thread = threading.Thread(target=target, name="keyguard-demo-worker", daemon=True)
    thread.start()
    return thread, stop_event
