"""Fixtures for the infra suite: a real OPA with the infra rules, and the shipped program captured under mocks."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from keyguard.infra.capture import CapturedStack, capture_program, read_stack_config
from keyguard.policy import PolicyEngine
from keyguard.tools import POLICY_DIR, PROJECT_ROOT

SHIPPED_PROGRAM = PROJECT_ROOT / "infra"
DEV_CONFIG = PROJECT_ROOT / "Pulumi.dev.yaml"
MUTATIONS = Path(__file__).parent / "programs"


@pytest.fixture(scope="session")
def infra_policy_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real entry point, shared library and infra rules, without the other areas' packages: the infra
    suite judges the infra rules and stays independent of rule areas being written in parallel."""
    root = tmp_path_factory.mktemp("infra-policies")
    shutil.copy(POLICY_DIR / "main.rego", root / "main.rego")
    for area in ("lib", "infra"):
        shutil.copytree(POLICY_DIR / area, root / area, ignore=shutil.ignore_patterns("*_test.rego"))
    return root


@pytest.fixture(scope="session")
def infra_engine(infra_policy_root: Path) -> Iterator[PolicyEngine]:
    with PolicyEngine.managed(policy_root=infra_policy_root) as engine:
        yield engine


@pytest.fixture(scope="session")
def shipped() -> CapturedStack:
    return capture_program(SHIPPED_PROGRAM, read_stack_config(DEV_CONFIG))


def capture_with(**overrides: str) -> CapturedStack:
    return capture_program(SHIPPED_PROGRAM, read_stack_config(DEV_CONFIG, overrides=overrides))
