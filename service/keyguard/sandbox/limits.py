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

    def used_by_prefix(self, prefix: str, now: float) -> float:
        """The sum over every key that starts with `prefix` (an IP's pools, one per endpoint)."""
        return sum(self.used(key, now) for key in list(self._counts) if key.startswith(prefix))

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
    # Requests sent during the current back-off once its grace had passed: Binance's "failing to back off".
    violations: int = 0
    # 429s answered to this IP, /api and SAPI alike: what a test or bench reads to know the exchange refused.
    refusals: int = 0


@dataclass
class BanLadder:
    """Binance: "Repeatedly violating rate limits and/or failing to back off after receiving 429s will result in an
    automated IP ban (HTTP status 418)", and "IP bans are tracked and scale in duration for repeat offenders, from
    2 minutes to 3 days".

    A request sent while a 429's back-off lasts is a violation; the `violations_to_ban`-th violation of one back-off
    earns the ban (the ones before it are refused with 429 again), each ban twice as long as the last. A request that
    arrives within `grace_s` of the 429 was already on its way when the client got the answer: it is counted and
    refused like any over-limit request, but it is not a failure to back off."""

    base_s: float
    max_s: float
    grace_s: float = 0.0
    violations_to_ban: int = 1
    standings: dict[str, IpStanding] = field(default_factory=dict)

    def standing(self, ip: str) -> IpStanding:
        return self.standings.setdefault(ip, IpStanding())

    def ban_left(self, ip: str, now: float) -> float | None:
        """Seconds of ban left, without judging this request; None if not banned."""
        s = self.standing(ip)
        return s.banned_until - now if now < s.banned_until else None

    def check(self, ip: str, now: float) -> float | None:
        """Seconds of ban left for this request, banning if it is one violation too many; None if allowed."""
        left = self.ban_left(ip, now)
        if left is not None:
            return left
        s = self.standing(ip)
        if now < s.backoff_until and now - s.backoff_since >= self.grace_s:
            s.violations += 1
            if s.violations < self.violations_to_ban:
                return None
            s.bans += 1
            duration = min(self.base_s * (2 ** (s.bans - 1)), self.max_s)
            s.banned_until = now + duration
            s.backoff_until = 0.0
            s.violations = 0
            return duration
        return None

    def back_off(self, ip: str, until: float, now: float) -> None:
        s = self.standing(ip)
        s.refusals += 1
        if now >= s.backoff_until:  # a new back-off; a 429 inside one does not restart its grace or violations
            s.backoff_since = now
            s.violations = 0
        s.backoff_until = max(s.backoff_until, until)


@dataclass
class UnfilledOrderCount:
    """Binance's ORDERS limits (https://developers.binance.com/docs/binance-spot-api-docs/faqs/order_count_decrement):
    every order placed adds one to the account's count in each interval; an order's first fill takes `taker_credit`
    off every interval's current count (`maker_credit` if it first fills in the maker phase, which Binance says "may
    be decremented by more than one"), whenever the order was placed; cancels and expiries change nothing, and a
    count never goes below zero ("You do not get credit for order fills")."""

    counters: list[WindowCounter]
    taker_credit: int = 1
    maker_credit: int = 1

    def place(self, account: str, now: float) -> tuple[list[float], WindowCounter | None]:
        """Count one new order; (the count of each interval, in `counters` order; the interval over its limit).

        Binance (changelog 2025-04-08): "If the unfilled order count for intervalNum:DAY is exceeded, the unfilled
        order count for intervalNum:SECOND is no longer incremented": an interval over its limit stops the shorter
        ones from counting, and it is the one the refusal names."""
        counts = [0.0] * len(self.counters)
        over: WindowCounter | None = None
        for i in sorted(range(len(self.counters)), key=lambda i: self.counters[i].window_s, reverse=True):
            counter = self.counters[i]
            counts[i] = counter.used(account, now) if over is not None else counter.add(account, 1, now)
            if over is None and counts[i] > counter.limit:
                over = counter
        return counts, over

    def first_fill(self, account: str, maker: bool, now: float) -> None:
        credit = self.maker_credit if maker else self.taker_credit
        for counter in self.counters:
            counter.add(account, -min(credit, counter.used(account, now)), now)

    def counts(self, account: str, now: float) -> list[float]:
        return [counter.used(account, now) for counter in self.counters]
