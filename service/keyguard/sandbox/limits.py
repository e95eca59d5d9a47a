"""Fixed-window counters and the 429 -> 418 escalation, as plain objects driven by the caller's clock."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field


@dataclass
class WindowCounter:
    """Counts units per key in fixed windows aligned to the epoch, as Binance resets at interval boundaries."""

    limit: int
    window_s: float
    # Windows start at origin + k * window_s; 0 = epoch-aligned like Binance, sandbox start = no boundary mid-test.
    origin: float = 0.0
    _counts: dict[str, tuple[int, float]] = field(default_factory=dict)

    def window_start(self, now: float) -> float:
        return self.origin + math.floor((now - self.origin) / self.window_s) * self.window_s

    def used(self, key: str, now: float) -> float:
        return self._current(key, now)[1]

    def _current(self, key: str, now: float) -> tuple[float, float]:
        start = self.window_start(now)
        index, count = self._counts.get(key, (0, 0.0))
        if index != self._index(start):
            return start, 0.0
        return start, count

    def add(self, key: str, units: float, now: float) -> float:
        start, count = self._current(key, now)
        count += units
        self._counts[key] = (self._index(start), count)
        return count

    def _index(self, start: float) -> int:
        return round((start - self.origin) / self.window_s)

    def seconds_to_reset(self, now: float) -> int:
        return max(1, math.ceil(self.window_start(now) + self.window_s - now))


@dataclass
class CallLog:
    """Admitted calls per key, for limits written "N requests per T seconds" and counted over the last T seconds
    (OKX's per-endpoint, per-user-ID limits): a call over the limit is refused and not logged, so a client that
    waits T seconds after its last admitted call always gets through."""

    _times: dict[str, deque[float]] = field(default_factory=dict)

    def admit(self, key: str, limit: int, window_s: float, now: float) -> bool:
        times = self._times.setdefault(key, deque())
        while times and times[0] <= now - window_s:
            times.popleft()
        if len(times) >= limit:
            return False
        times.append(now)
        return True


@dataclass
class IpStanding:
    backoff_since: float = 0.0
    backoff_until: float = 0.0
    banned_until: float = 0.0
    bans: int = 0


@dataclass
class BanLadder:
    """Binance's rule: keep sending after a 429 and the IP is banned (418), each ban longer than the last.

    A request that arrives within `grace_s` of the 429 was already on its way when the client got the answer:
    it is counted and refused like any over-limit request, but it is not a failure to back off."""

    base_s: float
    max_s: float
    grace_s: float = 0.0
    standings: dict[str, IpStanding] = field(default_factory=dict)

    def standing(self, ip: str) -> IpStanding:
        return self.standings.setdefault(ip, IpStanding())

    def check(self, ip: str, now: float) -> float | None:
        """Seconds of ban left for this request, escalating if it arrived during a back-off; None if allowed."""
        s = self.standing(ip)
        if now < s.banned_until:
            return s.banned_until - now
        if now < s.backoff_until and now - s.backoff_since >= self.grace_s:
            s.bans += 1
            duration = min(self.base_s * (2 ** (s.bans - 1)), self.max_s)
            s.banned_until = now + duration
            s.backoff_until = 0.0
            return duration
        return None

    def back_off(self, ip: str, until: float, now: float) -> None:
        s = self.standing(ip)
        if now >= s.backoff_until:  # a new back-off; a 429 inside the grace does not restart it
            s.backoff_since = now
        s.backoff_until = max(s.backoff_until, until)
