"""Shared fixtures: real servers on loopback, started once and stopped cleanly."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from keyguard.policy import PolicyEngine


@pytest.fixture(scope="session")
def policy_engine() -> Iterator[PolicyEngine]:
    """A managed `opa run --server` on 127.0.0.1 with the project's rule set loaded."""
    with PolicyEngine.managed() as engine:
        yield engine
