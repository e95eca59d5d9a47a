"""A fresh sandbox per test on 127.0.0.1 and unmodified ccxt clients bound to a chosen source address."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ccxt
import pytest
from tests.sandbox import fixtures

from keyguard.exchanges.transport import bound_session
from keyguard.sandbox import SandboxHandle

# The shared sandbox fixtures, bound here so pytest finds them for this directory's tests.
sandbox_config = fixtures.sandbox_config
sandbox = fixtures.sandbox

BinanceFactory = Callable[..., ccxt.binance]


@pytest.fixture
def binance(sandbox: SandboxHandle) -> BinanceFactory:
    """Build a stock ccxt binance client: only its URLs, credentials and source address are set (and rate
    limiting off, so a test can reach the sandbox's limits)."""

    def make(key: dict[str, Any] | None = None, source_ip: str = "127.0.0.1", secret: str | None = None,
             timeout_ms: int = 10000) -> ccxt.binance:
        config: dict[str, Any] = {
            "urls": sandbox.ccxt_urls("binance"),
            "session": bound_session(source_ip),
            "enableRateLimit": False,
            "timeout": timeout_ms,
        }
        if key is not None:
            config["apiKey"] = key["api_key"]
            config["secret"] = secret if secret is not None else key["secret"]
        return ccxt.binance(config)

    return make


TRADER_FLAGS = {"enableSpotAndMarginTrading": True}
# Binance lets a key withdraw only if it is restricted to trusted IPs: the clients here call from 127.0.0.1.
LOOPBACK_ONLY: dict[str, Any] = {"ip_restrict": True, "ips": ["127.0.0.1"]}
