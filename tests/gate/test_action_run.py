"""action.yml's steps run against a user's repository as GitHub would run them (tests/gate/action_runner.py): real
git, real opa, the installed keyguard. A PR that plants an AWS access key and an exchange secret fails the gate
with each one's file:line and kind, and neither value appears in any output, report, comment or summary."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from keyguard.gate.comment import COMMENT_MARKER

from .action_runner import ActionRun, run_action
from .conftest import assert_valid_sarif, aws_access_key, binance_secret, commit_files, line_of, user_repo


@dataclass
class GateRun:
    run: ActionRun
    repo: Path
    temp: Path
    canaries: tuple[str, ...] = ()

    @property
    def sarif(self) -> dict:
        return json.loads((self.repo / self.run.outputs["sarif-file"]).read_text(encoding="utf-8"))

    @property
    def comment(self) -> str:
        return (self.temp / "keyguard-gate" / "comment.md").read_text(encoding="utf-8")


def pull_request(base: str, head: str) -> dict:
    return {"event_name": "pull_request", "sha": head,
            "event": {"pull_request": {"number": 7, "base": {"sha": base}, "head": {"sha": head}}}}


@pytest.fixture(scope="module")
def leaky_pr(tmp_path_factory: pytest.TempPathFactory) -> GateRun:
    """The user's PR adds a bot that holds an AWS access key and a Binance secret in its files."""
    tmp = tmp_path_factory.mktemp("leaky")
    repo, base = user_repo(tmp)
    aws_key, exchange_secret = aws_access_key(), binance_secret()
    head = commit_files(repo, {
        "bot/settings.py": f'"""Spot bot settings."""\nREGION = "eu-central-1"\nAWS_ACCESS_KEY_ID = "{aws_key}"\n',
        "bot/exchange.yaml": f"exchange: binance\napi_key_env: BINANCE_API_KEY\napi_secret: {exchange_secret}\n",
    })
    temp = tmp / "runner-temp"
    temp.mkdir()
    run = run_action(repo, temp, {"documents": "keyguard/*.yaml", "pulumi-program": "infra", "fail-on": "high"},
                     pull_request(base, head))
    return GateRun(run, repo, temp, (aws_key, exchange_secret))


def test_planted_credentials_fail_the_gate_with_file_line_and_kind(leaky_pr: GateRun) -> None:
    run = leaky_pr.run
    assert run.failed and run.outputs["passed"] == "false"
    scan = run.step("secrets")
    assert scan.outputs["exit-code"] == "1"
    assert "bot/settings.py:3:" in scan.stdout and "AWS access key id" in scan.stdout
    assert "bot/exchange.yaml:3:" in scan.stdout and "Binance API key or secret" in scan.stdout
    assert run.outputs["leaked-credentials"] == "2"
    verdict = run.step("report")
    assert verdict.returncode == 1
    assert "Credentials in the diff: failed: 2 finding(s), 2 blocking" in verdict.stdout


def test_no_canary_value_appears_in_any_output_report_comment_or_summary(leaky_pr: GateRun) -> None:
    everything = [leaky_pr.run.log, json.dumps(leaky_pr.run.outputs), leaky_pr.run.summary,
                  json.dumps(leaky_pr.sarif)]
    everything += [p.read_text(encoding="utf-8", errors="replace") for p in leaky_pr.temp.rglob("*") if p.is_file()]
    assert any("bot/settings.py" in text for text in everything)  # the reports are there, and name the file
    for value in leaky_pr.canaries:
        assert not any(value in text for text in everything)


