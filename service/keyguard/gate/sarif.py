"""SARIF 2.1.0 for GitHub code scanning: one rule per Keyguard rule id (title, remediation as help, severity as
level and `security-severity`), one result per finding at the file and line it is about.

Messages go through the same redaction as every other output; evidence is left out (it is for the JSON report).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keyguard import __version__
from keyguard.gate.locate import SourceLocation
from keyguard.policy.models import Finding, FindingStatus, Severity
from keyguard.redact import redact_text

SARIF_SCHEMA = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
TOOL_NAME = "Keyguard"
# GitHub reads `security-severity` (0-10) into critical (>= 9), high (>= 7), medium (>= 4) and low.
SECURITY_SEVERITY = {Severity.critical: "9.5", Severity.high: "8.0", Severity.medium: "5.5", Severity.low: "3.0"}
LEVEL = {Severity.critical: "error", Severity.high: "error", Severity.medium: "warning", Severity.low: "note"}
FINGERPRINT_KEY = "keyguardFingerprint/v1"


@dataclass(frozen=True)
class RuleText:
    title: str
    remediation: str


def catalogue_texts() -> dict[str, RuleText]:
    """Each rule's title and remediation, from the bundle this process evaluated with (no second build)."""
    from keyguard.policy.bundle import active_bundle
    from keyguard.policy.catalogue import load_rules

    return {r["id"]: RuleText(r["title"], r["remediation"]) for r in load_rules(active_bundle())}


@dataclass(frozen=True)
class LocatedFinding:
    finding: Finding
    location: SourceLocation


def artifact_uri(path: Path, root: Path | None = None) -> tuple[str, bool]:
    """(uri, relative): repository-relative with / separators when under `root` (the working directory)."""
    base = (root or Path.cwd()).resolve()
    absolute = path if path.is_absolute() else base / path
    try:
        return Path(os.path.normpath(absolute)).relative_to(base).as_posix(), True
    except ValueError:
        return Path(os.path.normpath(absolute)).as_uri(), False


def sarif_log(results: Sequence[LocatedFinding], rules: Mapping[str, RuleText], root: Path | None = None
              ) -> dict[str, Any]:
    """A SARIF log with one Keyguard run holding `results`; `rules` gives each rule id its title and help."""
    ids = sorted({r.finding.id for r in results})
    index = {rule_id: i for i, rule_id in enumerate(ids)}
    severity = {r.finding.id: r.finding.severity for r in results}
    descriptors = [_rule(rule_id, severity[rule_id], rules.get(rule_id), results) for rule_id in ids]
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": TOOL_NAME, "version": __version__, "semanticVersion": __version__,
                                "rules": descriptors}},
            "columnKind": "unicodeCodePoints",
            "results": [_result(r, index[r.finding.id], root) for r in results],
        }],
    }


def _rule(rule_id: str, severity: Severity, text: RuleText | None, results: Sequence[LocatedFinding]
          ) -> dict[str, Any]:
    remediation = text.remediation if text else next(r.finding.remediation for r in results
                                                     if r.finding.id == rule_id)
    title = text.title if text else rule_id
    area = rule_id.split("-")[1].lower() if rule_id.count("-") == 2 else "keyguard"
    return {
        "id": rule_id,
        "name": rule_id.replace("-", ""),
        "shortDescription": {"text": title},
        "fullDescription": {"text": f"{title}. {remediation}"},
        "help": {"text": remediation, "markdown": f"**{title}**\n\n{remediation}"},
        "defaultConfiguration": {"level": LEVEL[severity]},
        "properties": {"security-severity": SECURITY_SEVERITY[severity], "severity": str(severity),
                       "tags": ["security", "keyguard", area], "precision": "very-high"},
    }


def _result(located: LocatedFinding, rule_index: int, root: Path | None) -> dict[str, Any]:
    finding, where = located.finding, located.location
    uri, relative = artifact_uri(where.path, root)
    artifact: dict[str, Any] = {"uri": uri, **({"uriBaseId": "%SRCROOT%"} if relative else {})}
    result: dict[str, Any] = {
        "ruleId": finding.id,
        "ruleIndex": rule_index,
        "level": LEVEL[finding.severity],
        "message": {"text": redact_text(finding.message if finding.resource in finding.message
                                        else f"{finding.message} ({finding.resource})")},
        "locations": [{
            "physicalLocation": {"artifactLocation": artifact,
                                 "region": {"startLine": where.line, "startColumn": where.column}},
            "logicalLocations": [{"fullyQualifiedName": finding.resource, "kind": "resource"}],
        }],
        "partialFingerprints": {FINGERPRINT_KEY: finding.fingerprint},
        "properties": {"severity": str(finding.severity), "security-severity": SECURITY_SEVERITY[finding.severity],
                       "resource": finding.resource},
    }
    if finding.status == FindingStatus.waived:
        waiver = finding.evidence.get("waiver") or {}
        reason = redact_text(f"{waiver.get('reason', 'waived')} (approved by {waiver.get('approver', '?')}, "
                             f"expires {waiver.get('expires', '?')})")
        result["suppressions"] = [{"kind": "external", "status": "accepted", "justification": reason}]
    return result


def write_sarif(log: Mapping[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(log, indent=2) + "\n", encoding="utf-8")


def merge_logs(logs: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """One log with one Keyguard run: code scanning keeps one analysis per tool and category."""
    rules: dict[str, dict[str, Any]] = {}
    results: list[dict[str, Any]] = []
    for log in logs:
        for run in log.get("runs", []):
            run_rules = run.get("tool", {}).get("driver", {}).get("rules", [])
            for rule in run_rules:
                rules.setdefault(rule["id"], rule)
            results.extend(run.get("results", []))
    ids = sorted(rules)
    index = {rule_id: i for i, rule_id in enumerate(ids)}
    merged = [{**result, "ruleIndex": index[result["ruleId"]]} for result in results]
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": TOOL_NAME, "version": __version__, "semanticVersion": __version__,
                                "rules": [rules[i] for i in ids]}},
            "columnKind": "unicodeCodePoints",
            "results": merged,
        }],
    }
