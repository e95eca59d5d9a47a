"""Signature checks of the sandbox's Binance faces. This version knows HMAC-SHA256 keys only (hex signatures,
case-insensitive as Binance documents); the module that adds Ed25519 and RSA replaces it."""

from __future__ import annotations

import hashlib
import hmac

from keyguard.sandbox.state import SandboxKey


def signature_valid(key: SandboxKey, payload: str, signature: str) -> bool:
    """Whether `signature` signs `payload` with `key`."""
    expected = hmac.new(key.secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), signature.lower().encode())
