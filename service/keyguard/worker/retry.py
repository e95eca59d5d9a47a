"""Retry schedules as objects: the worker and the gateway retry with these, and their live documents report these
same objects' fields, so a flawed schedule in the configuration is what the policy sees (KG-EXE-109/110)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal, TypeVar

from keyguard.exchanges.binance_client import ExchangeRejected, OutcomeUnknown
from keyguard.exchanges.budget import RateLimitRefused

T = TypeVar("T")

Backoff = Literal["exponential", "constant", "none"]


def spaced(n: int, base_s: float, cap_s: float, backoff: Backoff) -> float:
    """The n-th (0-based) wait before jitter: doubling from base, base every time, or no wait at all."""
    if backoff == "none":
        return 0.0
    return min(cap_s, base_s * (2**n if backoff == "exponential" else 1))


def backoff_delays(attempts: int, base_s: float, cap_s: float, rng: random.Random | None = None) -> Iterator[float]:
    """Exponential backoff with full jitter: the n-th delay is uniform in [0, min(cap, base * 2**n)]."""
    return RetryPolicy(attempts + 1, base_s, cap_s).delays(rng)


@dataclass(frozen=True)
class RetryPolicy:
    """How a read-only request (never an order) is retried on unknown outcomes and rate limits."""

    attempts: int = 4
    base_s: float = 0.1
    cap_s: float = 2.0
    backoff: Backoff = "exponential"
    jitter: bool = True

    def delays(self, rng: random.Random | None = None) -> Iterator[float]:
        """The waits between attempts (attempts - 1 of them); full jitter draws each in [0, wait]."""
        rand = rng or random.Random()
        for n in range(max(0, self.attempts - 1)):
            wait = spaced(n, self.base_s, self.cap_s, self.backoff)
            yield rand.uniform(0.0, wait) if self.jitter else wait

    def document(self) -> dict[str, object]:
        """This schedule as the execution document's `config.data_retry` reports it."""
        return {"attempts": self.attempts, "backoff": self.backoff, "jitter": self.jitter}


def retry_data_request(
    fn: Callable[[], T], policy: RetryPolicy | None = None, *,
    sleep: Callable[[float], None] = time.sleep, rng: random.Random | None = None,
) -> T:
    """Run `fn`, retrying unknown outcomes and rate limits on `policy`'s schedule; a definite refusal is final."""
    pol = policy or RetryPolicy()
    last: Exception | None = None
    for delay in [0.0, *pol.delays(rng)]:
        if delay:
            sleep(delay)
        try:
            return fn()
        except (OutcomeUnknown, RateLimitRefused) as exc:
            last = exc
        except ExchangeRejected as exc:
            if exc.status not in (418, 429):
                raise
            last = exc
    if last is None:
        raise ValueError("a retry policy needs at least one attempt")
    raise last
