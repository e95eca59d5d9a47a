"""The rule catalogue, read from the METADATA of every Rego deny rule via `opa inspect`."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

from keyguard.errors import PolicyError
from keyguard.policy.bundle import PolicyBundle, resolve_bundle
from keyguard.tools import PROJECT_ROOT, opa_binary

RULE_ID = re.compile(r"^KG-[A-Z]+-[0-9]{3}$")
# Catalogue order follows docs/contracts.md: keys first, then the worker, infrastructure and vendors.
AREA_ORDER = ("KG-KEY", "KG-IP", "KG-ROT", "KG-STO", "KG-EXE", "KG-LIVE", "KG-INF", "KG-VEN")


def _inspect(bundle: PolicyBundle, opa: str) -> list[dict[str, Any]]:
    """`opa inspect` the built bundle: exactly the modules OPA evaluates, nothing else."""
    proc = subprocess.run(
        [opa, "inspect", "--annotations", "--format", "json", str(bundle.path)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    if proc.returncode != 0:
        raise PolicyError(f"opa inspect {bundle.describe()} failed: {(proc.stderr or proc.stdout).strip()[:800]}")
    refs: list[dict[str, Any]] = json.loads(proc.stdout or "{}").get("annotations") or []
    return refs


def _rule_from(ref: dict[str, Any], bundle: PolicyBundle, severities: tuple[str, ...]) -> dict[str, str] | None:
    ann = ref.get("annotations") or {}
    custom = ann.get("custom") or {}
    if "id" not in custom:
        return None  # package and helper annotations describe, they do not define a rule
    loc = ref.get("location") or {}
    path = _source_path(str(loc.get("file", "?")), bundle)
    where = f"{path}:{loc.get('row', '?')}"
    rule = {
        "id": str(custom["id"]),
        "severity": str(custom.get("severity", "")),
        "title": str(ann.get("title", "")).strip(),
        "remediation": str(custom.get("remediation", "")).strip(),
        "package": ".".join(str(p.get("value")) for p in ref.get("path", [])[1:-1]),
        "path": path,
    }
    if not RULE_ID.match(rule["id"]):
        raise PolicyError(f"{where}: rule id {rule['id']!r} does not look like KG-<AREA>-<NNN>")
    if rule["severity"] not in severities:
        allowed = ", ".join(severities)
        raise PolicyError(f"{where}: rule {rule['id']} severity {rule['severity']!r} is not one of {allowed}")
    for field in ("title", "remediation"):
        if not rule[field]:
            raise PolicyError(f"{where}: rule {rule['id']} has no {field} in its METADATA")
    return rule


def _source_path(member: str, bundle: PolicyBundle) -> str:
    """A module's file as its author knows it: policies/keys/x.rego for a checkout, keys/x.rego in a bundle."""
    member = member.lstrip("/")
    if bundle.source.is_dir():
        source = bundle.source.resolve()
        base = PROJECT_ROOT if source.is_relative_to(PROJECT_ROOT) else source.parent
        return (source / member).relative_to(base).as_posix()
    return member


def severities(bundle: PolicyBundle) -> tuple[str, ...]:
    """Most severe first, from the bundle's data.lib.severities (which the rules order least severe first)."""
    try:
        return tuple(reversed([str(s) for s in bundle.data["lib"]["severities"]]))
    except (KeyError, TypeError):
        raise PolicyError(f"bundle {bundle.describe()} has no data.lib.severities") from None


def load_rules(source: PolicyBundle | Path | None = None, opa: str | None = None) -> list[dict[str, str]]:
    """Every rule's {id, severity, title, remediation, package, path}, sorted by id.

    A rule defined by several `deny` bodies appears once; two rules sharing an id with different
    METADATA are an error, as are a malformed id, an unknown severity or a missing title/remediation.
    """
    bundle = source if isinstance(source, PolicyBundle) else resolve_bundle(source, opa)
    allowed = severities(bundle)
    rules: dict[str, dict[str, str]] = {}
    for ref in _inspect(bundle, opa or opa_binary()):
        rule = _rule_from(ref, bundle, allowed)
        if rule is None:
            continue
        seen = rules.get(rule["id"])
        if seen is None:
            rules[rule["id"]] = rule
        elif any(seen[k] != rule[k] for k in ("severity", "title", "remediation", "package")):
            raise PolicyError(
                f"rule id {rule['id']} is used by {seen['path']} and {rule['path']} with different METADATA; "
                "give each rule its own id"
            )
    return sorted(rules.values(), key=lambda r: _id_order(r["id"]))


def _id_order(rule_id: str) -> tuple[int, str, int]:
    area, _, number = rule_id.rpartition("-")
    rank = AREA_ORDER.index(area) if area in AREA_ORDER else len(AREA_ORDER)
    return (rank, area, int(number))


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def render_markdown(rules: list[dict[str, str]], order: tuple[str, ...]) -> str:
    lines = [
        "# Keyguard rule catalogue",
        "",
        "Generated from the METADATA of every rule by `uv run python scripts/gen_rule_catalogue.py`;",
        "do not edit by hand. Each finding carries the id, severity and remediation shown here",
        "(`keyguard policy rules` prints the same list).",
        "",
        f"{len(rules)} rules: " + ", ".join(f"{sum(r['severity'] == s for r in rules)} {s}" for s in order) + ".",
        "",
        "| id | severity | title | remediation | package |",
        "|---|---|---|---|---|",
    ]
    for rule in rules:
        lines.append(
            f"| {rule['id']} | {rule['severity']} | {_cell(rule['title'])} | {_cell(rule['remediation'])} "
            f"| `{rule['package']}` |"
        )
    return "\n".join(lines) + "\n"
