"""Shared fixtures: real servers on loopback, started once and stopped cleanly."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from keyguard.policy import PolicyEngine
from tests.servers import AlertReceiver, postgres_server


@pytest.fixture(scope="session")
def policy_engine() -> Iterator[PolicyEngine]:
    """A managed `opa run --server` on 127.0.0.1 with the project's rule set loaded."""
    with PolicyEngine.managed() as engine:
        yield engine


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL (Debian's package) on 127.0.0.1, initdb'd for this test session."""
    with postgres_server() as url:
        yield url


@pytest.fixture
def alert_receiver() -> Iterator[AlertReceiver]:
    with AlertReceiver() as receiver:
        yield receiver
