"""Locating the project's pinned external tools (opa) without guessing."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from keyguard.errors import ToolError

OPA_VERSION = "1.22.2"
PACKAGE_DIR = Path(__file__).resolve().parent
# A checkout (or an editable install of one); in an installed wheel these paths do not exist.
PROJECT_ROOT = PACKAGE_DIR.parents[1]
TOOLS_DIR = PROJECT_ROOT / ".tools" / "bin"
POLICY_DIR = PROJECT_ROOT / "policies"
SCHEMA_DIR = PROJECT_ROOT / "schemas"
# What a wheel carries instead (hatch_build.py puts them there).
PACKAGED_BUNDLE = PACKAGE_DIR / "bundle" / "keyguard-policies.tar.gz"
PACKAGED_SCHEMAS = PACKAGE_DIR / "schemas"


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
    """The policy source directory (for `keyguard policy test`): KEYGUARD_POLICY_DIR, else the checkout's."""
    return Path(os.environ.get("KEYGUARD_POLICY_DIR", POLICY_DIR))


def policy_source() -> Path | None:
    """KEYGUARD_POLICY_DIR (a directory or a built bundle), else the checkout's policies/; None in a wheel."""
    configured = os.environ.get("KEYGUARD_POLICY_DIR")
    if configured:
        return Path(configured)
    return POLICY_DIR if POLICY_DIR.is_dir() else None


def packaged_bundle() -> Path:
    return PACKAGED_BUNDLE


def schema_dir() -> Path:
    """The input kinds' JSON Schemas: beside the bundle, not in it (OPA would load them as conflicting data).
    KEYGUARD_SCHEMA_DIR, else the checkout's schemas/, else the copy a wheel carries."""
    configured = os.environ.get("KEYGUARD_SCHEMA_DIR")
    if configured:
        return Path(configured)
    return SCHEMA_DIR if SCHEMA_DIR.is_dir() else PACKAGED_SCHEMAS


# The directory under policies/ that is not policy (the CrossGuard pack: Python and its PulumiPolicy.yaml). OPA's
# own tools load it harmlessly as data.pulumi, so `opa test|check|build policies` need no flag.
OPA_IGNORE = ("pulumi",)


def opa_ignore_args() -> list[str]:
    return [arg for name in OPA_IGNORE for arg in ("--ignore", name)]
