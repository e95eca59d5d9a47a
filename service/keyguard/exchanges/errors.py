"""Typed exchange errors: each says what the exchange refused and what to do; none carries a secret."""

from __future__ import annotations

from keyguard.errors import ExchangeError


class InvalidKey(ExchangeError):
    """The exchange does not accept the key (unknown, revoked, malformed, or signed with the wrong secret)."""


class IPRefused(ExchangeError):
    """The key exists but the exchange refuses calls from this source address."""


class PermissionRefused(ExchangeError):
    """The key lacks the permission the endpoint needs."""


class AmbiguousRefusal(InvalidKey, IPRefused, PermissionRefused):
    """Binance -2015: invalid key, IP not allowed, or permission missing; the exchange does not say which."""


class ExchangeTimeout(ExchangeError):
    """No answer in time: the outcome is unknown, never a success and never a refusal."""


class ExchangeUnavailable(ExchangeError):
    """A 5xx or a connection cut: the outcome is unknown."""


class MalformedResponse(ExchangeError):
    """The exchange answered with a body that is not the documented shape."""


class ClockSkew(ExchangeError):
    """The request's timestamp fell outside the exchange's receive window: fix the host clock."""


class RateLimited(ExchangeError):
    """429: over the exchange's limit; wait `retry_after` seconds before sending anything."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class Banned(RateLimited):
    """418: the source address is banned for `retry_after` seconds."""
