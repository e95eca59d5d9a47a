"""`keyguard infra check`: the shipped program passes; each mutated program fails with the right rule id."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from keyguard.cli import app
from keyguard.infra.capture import CapturedStack
from keyguard.policy import PolicyEngine
from keyguard.tools import PROJECT_ROOT

from .conftest import MUTATIONS, release_overrides

runner = CliRunner()


def run_check(engine: PolicyEngine, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["infra", "check", "--opa-url", engine.url, *release_overrides(), *args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def rule_ids(output: str) -> set[str]:
    return {f["id"] for f in json.loads(output)}


def test_shipped_program_has_no_findings(infra_engine: PolicyEngine) -> None:
    code, output = run_check(infra_engine, "--json")
    assert code == 0
    assert json.loads(output) == []


def test_shipped_program_report_says_what_was_checked(infra_engine: PolicyEngine) -> None:
    code, output = run_check(infra_engine)
    assert code == 0
    assert "resources captured" in output and "no findings" in output


@pytest.mark.parametrize(("mutation", "rule"), [
    ("ssh_open", "KG-INF-103"),
    ("ssh_open", "KG-INF-102"),
    ("wildcard_iam", "KG-INF-108"),
    ("secret_without_cmk", "KG-INF-106"),
    ("host_without_eip", "KG-INF-101"),
    ("imdsv1", "KG-INF-104"),
])
def test_mutated_program_fails_with_the_rule_it_breaks(infra_engine: PolicyEngine, mutation: str,
                                                       rule: str) -> None:
    code, output = run_check(infra_engine, "--program", str(MUTATIONS / mutation), "--json")
    assert code == 1
    assert rule in rule_ids(output)


def test_wildcard_role_is_also_reported_as_reading_secrets_outside_the_vault(infra_engine: PolicyEngine) -> None:
    _, output = run_check(infra_engine, "--program", str(MUTATIONS / "wildcard_iam"), "--json")
    assert rule_ids(output) == {"KG-INF-108", "KG-INF-109"}


def test_fail_on_threshold_above_the_findings_lets_the_check_pass(infra_engine: PolicyEngine) -> None:
    code, output = run_check(infra_engine, "--program", str(MUTATIONS / "imdsv1"), "--fail-on", "critical",
                             "--json")
    assert code == 0
    assert rule_ids(output) == {"KG-INF-104"}


def test_keys_bound_to_an_old_address_fail_the_check(infra_engine: PolicyEngine, tmp_path: Path) -> None:
    bindings = tmp_path / "bindings.json"
    bindings.write_text(json.dumps([{"key": "bot-exec-1", "ips": ["198.51.100.20"]}]))
    code, output = run_check(infra_engine, "--key-bindings", str(bindings), "--json")
    assert code == 1
    findings = json.loads(output)
    assert [(f["id"], f["resource"]) for f in findings] == [("KG-INF-111", "key/bot-exec-1")]


def test_keys_bound_to_the_static_ip_pass(infra_engine: PolicyEngine, tmp_path: Path,
                                          shipped: CapturedStack) -> None:
    bindings = tmp_path / "bindings.yaml"
    bindings.write_text(f"key_bindings:\n  - key: bot-exec-1\n    ips: ['{shipped.outputs['staticIp']}']\n")
    code, output = run_check(infra_engine, "--key-bindings", str(bindings), "--json")
    assert (code, json.loads(output)) == (0, [])


def test_config_override_reaches_the_program(infra_engine: PolicyEngine) -> None:
    # Without the admin address there is no SSH rule; the program still passes.
    code, output = run_check(infra_engine, "--set", "keyguard:adminCidr=", "--json")
    assert (code, json.loads(output)) == (0, [])


def test_bad_config_is_a_clear_error_without_traceback() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "keyguard.cli", "infra", "check", *release_overrides(),
         "--set", "keyguard:adminCidr=0.0.0.0/0"],
        capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120,
    )
    assert result.returncode == 2
    message = " ".join(result.stderr.split())
    assert "keyguard:adminCidr is '0.0.0.0/0'" in message
    assert "Traceback" not in result.stderr


def test_missing_stack_config_file_is_a_clear_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["infra", "check", "--config", str(tmp_path / "Pulumi.prod.yaml")])
    assert result.exit_code != 0
    assert "stack config file not found" in str(result.exception)
