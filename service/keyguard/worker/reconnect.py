"""Reconnect with exponential backoff and full jitter, so a fleet of streams never reconnects in lock-step
(the reconnect storm that earns an IP ban in a volatile market)."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from keyguard.worker.retry import Backoff, spaced

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class ReconnectPolicy:
    base_s: float = 0.5
    max_delay_s: float = 60.0
    # A connection that stayed up this long counts as healthy: the next failure starts from base again.
    healthy_after_s: float = 30.0
    backoff: Backoff = "exponential"
    jitter: bool = True
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, failures: int) -> float:
        """Full jitter: uniform in [0, min(max, base * 2**(failures-1))] (or the configured flat schedule)."""
        wait = spaced(max(0, failures - 1), self.base_s, self.max_delay_s, self.backoff)
        return self.rng.uniform(0.0, wait) if self.jitter else wait

    def document(self) -> dict[str, object]:
        """This policy as the execution document's `config.reconnect` reports it."""
        return {"backoff": self.backoff, "jitter": self.jitter, "max_delay_s": self.max_delay_s}


def run_with_reconnect(
    connect_and_serve: Callable[[], None],
    stop: threading.Event,
    policy: ReconnectPolicy | None = None,
    *,
    clock: Callable[[], float] = time.monotonic,
    on_failure: Callable[[int, float, BaseException], None] | None = None,
) -> int:
    """Run `connect_and_serve` until `stop` is set, reconnecting after each failure. Returns the failure count."""
    pol = policy or ReconnectPolicy()
    failures = 0
    total = 0
    while not stop.is_set():
        started = clock()
        try:
            connect_and_serve()
            failures = 0
            continue
        except Exception as exc:  # every failure of a stream is retried; stop ends the loop
            if clock() - started >= pol.healthy_after_s:
                failures = 0
            failures += 1
            total += 1
            delay = pol.delay(failures)
            if on_failure is not None:
                on_failure(failures, delay, exc)
            log.warning("stream failed (%s); reconnecting in %.2fs", type(exc).__name__, delay)
            stop.wait(delay)
    return total
