"""One exception family. Every message names what is wrong (file, field, key) and what would be right."""

from __future__ import annotations


class KeyguardError(Exception):
    """Base of every error Keyguard raises on purpose; the CLI prints it without a traceback."""

    exit_code = 2


class ConfigError(KeyguardError):
    """A configuration file, input document or setting is malformed."""


class PolicyError(KeyguardError):
    """The policy bundle is broken, or OPA could not evaluate it (undefined is an error, never a pass)."""


class ToolError(KeyguardError):
    """A required external tool (opa, postgres) is missing or failed to start."""


class ExchangeError(KeyguardError):
    """An exchange call failed; subclasses say how. The message never contains secrets."""


class StoreError(KeyguardError):
    """The database could not be reached or holds something unexpected."""


class AccessError(KeyguardError):
    """An API token or role is unknown, duplicated or not allowed."""
