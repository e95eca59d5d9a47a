"""A sandbox per test and adapters pointed at it from a chosen source address."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from tests.sandbox import fixtures

from keyguard.exchanges import Credentials, ExchangeAdapter, adapter_for, sandbox_adapter_kwargs
from keyguard.sandbox import SandboxHandle

# The shared sandbox fixtures, bound here so pytest finds them for this directory's tests.
sandbox_config = fixtures.sandbox_config
sandbox = fixtures.sandbox

AdapterFactory = Callable[..., ExchangeAdapter]


@pytest.fixture
def adapter(sandbox: SandboxHandle) -> AdapterFactory:
    def make(key: dict[str, Any], exchange: str = "binance", source_ip: str = "127.0.0.1",
             timeout_ms: int = 5000, **overrides: Any) -> ExchangeAdapter:
        credentials = Credentials(api_key=key["api_key"], secret=overrides.pop("secret", key["secret"]),
                                  passphrase=overrides.pop("passphrase", key.get("passphrase")))
        return adapter_for(exchange, credentials, source_ip=source_ip, timeout_ms=timeout_ms,
                           **sandbox_adapter_kwargs(exchange, sandbox.url), **overrides)

    return make
