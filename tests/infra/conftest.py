"""Fixtures for the infra suite: a real OPA with the infra rules, and the shipped program captured under mocks."""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

from keyguard.infra.capture import CapturedStack, StackConfigFile, capture_program, read_stack_config
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


@cache
def stand_in_release() -> dict[str, str]:
    """Stand-ins for the release files Pulumi.dev.yaml names (built wheel, locked requirements, opa), which a
    checkout does not have. The program uploads them and pins their sha256 like real ones; their content is fixed,
    so the capture is the same run after run (examples/infra-dev.json). test_host_boot.py installs a real release."""
    directory = Path(tempfile.mkdtemp(prefix="keyguard-stand-in-release-"))
    files = {"keyguard:wheel": "keyguard-0.1.0-py3-none-any.whl", "keyguard:requirements": "requirements.txt",
             "keyguard:opaBinary": "opa"}
    for name in files.values():
        (directory / name).write_text(f"stand-in {name} for the captured example, never installed\n")
    return {key: str(directory / name) for key, name in files.items()}


def dev_config(**overrides: str) -> StackConfigFile:
    """Pulumi.dev.yaml with the stand-in release, and the given overrides."""
    return read_stack_config(DEV_CONFIG, overrides={**stand_in_release(), **overrides})


def release_overrides() -> list[str]:
    """`--set` arguments naming the stand-in release, for `keyguard infra check`."""
    return [arg for key, value in stand_in_release().items() for arg in ("--set", f"{key}={value}")]


@pytest.fixture(scope="session")
def shipped() -> CapturedStack:
    return capture_program(SHIPPED_PROGRAM, dev_config())


def capture_with(**overrides: str) -> CapturedStack:
    return capture_program(SHIPPED_PROGRAM, dev_config(**overrides))


def written_files(user_data: str) -> dict[str, str]:
    """The files the boot script writes with `cat > PATH <<'TAG'` heredocs: path -> content, read the way bash
    reads them (a quoted tag: no expansion)."""
    return {m["path"]: m["body"] for m in re.finditer(
        r"^cat > (?P<path>\S+) <<'(?P<tag>\w+)'\n(?P<body>.*?\n)(?P=tag)$", user_data, re.M | re.S)}


def unit_settings(unit: str) -> dict[str, str]:
    """A systemd unit's `Key=value` lines (each key once in the units the program writes)."""
    return dict(line.split("=", 1) for line in unit.splitlines() if "=" in line and not line.startswith("#"))
