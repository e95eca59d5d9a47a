"""A fresh sandbox per test on 127.0.0.1 and unmodified ccxt clients bound to a chosen source address."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import ccxt
import pytest

from keyguard.exchanges.transport import bound_session
from keyguard.sandbox import SandboxConfig, SandboxHandle, run_sandbox


@pytest.fixture
def sandbox_config() -> SandboxConfig:
    return SandboxConfig(align_windows_to_start=True)


@pytest.fixture
def sandbox(sandbox_config: SandboxConfig) -> Iterator[SandboxHandle]:
    with run_sandbox(sandbox_config) as handle:
        yield handle


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
