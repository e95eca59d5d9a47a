"""A sandbox per test and adapters pointed at it from a chosen source address."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from keyguard.exchanges import Credentials, ExchangeAdapter, adapter_for, sandbox_adapter_kwargs
from keyguard.sandbox import SandboxConfig, SandboxHandle, run_sandbox


@pytest.fixture
def sandbox_config() -> SandboxConfig:
    return SandboxConfig(align_windows_to_start=True)


@pytest.fixture
def sandbox(sandbox_config: SandboxConfig) -> Iterator[SandboxHandle]:
    with run_sandbox(sandbox_config) as handle:
        yield handle


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
