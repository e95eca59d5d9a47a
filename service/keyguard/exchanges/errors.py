"""One family for every exchange call, whoever sends it (the worker's orders, the gateway, the key-inspection
adapters): no usable answer (`OutcomeUnknown`), a definite refusal (`ExchangeRejected`, with the exchange's status,
code and message), or the limiter's own refusal to send (`RateLimitRefused`). Binance's codes are turned into
the family by `binance_error`, in one place. No message carries a secret: the exchange's text is redacted."""

from __future__ import annotations

from keyguard.errors import ExchangeError
from keyguard.redact import redact_text


class OutcomeUnknown(ExchangeError):
    """No usable answer (timeout, reset, 5xx, a body that cannot be read): the request may or may not have taken
    effect, so it is never a success and never a refusal."""


class ExchangeTimeout(OutcomeUnknown):
    """No answer in time."""


class ExchangeUnavailable(OutcomeUnknown):
    """A 5xx or a connection cut."""


class MalformedResponse(OutcomeUnknown):
    """An answer that is not JSON, or not the documented shape."""


class ExchangeRejected(ExchangeError):
    """The exchange answered with an error: the request definitively did not take effect.

    `context` names the call ("binance GET /api/v3/order"); `message` is the exchange's own text, kept redacted;
    `note` is Keyguard's addition to the rendered message."""

    def __init__(self, status: int, code: int | None, message: str, *, context: str = "", note: str = "") -> None:
        self.status = status
        self.code = code
        self.exchange_message = redact_text(message)
        self.context = context
        answer = f"HTTP {status}" + (f" code {code}" if code is not None else "") + f": {self.exchange_message}{note}"
        super().__init__(f"{context}: {answer}" if context else answer)


class InvalidKey(ExchangeRejected):
    """The exchange does not accept the key (unknown, revoked, malformed, or signed with the wrong secret)."""


class IPRefused(ExchangeRejected):
    """The key exists but the exchange refuses calls from this source address."""


class PermissionRefused(ExchangeRejected):
    """The key lacks the permission the endpoint needs."""


class AmbiguousRefusal(InvalidKey, IPRefused, PermissionRefused):
    """Binance -2015: invalid key, IP not allowed, or permission missing; the exchange does not say which."""


class ClockSkew(ExchangeRejected):
    """The request's timestamp fell outside the exchange's receive window: fix the host clock."""


class RateLimited(ExchangeRejected):
    """429: over the exchange's limit; send nothing from this address for `retry_after` seconds."""

    def __init__(self, status: int, code: int | None, message: str, retry_after: float | None = None, *,
                 context: str = "") -> None:
        self.retry_after = retry_after
        wait = "" if retry_after is None else f" (retry after {retry_after:g}s)"
        super().__init__(status, code, message, context=context, note=wait)


class Banned(RateLimited):
    """418: the source address is banned for `retry_after` seconds."""


class RateLimitRefused(ExchangeError):
    """The limiter refused to send (no budget by the caller's deadline, or a 429/418 back-off in force): the request
    never reached the exchange. `code` says which (keyguard.exchanges.budget.RATE_*)."""

    def __init__(self, code: str, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.retry_after_s = retry_after_s

# -2011 "Unknown order sent.": a cancel found nothing to cancel (the order, or every open order of a symbol, is
# already filled or cancelled). Whoever cancels reads the open orders back to know the outcome.
UNKNOWN_ORDER = -2011

# Binance's error codes for a refusal that says something about the key or the host; any other code is a plain
# ExchangeRejected. From Binance's spot error-code documentation.
BINANCE_REFUSALS: dict[int, type[ExchangeRejected]] = {
    -1021: ClockSkew,  # timestamp outside recvWindow
    -1022: InvalidKey,  # signature not valid (wrong secret)
    -1099: InvalidKey,  # not found, authenticated, or authorized
    -2008: InvalidKey,  # invalid API-key ID
    -2014: InvalidKey,  # API-key format invalid
    -2015: AmbiguousRefusal,  # invalid API-key, IP, or permissions for action
    -2017: PermissionRefused,  # API keys are locked on this account
}


def binance_error(status: int, code: int | None, message: str, *, retry_after: float | None = None,
                  context: str = "") -> ExchangeRejected:
    """The family member for a Binance error answer: 418 Banned and 429 RateLimited (each with Retry-After), else
    by the error code (BINANCE_REFUSALS), else a plain ExchangeRejected."""
    if status == 418:
        return Banned(status, code, message or "IP banned", retry_after, context=context)
    if status == 429:
        return RateLimited(status, code, message or "rate limited", retry_after, context=context)
    kind = BINANCE_REFUSALS.get(code, ExchangeRejected) if code is not None else ExchangeRejected
    return kind(status, code, message, context=context)
