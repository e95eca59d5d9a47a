"""The sandbox fixtures the sandbox and adapter tests share: a fresh sandbox per test on 127.0.0.1, its windows
aligned to its start so no rate-limit window rolls over halfway through a test. A conftest imports them to use them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from keyguard.sandbox import SandboxConfig, SandboxHandle, run_sandbox


@pytest.fixture
def sandbox_config() -> SandboxConfig:
    return SandboxConfig(align_windows_to_start=True)


@pytest.fixture
def sandbox(sandbox_config: SandboxConfig) -> Iterator[SandboxHandle]:
    with run_sandbox(sandbox_config) as handle:
        yield handle
