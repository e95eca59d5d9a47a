"""Worker fixtures: a fresh sandbox exchange per test on 127.0.0.1, a trading key on it, and a worker."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from keyguard.sandbox import SandboxConfig, SandboxHandle, run_sandbox
from keyguard.worker.config import WorkerConfig
from keyguard.worker.runtime import ExecutionWorker, build_worker

TRADING_FLAGS = {"enableReading": True, "enableSpotAndMarginTrading": True}


@pytest.fixture
def sandbox_config() -> SandboxConfig:
    # Drops hold the connection only briefly: the client's own timeout is what reports the unknown outcome.
    return SandboxConfig(drop_hold_s=2.0)


@pytest.fixture
def sandbox(sandbox_config: SandboxConfig) -> Iterator[SandboxHandle]:
    with run_sandbox(sandbox_config) as handle:
        yield handle


@pytest.fixture
def trading_key(sandbox: SandboxHandle) -> dict[str, Any]:
    return sandbox.create_key(label="worker", flags=TRADING_FLAGS)


WorkerFactory = Callable[..., ExecutionWorker]


@pytest.fixture
def make_worker(sandbox: SandboxHandle, trading_key: dict[str, Any], tmp_path: Path) -> Iterator[WorkerFactory]:
    """Build workers sharing one state_dir (so a second one is 'the same worker after a restart')."""
    made: list[ExecutionWorker] = []

    def make(**overrides: Any) -> ExecutionWorker:
        settings: dict[str, Any] = {
            "state_dir": tmp_path / "state",
            "exchange": {"base_url": sandbox.url, "timeout_s": 0.5, "recv_window_ms": 300},
            "limiter": {"backend": "file", "headroom": 0.9, "budget_path": str(tmp_path / "budget")},
        }
        for key, value in overrides.items():
            if isinstance(value, dict) and isinstance(settings.get(key), dict):
                settings[key] = {**settings[key], **value}
            else:
                settings[key] = value
        config = WorkerConfig.model_validate(settings)
        worker = build_worker(config, trading_key["api_key"], trading_key["secret"], sandbox.url)
        # Fast look-up back-off: tests exercise the rules, not the waiting.
        worker.executor.lookup_base_s = 0.01
        worker.executor.lookup_cap_s = 0.05
        made.append(worker)
        return worker

    yield make
    for worker in made:
        worker.client.close()


def exchange_orders(sandbox: SandboxHandle, account: str = "main") -> list[Any]:
    return sandbox.exchange.orders_of(account)
