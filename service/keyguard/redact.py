"""Redaction applied before anything is logged, raised to a user, stored or alerted."""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any

SENSITIVE_NAME = re.compile(r"(secret|key|pass|token|credential|signature|sign|auth)", re.IGNORECASE)
# Names that contain "key" but are identifiers, not secrets.
SAFE_NAMES = frozenset({"key_id", "keys", "api_key_id", "kms_key_id", "kms_key", "key_purpose", "rule_key"})
_QUERY_SIGNATURE = re.compile(r"(?i)(signature|sign|apikey|api_key|secret|token|passphrase)=([^&\s\"']+)")
_HEADER_SECRET = re.compile(
    r"(?i)(x-mbx-apikey|ok-access-key|ok-access-sign|ok-access-passphrase|x-bapi-api-key|x-bapi-sign|authorization)"
    r"(['\"]?\s*[:=]\s*['\"]?)([^'\",\s}]+)"
)
# AWS SDK wire logs carry secret values as JSON fields.
_JSON_SECRET_FIELD = re.compile(
    r'(?i)((?:\\\\)*\\?"(?:SecretString|SecretBinary|secret|api_secret|secret_key|passphrase)(?:\\\\)*\\?"\s*:\s*'
    r'(?:\\\\)*\\?")(.*?)(?=(?:\\\\)*\\?")'
)
# The password in a URL's user info: postgresql://user:PASSWORD@host, mailto://user:PASSWORD@host.
_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@'\"]*:)([^@\s'\"]+)(@)")
REDACTED = "***"

_registered_secrets: set[str] = set()
# The registered secrets, longest first (a secret that contains another is scrubbed whole), kept sorted on register
# rather than on every redaction: reading 5,000 findings redacts some 50,000 strings.
_longest_first: tuple[str, ...] = ()


def register_secret(value: str | None) -> None:
    """Remember a secret value so any later text containing it is scrubbed (min 6 chars to avoid noise)."""
    global _longest_first
    if value and len(value) >= 6 and value not in _registered_secrets:
        _registered_secrets.add(value)
        _longest_first = tuple(sorted(_registered_secrets, key=len, reverse=True))


def redact_text(text: str, extra: Iterable[str] = ()) -> str:
    out = text
    # Every pattern needs an "=" or a ":" (query parameters, URL user info, JSON fields, headers): text with
    # neither cannot match one, and most evidence strings are plain words and numbers.
    if "=" in out or ":" in out:
        out = _QUERY_SIGNATURE.sub(lambda m: f"{m.group(1)}={REDACTED}", out)
        out = _URL_PASSWORD.sub(lambda m: f"{m.group(1)}{REDACTED}{m.group(3)}", out)
        out = _JSON_SECRET_FIELD.sub(lambda m: f"{m.group(1)}{REDACTED}", out)
        out = _HEADER_SECRET.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", out)
    extra = tuple(extra)
    secrets = sorted({*_longest_first, *extra}, key=len, reverse=True) if extra else _longest_first
    for secret in secrets:
        if secret and len(secret) >= 6 and secret in out:
            out = out.replace(secret, REDACTED)
    return out


@functools.lru_cache(maxsize=4096)
def is_sensitive_name(name: str) -> bool:
    return name.lower() not in SAFE_NAMES and bool(SENSITIVE_NAME.search(name))


def redact_value(value: Any) -> Any:
    """Deep-copy a JSON-like value with sensitive fields masked and registered secrets scrubbed."""
    # The common JSON types first: an abstract Mapping check costs more than a plain one, per value.
    if isinstance(value, str):
        return redact_text(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, dict | Mapping):
        return {
            k: (REDACTED if isinstance(k, str) and is_sensitive_name(k) and v not in (None, "", [], {})
                and not isinstance(v, bool) else redact_value(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact_value(v) for v in value]
    return value


class RedactingFilter(logging.Filter):
    """Scrubs every record's rendered message, so secrets never reach a handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed format string must not drop the record
            message = str(record.msg)
        record.msg = redact_text(message)
        record.args = None
        return True


_factory_installed = False


def install_log_redaction(logger: logging.Logger | None = None) -> None:
    """Scrub every log record when it is created, whichever logger or handler it later reaches.

    A filter on the root logger does not see records propagated from child loggers (botocore, urllib3), so
    the record factory is the one place every record passes through."""
    global _factory_installed
    target = logger or logging.getLogger()
    if not any(isinstance(f, RedactingFilter) for f in target.filters):
        target.addFilter(RedactingFilter())
    if _factory_installed:
        return
    previous = logging.getLogRecordFactory()

    def redacting_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a malformed format string must not drop the record
            message = str(record.msg)
        record.msg, record.args = redact_text(message), None
        return record

    logging.setLogRecordFactory(redacting_factory)
    _factory_installed = True
