"""The pieces the gate's reports are built from: where a finding's resource is written, the merged SARIF, the PR
comment, and the report formats of `policy check`."""

from __future__ import annotations

import io
import sys

import pytest

from keyguard.cli import main
from keyguard.gate.comment import COMMENT_MARKER, MAX_ROWS, CheckReport, counts, render_comment
from keyguard.gate.locate import SourceLocation, compose, locate_in_document, locate_in_program
from keyguard.gate.sarif import LocatedFinding, RuleText, merge_logs, sarif_log
from keyguard.policy.models import Finding, FindingStatus, Severity

from .conftest import USER_REPO, assert_valid_sarif, line_of

KEYS = USER_REPO / "keyguard" / "keys.yaml"


def finding(rule: str = "KG-KEY-101", severity: Severity = Severity.critical, resource: str = "binance/spot-bot",
            message: str = "bot key spot-bot can withdraw", **extra: object) -> Finding:
    return Finding(id=rule, severity=severity, resource=resource, message=message,
                   remediation="Create a new key without withdrawal permission.", **extra)


def test_a_key_finding_points_at_the_field_its_evidence_is_about() -> None:
    tree = compose(KEYS)
    where = locate_in_document(KEYS, "binance/spot-bot", {"permissions": {}, "purpose": "execution"}, tree)
    assert where.line == line_of(KEYS, "withdraw: true}")
    # No evidence field spelt out: the line that names the key.
    assert locate_in_document(KEYS, "kraken/tax-export", {}, tree).line == line_of(KEYS, "id: tax-export")
    # A sub-resource (an allowlist entry) is found inside its key, not in the first key with that address.
    entry = locate_in_document(KEYS, "kraken/tax-export/ip/203.0.113.44", {"allowed_ip": {}}, tree)
    assert entry.line == line_of(KEYS, "value: 203.0.113.44", after="id: tax-export")
    # A resource the document does not spell out falls back to the file itself.
    assert locate_in_document(KEYS, "okx/unknown", {}, tree) == SourceLocation(KEYS, 1, 1)


def test_a_program_finding_points_at_the_line_naming_the_resource() -> None:
    program = USER_REPO / "infra"
    assert locate_in_program(program, "SecurityGroup/bot-sg").line == line_of(program / "__main__.py", '"bot-sg"')
    assert locate_in_program(program, "Eip/made-elsewhere") == SourceLocation(program / "__main__.py", 1, 1)


def test_sarif_marks_a_waived_finding_suppressed_and_merging_keeps_rule_indexes_right() -> None:
    waived = finding(resource="binance/old-bot", status=FindingStatus.waived,
                     evidence={"waiver": {"reason": "migrating", "approver": "ops", "expires": "2026-12-31"}})
    declared = sarif_log([LocatedFinding(finding(), SourceLocation(KEYS, 11)),
                          LocatedFinding(waived, SourceLocation(KEYS, 20))],
                         {"KG-KEY-101": RuleText("A bot key cannot withdraw", "Create a new key.")}, USER_REPO)
    leak = sarif_log([LocatedFinding(finding("KG-LEAK-101", resource="bot/a.py:3", message="AWS access key id"),
                                     SourceLocation(USER_REPO / "bot" / "a.py", 3, 9))], {}, USER_REPO)
    merged = merge_logs([leak, declared])
    assert_valid_sarif(merged)
    run = merged["runs"][0]
    assert [r["ruleId"] for r in run["results"]] == ["KG-LEAK-101", "KG-KEY-101", "KG-KEY-101"]
    for result in run["results"]:
        assert run["tool"]["driver"]["rules"][result["ruleIndex"]]["id"] == result["ruleId"]
    assert run["results"][2]["suppressions"][0]["justification"].startswith("migrating (approved by ops")
    assert run["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "bot/a.py"
    report = CheckReport("Declared documents", 1, declared)
    assert counts([report], Severity.high)["findings"] == 1  # the waived one is not open


def test_comment_escapes_cells_reports_a_missing_report_and_stays_bounded() -> None:
    many = sarif_log([LocatedFinding(finding(resource=f"binance/bot-{n}", message=f"key {n} | can withdraw"),
                                     SourceLocation(KEYS, n + 1)) for n in range(MAX_ROWS + 5)], {}, USER_REPO)
    reports = [CheckReport("Declared documents", 1, many), CheckReport("Pulumi program", 2, None),
               CheckReport("Credentials in the diff", None, None)]
    body = render_comment(reports, Severity.high)
    assert body.startswith(COMMENT_MARKER + "\n## Keyguard policy gate: failed")
    assert "key 0 \\| can withdraw" in body
    assert "| Pulumi program | error: no report (exit 2); the job log says why |" in body
    assert "| Credentials in the diff | skipped (not configured) |" in body
    assert body.count("| critical | KG-KEY-101 |") == MAX_ROWS and "5 more in code scanning" in body


def test_policy_check_refuses_json_and_sarif_at_once_before_any_work(monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "argv", ["keyguard", "policy", "check", str(KEYS), "--json", "--format", "sarif"])
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    assert "--json and --format sarif ask for different reports" in capsys.readouterr().err