def test_sarif_is_valid_and_places_each_finding_at_its_file_and_line(leaky_pr: GateRun) -> None:
    log = leaky_pr.sarif
    assert_valid_sarif(log)
    assert len(log["runs"]) == 1  # one analysis for code scanning
    run = log["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    results = run["results"]
    places = {(r["ruleId"], r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
               r["locations"][0]["physicalLocation"]["region"]["startLine"]) for r in results}
    user = leaky_pr.repo
    expected = {
        ("KG-KEY-101", "keyguard/keys.yaml", line_of(user / "keyguard/keys.yaml", "withdraw: true}")),
        ("KG-IP-105", "keyguard/keys.yaml", line_of(user / "keyguard/keys.yaml", "ip_binding_source: declared")),
        ("KG-VEN-105", "keyguard/vendors.yaml", line_of(user / "keyguard/vendors.yaml", "two_factor")),
        ("KG-INF-102", "infra/__main__.py", line_of(user / "infra/__main__.py", '"bot-sg"')),
        ("KG-INF-104", "infra/__main__.py", line_of(user / "infra/__main__.py", '"bot-host"')),
        ("KG-LEAK-101", "bot/settings.py", 3),
        ("KG-LEAK-103", "bot/exchange.yaml", 3),
    }
    assert expected <= places
    for result in results:
        rule = rules[result["ruleIndex"]]
        assert rule["id"] == result["ruleId"]
        assert rule["help"]["text"] and rule["shortDescription"]["text"]
        severity = result["properties"]["severity"]
        assert result["level"] == {"critical": "error", "high": "error", "medium": "warning", "low": "note"}[severity]
        assert float(rule["properties"]["security-severity"]) >= {"critical": 9, "high": 7, "medium": 4,
                                                                  "low": 0.1}[rule["properties"]["severity"]]


def test_outputs_count_the_sarif_results(leaky_pr: GateRun) -> None:
    outputs = leaky_pr.run.outputs
    results = leaky_pr.sarif["runs"][0]["results"]
    by_severity = {s: sum(r["properties"]["severity"] == s for r in results) for s in ("critical", "high", "medium",
                                                                                      "low")}
    assert {s: int(outputs[s]) for s in by_severity} == by_severity
    assert int(outputs["findings"]) == len(results)
    assert int(outputs["blocking"]) == by_severity["critical"] + by_severity["high"]
    assert outputs["sarif-file"] == "keyguard.sarif"


def test_pr_comment_carries_the_marker_every_check_and_each_finding(leaky_pr: GateRun) -> None:
    comment = leaky_pr.comment
    assert comment.startswith(COMMENT_MARKER + "\n## Keyguard policy gate: failed")
    for row in ("| Declared documents | failed: 3 finding(s), 2 blocking |",
                "| Pulumi program | failed: ", "| Credentials in the diff | failed: 2 finding(s), 2 blocking |"):
        assert row in comment
    assert "| critical | KG-LEAK-101 | `bot/settings.py:3` | AWS access key id added at bot/settings.py:3 |" in comment
    assert "KG-KEY-101 | `keyguard/keys.yaml:" in comment
    # The job summary says the same, without the marker the comment is found by.
    assert COMMENT_MARKER not in leaky_pr.run.summary
    assert "| Credentials in the diff | failed: 2 finding(s), 2 blocking |" in leaky_pr.run.summary


def test_a_clean_pr_under_its_threshold_passes(tmp_path: Path) -> None:
    """Findings below fail-on are reported, not blocking; an unset program is a skipped check, not an error."""
    repo, base = user_repo(tmp_path)
    head = commit_files(repo, {"README.md": "# spot bot\nKeys live in AWS Secrets Manager, never here.\n"})
    temp = tmp_path / "runner-temp"
    temp.mkdir()
    run = run_action(repo, temp, {"documents": "keyguard/vendors.yaml", "fail-on": "critical",
                                  "sarif-file": "reports/keyguard.sarif"}, pull_request(base, head))
    assert not run.failed, run.log
    assert run.outputs["passed"] == "true" and run.outputs["blocking"] == "0"
    assert run.outputs["high"] == "1" and run.outputs["leaked-credentials"] == "0"
    assert_valid_sarif(json.loads((repo / "reports/keyguard.sarif").read_text()))
    comment = (temp / "keyguard-gate" / "comment.md").read_text()
    assert "## Keyguard policy gate: passed" in comment
    assert "| Pulumi program | skipped (not configured) |" in comment
    assert "| Credentials in the diff | passed: 0 finding(s) |" in comment


def test_a_documents_glob_that_matches_nothing_fails_the_gate_naming_it(tmp_path: Path) -> None:
    repo, base = user_repo(tmp_path)
    temp = tmp_path / "runner-temp"
    temp.mkdir()
    run = run_action(repo, temp, {"documents": "keyguard/keys.yaml\nkeyguard/workers/*.yaml", "scan-secrets": "false"},
                     pull_request(base, base))
    assert run.failed and run.outputs["passed"] == "false"
    assert "documents: no file matches 'keyguard/workers/*.yaml'" in run.step("declared").stdout
    assert "Declared documents: error: no report (exit 2)" in run.step("report").stdout
