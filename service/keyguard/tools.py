"""Locating the project's pinned external tools (opa) without guessing."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from keyguard.errors import ToolError

OPA_VERSION = "1.22.2"
PROJECT_ROOT = Path(__file__).resolve().parents[2]
TOOLS_DIR = PROJECT_ROOT / ".tools" / "bin"
POLICY_DIR = PROJECT_ROOT / "policies"
SCHEMA_DIR = PROJECT_ROOT / "schemas"


def opa_binary() -> str:
    """KEYGUARD_OPA_BIN, then the project-local pinned build, then `opa` on PATH."""
    configured = os.environ.get("KEYGUARD_OPA_BIN")
    if configured:
        if not Path(configured).is_file():
            raise ToolError(f"KEYGUARD_OPA_BIN={configured} does not exist; point it at an opa binary")
        return configured
    local = TOOLS_DIR / "opa"
    if local.is_file():
        return str(local)
    found = shutil.which("opa")
    if found:
        return found
    raise ToolError(
        f"opa not found: run `make setup` (installs opa {OPA_VERSION} into {TOOLS_DIR}) "
        "or set KEYGUARD_OPA_BIN / put opa on PATH"
    )


def regal_binary() -> str | None:
    """The Rego linter, if installed (setup builds it into the project's tool folder)."""
    configured = os.environ.get("KEYGUARD_REGAL_BIN")
    if configured and Path(configured).is_file():
        return configured
    local = TOOLS_DIR / "regal"
    return str(local) if local.is_file() else shutil.which("regal")


def policy_dir() -> Path:
    return Path(os.environ.get("KEYGUARD_POLICY_DIR", POLICY_DIR))


def schema_dir() -> Path:
    """The input kinds' JSON Schemas: beside the bundle, not in it (OPA would load them as conflicting data)."""
    return Path(os.environ.get("KEYGUARD_SCHEMA_DIR", SCHEMA_DIR))


# The directory under policies/ that is not policy (the CrossGuard pack: Python and its PulumiPolicy.yaml). OPA's
# own tools load it harmlessly as data.pulumi, so `opa test|check|build policies` need no flag.
OPA_IGNORE = ("pulumi",)


def opa_ignore_args() -> list[str]:
    return [arg for name in OPA_IGNORE for arg in ("--ignore", name)]
