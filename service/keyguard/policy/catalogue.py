"""The rule catalogue, read from the METADATA of every Rego deny rule via `opa inspect`."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from keyguard.errors import PolicyError
from keyguard.tools import OPA_IGNORE, PROJECT_ROOT, opa_binary

SEVERITIES = ("critical", "high", "medium", "low")
RULE_ID = re.compile(r"^KG-[A-Z]+-[0-9]{3}$")
# Catalogue order follows docs/contracts.md: keys first, then the worker, infrastructure and vendors.
AREA_ORDER = ("KG-KEY", "KG-IP", "KG-ROT", "KG-STO", "KG-EXE", "KG-LIVE", "KG-INF", "KG-VEN")


def policy_files(policy_dir: Path) -> list[Path]:
    """Rule files only: ignored (keyguard.tools.OPA_IGNORE) and hidden directories and tests are left out."""
    files = []
    for path in sorted(policy_dir.rglob("*.rego")):
        parts = path.relative_to(policy_dir).parts
        if any(part in OPA_IGNORE or part.startswith(".") for part in parts[:-1]):
            continue
        if path.name.endswith("_test.rego"):
            continue
        files.append(path)
    return files


def _inspect(policy_dir: Path, opa: str) -> list[dict[str, Any]]:
    """`opa inspect` takes one path and has no --ignore, so it reads a copy holding only the rule files."""
    with tempfile.TemporaryDirectory(prefix="keyguard-rules-") as tmp:
        root = Path(tmp)
        for source in policy_files(policy_dir):
            target = root / source.relative_to(policy_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
        if not any(root.rglob("*.rego")):
            raise PolicyError(f"{policy_dir}: no .rego rule files found")
        proc = subprocess.run(
            [opa, "inspect", "--annotations", "--format", "json", str(root)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if proc.returncode != 0:
            message = (proc.stderr or proc.stdout).replace(str(root), str(policy_dir)).strip()
            raise PolicyError(f"opa inspect failed: {message[:800]}")
        refs = json.loads(proc.stdout or "{}").get("annotations") or []
        for ref in refs:
            loc = ref.get("location") or {}
            if "file" in loc:  # point back at the real file, not the copy
                loc["file"] = str(policy_dir / Path(loc["file"]).resolve().relative_to(root.resolve()))
        return refs


def _rule_from(ref: dict[str, Any], policy_dir: Path) -> dict[str, str] | None:
    ann = ref.get("annotations") or {}
    custom = ann.get("custom") or {}
    if "id" not in custom:
        return None  # package and helper annotations describe, they do not define a rule
    loc = ref.get("location") or {}
    where = f"{loc.get('file', '?')}:{loc.get('row', '?')}"
    rule = {
        "id": str(custom["id"]),
        "severity": str(custom.get("severity", "")),
        "title": str(ann.get("title", "")).strip(),
        "remediation": str(custom.get("remediation", "")).strip(),
        "package": ".".join(str(p.get("value")) for p in ref.get("path", [])[1:-1]),
        "path": _relative(Path(loc.get("file", "?")), policy_dir),
    }
    if not RULE_ID.match(rule["id"]):
        raise PolicyError(f"{where}: rule id {rule['id']!r} does not look like KG-<AREA>-<NNN>")
    if rule["severity"] not in SEVERITIES:
        allowed = ", ".join(SEVERITIES)
        raise PolicyError(f"{where}: rule {rule['id']} severity {rule['severity']!r} is not one of {allowed}")
    for field in ("title", "remediation"):
        if not rule[field]:
            raise PolicyError(f"{where}: rule {rule['id']} has no {field} in its METADATA")
    return rule


def _relative(path: Path, policy_dir: Path) -> str:
    resolved = path.resolve()
    for base in (PROJECT_ROOT, policy_dir.resolve().parent):
        if resolved.is_relative_to(base):
            return resolved.relative_to(base).as_posix()
    return path.as_posix()


def load_rules(policy_dir: Path, opa: str | None = None) -> list[dict[str, str]]:
    """Every rule's {id, severity, title, remediation, package, path}, sorted by id.

    A rule defined by several `deny` bodies appears once; two rules sharing an id with different
    METADATA are an error, as are a malformed id, an unknown severity or a missing title/remediation.
    """
    rules: dict[str, dict[str, str]] = {}
    for ref in _inspect(policy_dir, opa or opa_binary()):
        rule = _rule_from(ref, policy_dir)
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


def render_markdown(rules: list[dict[str, str]]) -> str:
    lines = [
        "# Keyguard rule catalogue",
        "",
        "Generated from the METADATA of every rule by `uv run python scripts/gen_rule_catalogue.py`;",
        "do not edit by hand. Each finding carries the id, severity and remediation shown here",
        "(`keyguard policy rules` prints the same list).",
        "",
        f"{len(rules)} rules: " + ", ".join(f"{sum(r['severity'] == s for r in rules)} {s}" for s in SEVERITIES) + ".",
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
