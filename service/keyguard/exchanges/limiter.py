"""The limiter every adapter call passes through. The worker supplies the real, host-wide one
(keyguard.worker.limiter.SharedRateLimiter has this shape); the default only honours what the exchange said."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from keyguard.exchanges.errors import Banned, RateLimited


class RequestLimiter(Protocol):
    def acquire(self, method: str, path: str, params: Mapping[str, Any] | None = None, *,
                deadline_s: float | None = None) -> Any:
        """Charge one request (or refuse it); the returned permit is handed back to observe()."""
        ...

    def observe(self, permit: Any, status: int, headers: Mapping[str, str]) -> None:
        """Learn from the response: usage headers, and 429/418 with Retry-After."""
        ...


class RetryAfterLimiter:
    """No budget of its own; after a 429 or 418 it refuses every call until Retry-After has passed,
    so an adapter never walks into a ban by itself."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._lock = threading.Lock()
        self._blocked_until = 0.0
        self._banned = False
        self.used_weight: int | None = None

    def acquire(self, method: str, path: str, params: Mapping[str, Any] | None = None, *,
                deadline_s: float | None = None) -> None:
        with self._lock:
            left = self._blocked_until - self._clock()
            if left > 0:
                error = Banned if self._banned else RateLimited
                raise error(f"{method} {path} not sent: the exchange asked for {left:.0f}s of quiet", left)

    def observe(self, permit: Any, status: int, headers: Mapping[str, str]) -> None:
        lowered = {k.lower(): v for k, v in headers.items()}
        used = lowered.get("x-mbx-used-weight-1m") or lowered.get("x-mbx-used-weight")
        if used and used.isdigit():
            self.used_weight = int(used)
        if status in (418, 429):
            try:
                retry = float(lowered.get("retry-after", "60"))
            except ValueError:
                retry = 60.0
            with self._lock:
                self._blocked_until = max(self._blocked_until, self._clock() + retry)
                self._banned = status == 418
