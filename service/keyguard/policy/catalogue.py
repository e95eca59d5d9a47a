"""The rule catalogue, read from the METADATA annotations of the Rego rules via `opa inspect`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from keyguard.errors import PolicyError
from keyguard.policy.models import Severity
from keyguard.tools import opa_binary, opa_ignore_args


class Rule(BaseModel):
    id: str
    severity: Severity
    title: str
    remediation: str
    package: str
    location: str


def load_rules(root: Path, opa: str | None = None) -> list[Rule]:
    proc = subprocess.run(
        [opa or opa_binary(), "inspect", "--annotations", "--format", "json", *opa_ignore_args(), str(root)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if proc.returncode != 0:
        raise PolicyError(f"opa inspect failed on {root}: {(proc.stderr or proc.stdout).strip()[:800]}")
    doc = json.loads(proc.stdout or "{}")
    rules: dict[str, Rule] = {}
    for ref in doc.get("annotations") or []:
        ann: dict[str, Any] = ref.get("annotations") or {}
        custom = ann.get("custom") or {}
        if "id" not in custom or ref.get("location", {}).get("file", "").endswith("_test.rego"):
            continue
        path = [p.get("value") for p in ref.get("path", [])][1:]  # drop the leading "data"
        loc = ref.get("location") or {}
        try:
            rule = Rule(
                id=custom["id"],
                severity=custom.get("severity", ""),
                title=ann.get("title", ""),
                remediation=custom.get("remediation", ""),
                package=".".join(str(p) for p in path[:-1]),
                location=f"{loc.get('file', '?')}:{loc.get('row', '?')}",
            )
        except ValueError as exc:
            raise PolicyError(f"rule METADATA at {loc.get('file')}:{loc.get('row')} is invalid: {exc}") from None
        rules.setdefault(rule.id, rule)
    return sorted(rules.values(), key=lambda r: r.id)
