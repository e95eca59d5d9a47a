"""How often one token may trigger an expensive action (a full check run inspects every key at its exchange).
Plain arithmetic on a clock the caller passes; kept per process, so each replica allows the limit on its own."""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass, field


@dataclass
class TokenQuota:
    """At most `limit` admissions per `window_s` per token, over a sliding window."""

    limit: int
    window_s: float = 60.0
    _admitted: dict[str, deque[float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def charge(self, token_name: str, now: float) -> int | None:
        """Admit one call now and return None, or return the whole seconds to wait before the next admission."""
        with self._lock:
            admitted = self._admitted.setdefault(token_name, deque())
            while admitted and admitted[0] <= now - self.window_s:
                admitted.popleft()
            if len(admitted) < self.limit:
                admitted.append(now)
                return None
            return max(1, math.ceil(admitted[0] + self.window_s - now))
