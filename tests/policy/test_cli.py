"""`keyguard policy ...` as a user runs it: exit codes, tables, JSON, and clear errors instead of tracebacks."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from keyguard.tools import POLICY_DIR, PROJECT_ROOT

EXAMPLES = PROJECT_ROOT / "examples"


def keyguard(*args: str, cwd: Path = PROJECT_ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "keyguard.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=180)


def assert_clean_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr + proc.stdout
    for needle in needles:
        assert needle in proc.stderr, proc.stderr


INSECURE = ["keys-insecure.yaml", "execution-insecure.yaml", "vendors-insecure.yaml", "infra-insecure.json"]
COMPLIANT = ["keys-compliant.yaml", "execution-compliant.yaml", "vendors-compliant.yaml", "infra-dev.json"]


@pytest.mark.parametrize("example", INSECURE)
def test_insecure_example_lists_findings_with_ids_severity_and_remediation(example: str) -> None:
    proc = keyguard("policy", "check", str(EXAMPLES / example), "--json")
    assert proc.returncode == 1, proc.stderr
    findings = json.loads(proc.stdout)
    assert findings, "the insecure example must produce findings"
    for f in findings:
        assert f["id"].startswith("KG-") and f["severity"] in {"critical", "high", "medium", "low"}
        assert f["remediation"] and f["resource"] and f["message"]


@pytest.mark.parametrize("example", COMPLIANT)
def test_compliant_example_yields_no_findings(example: str) -> None:
    proc = keyguard("policy", "check", str(EXAMPLES / example), "--json", "--fail-on", "low")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout) == []


def test_table_output_names_rule_and_exit_code_follows_fail_on() -> None:
    insecure = str(EXAMPLES / "keys-insecure.yaml")
    table = keyguard("policy", "check", insecure)
    assert table.returncode == 1
    assert "KG-KEY-" in table.stdout and "critical" in table.stdout
    # nothing is above critical, so --fail-on critical only fails when a critical finding exists
    findings = json.loads(keyguard("policy", "check", insecure, "--json").stdout)
    expected = 1 if any(f["severity"] == "critical" for f in findings) else 0
    assert keyguard("policy", "check", insecure, "--fail-on", "critical").returncode == expected


def test_malformed_json_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{\n  "kind": "keys",\n  "keys": [\n}')
    assert_clean_error(keyguard("policy", "check", str(bad)), "bad.json:4:1", "invalid JSON")


def test_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: keys\nkeys:\n  - id: a\n    purpose: [unclosed\n")
    assert_clean_error(keyguard("policy", "check", str(bad)), "bad.yaml:", "invalid YAML")


def test_wrong_type_names_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "vendors.yaml"
    bad.write_text("kind: vendors\nvendors:\n  - name: bot-shop\n    requires_withdraw: maybe\n")
    assert_clean_error(keyguard("policy", "check", str(bad)), "vendors/0/requires_withdraw")


def test_unknown_kind_lists_the_known_ones(tmp_path: Path) -> None:
    bad = tmp_path / "x.yaml"
    bad.write_text("kind: spaceships\n")
    assert_clean_error(keyguard("policy", "check", str(bad)), "unknown input kind 'spaceships'", "keys")


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    assert_clean_error(keyguard("policy", "check", str(tmp_path / "nope.yaml")), "nope.yaml: file not found")


def test_broken_rego_is_named_with_file_and_line(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    shutil.copytree(POLICY_DIR, policies)
    (policies / "keys" / "broken.rego").write_text("package keyguard.keys.broken\n\nimport rego.v1\n\ndeny contains")
    proc = keyguard("policy", "check", str(EXAMPLES / "keys-compliant.yaml"), "--policy-dir", str(policies))
    assert_clean_error(proc, "broken.rego:", "rego_parse_error")


def test_rules_lists_every_rule_with_id_severity_and_remediation() -> None:
    proc = keyguard("policy", "rules", "--json")
    assert proc.returncode == 0, proc.stderr
    rules = json.loads(proc.stdout)
    ids = {r["id"] for r in rules}
    for prefix in ("KG-KEY-", "KG-IP-", "KG-ROT-", "KG-STO-", "KG-EXE-", "KG-LIVE-", "KG-INF-", "KG-VEN-"):
        assert any(i.startswith(prefix) for i in ids), f"no rule with prefix {prefix}"
    for r in rules:
        assert r["severity"] in {"critical", "high", "medium", "low"} and r["remediation"] and r["title"]


def test_policy_gate_passes_on_the_shipped_rule_set() -> None:
    proc = keyguard("policy", "test")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "coverage" in proc.stdout
    assert "regal lint" in proc.stdout  # setup builds Regal, so the lint is part of the gate


@pytest.mark.parametrize("command", [["test"], ["check", "--strict"], ["build", "-o", "{tmp}/bundle.tar.gz"]])
def test_standard_opa_tools_take_the_policy_directory_with_no_flags(command: list[str], tmp_path: Path) -> None:
    """`policies/` is a plain OPA bundle directory: Conftest, Pulumi's OPA bridge or a bare `opa` can use it."""
    from keyguard.tools import opa_binary

    args = [arg.replace("{tmp}", str(tmp_path)) for arg in command]
    proc = subprocess.run([opa_binary(), *args, str(POLICY_DIR)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    if command == ["test"]:
        assert "PASS" in proc.stdout and "FAIL" not in proc.stdout


def test_policy_gate_fails_on_unformatted_rego(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    shutil.copytree(POLICY_DIR, policies)
    path = policies / "keys" / "privilege.rego"
    path.write_text(path.read_text().replace("\t", "        ", 1))
    assert_clean_error(keyguard("policy", "test", "--policy-dir", str(policies)), "opa fmt")


def test_policy_gate_fails_on_a_regal_violation(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    shutil.copytree(POLICY_DIR, policies)
    path = policies / "vendors" / "shadow.rego"
    path.write_text("package keyguard.vendors.shadow\n\nimport rego.v1\n\n# METADATA\n# title: t\n"
                    "count_of_things := 1\n\nget_thing := 2\n")
    assert_clean_error(keyguard("policy", "test", "--policy-dir", str(policies)), "regal lint", "get_")
