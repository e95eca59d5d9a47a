"""The OPA engine itself: loading, rejecting broken bundles, keeping the last good one, undefined is an error."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests

from keyguard.errors import ConfigError, PolicyError
from keyguard.policy import PolicyEngine
from keyguard.policy.engine import ManagedOpa, evaluate_each

MAIN = """package keyguard.main

import rego.v1

findings contains f if {
	input.kind == "vendors"
	some name
	some f in data.keyguard.vendors[name].deny
}
"""

RULE = """package keyguard.vendors.withdraw

import rego.v1

# METADATA
# title: A vendor must not require withdraw permission
# custom:
#   id: KG-VEN-901
#   severity: critical
#   remediation: Pick a vendor that works without withdraw.
deny contains result if {
	some v in input.vendors
	v.requires_withdraw == data.vendors.forbidden_value
	result := {
		"id": "KG-VEN-901",
		"severity": "critical",
		"resource": v.name,
		"message": sprintf("vendor %s requires withdraw", [v.name]),
		"remediation": "Pick a vendor that works without withdraw.",
		"evidence": {"requires_withdraw": true},
	}
}
"""

SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["kind", "vendors"],
    "properties": {
        "kind": {"const": "vendors"},
        "vendors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "requires_withdraw"],
                "properties": {"name": {"type": "string"}, "requires_withdraw": {"type": "boolean"}},
            },
        },
    },
}


@pytest.fixture
def bundle_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "policies"
    (root / "vendors").mkdir(parents=True)
    (tmp_path / "schemas").mkdir()
    (root / "main.rego").write_text(MAIN)
    (root / "vendors" / "withdraw.rego").write_text(RULE)
    (root / "vendors" / "data.json").write_text(json.dumps({"forbidden_value": True}))
    (tmp_path / "schemas" / "vendors.schema.json").write_text(json.dumps(SCHEMA))
    monkeypatch.setenv("KEYGUARD_POLICY_DIR", str(root))
    monkeypatch.setenv("KEYGUARD_SCHEMA_DIR", str(tmp_path / "schemas"))
    return root


def vendors(*pairs: tuple[str, bool]) -> dict:
    return {"kind": "vendors", "vendors": [{"name": n, "requires_withdraw": w} for n, w in pairs]}


def test_managed_engine_returns_findings_with_fingerprint_and_evidence(bundle_dir: Path) -> None:
    with PolicyEngine.managed(policy_root=bundle_dir) as engine:
        findings = engine.evaluate(vendors(("risky", True), ("fine", False)))
    assert [(f.id, f.severity, f.resource) for f in findings] == [("KG-VEN-901", "critical", "risky")]
    assert findings[0].evidence == {"requires_withdraw": True}
    assert len(findings[0].fingerprint) == 32


def test_thresholds_come_from_policy_data(bundle_dir: Path) -> None:
    (bundle_dir / "vendors" / "data.json").write_text(json.dumps({"forbidden_value": False}))
    with PolicyEngine.managed(policy_root=bundle_dir) as engine:
        findings = engine.evaluate(vendors(("risky", True), ("fine", False)))
    assert [f.resource for f in findings] == ["fine"]


def test_broken_rego_is_rejected_at_load_with_file_and_line(bundle_dir: Path) -> None:
    broken = "package keyguard.vendors.broken\n\nimport rego.v1\n\ndeny contains x if {\n"
    (bundle_dir / "vendors" / "broken.rego").write_text(broken)
    with pytest.raises(PolicyError) as err, PolicyEngine.managed(policy_root=bundle_dir):
        pass
    assert "broken.rego:" in str(err.value)
    assert "rego_parse_error" in str(err.value)


def test_reload_keeps_last_good_bundle_when_new_one_is_broken(bundle_dir: Path) -> None:
    with PolicyEngine.managed(policy_root=bundle_dir) as engine:
        broken = RULE.replace("deny contains result if {", "deny contains")
        (bundle_dir / "vendors" / "withdraw.rego").write_text(broken)
        with pytest.raises(PolicyError, match=r"withdraw\.rego:\d+"):
            engine.reload()
        findings = engine.evaluate(vendors(("risky", True)))
    assert [f.id for f in findings] == ["KG-VEN-901"]


def test_broken_data_json_names_file_and_line(bundle_dir: Path) -> None:
    (bundle_dir / "vendors" / "data.json").write_text('{\n  "forbidden_value": tru\n}')
    with pytest.raises(PolicyError, match=r"vendors/data\.json:2:\d+: invalid JSON"), PolicyEngine.managed(
        policy_root=bundle_dir
    ):
        pass


def test_undefined_result_is_an_error_not_a_pass(bundle_dir: Path) -> None:
    # An empty set is defined; an entry point that says nothing for this kind is undefined.
    (bundle_dir / "main.rego").write_text('package keyguard.main\n\nimport rego.v1\n\n'
                                          'findings := set() if input.kind == "keys"\n')
    with PolicyEngine.managed(policy_root=bundle_dir) as engine, pytest.raises(PolicyError, match="undefined"):
        engine.evaluate(vendors(("risky", True)))


def test_wrong_type_and_unknown_kind_are_clear_errors(bundle_dir: Path) -> None:
    with PolicyEngine.managed(policy_root=bundle_dir) as engine:
        with pytest.raises(ConfigError, match=r"field vendors/0/requires_withdraw: 'yes' is not of type 'boolean'"):
            engine.evaluate({"kind": "vendors", "vendors": [{"name": "x", "requires_withdraw": "yes"}]})
        with pytest.raises(ConfigError, match=r"unknown input kind 'nope'; expected one of: vendors"):
            engine.evaluate({"kind": "nope"})
        with pytest.raises(ConfigError, match="missing field 'kind'"):
            engine.evaluate({"vendors": []})


def test_opa_process_stops_with_its_owner(bundle_dir: Path) -> None:
    with PolicyEngine.managed(policy_root=bundle_dir) as engine:
        url = engine.url
        assert requests.get(f"{url}/health", timeout=2).status_code == 200
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/health", timeout=2)


def test_opa_sidecar_dies_when_owner_process_is_killed(tmp_path: Path) -> None:
    script = (
        "import sys, time\n"
        "from keyguard.policy.engine import ManagedOpa\n"
        "m = ManagedOpa(); m.start(); print(m.process.pid, flush=True); time.sleep(60)\n"
    )
    owner = subprocess.Popen([shutil.which("python") or "python", "-c", script], stdout=subprocess.PIPE, text=True)
    assert owner.stdout is not None
    opa_pid = int(owner.stdout.readline())
    owner.kill()
    owner.wait()
    for _ in range(100):
        try:
            os.kill(opa_pid, 0)
        except ProcessLookupError:
            break
        with open(f"/proc/{opa_pid}/stat") as stat:
            if stat.read().split()[2] == "Z":
                break
        time.sleep(0.05)
    else:
        pytest.fail("opa outlived its owner")


def test_external_engine_uses_an_opa_someone_else_runs(bundle_dir: Path) -> None:
    sidecar = ManagedOpa()
    url = sidecar.start()
    try:
        PolicyEngine(url, policy_root=bundle_dir).close()  # an operator loads the bundle once
        engine = PolicyEngine.external(url, policy_root=bundle_dir)
        assert [f.id for f in engine.evaluate(vendors(("risky", True)))] == ["KG-VEN-901"]
    finally:
        sidecar.stop()


def test_one_shot_evaluation_gives_the_servers_findings_for_each_document(bundle_dir: Path) -> None:
    documents = [("risky.yaml", vendors(("risky", True), ("fine", False))), ("fine.yaml", vendors(("fine", False)))]
    with PolicyEngine.managed(policy_root=bundle_dir) as engine:
        served = [(name, engine.evaluate(doc, source=name)) for name, doc in documents]
    once = evaluate_each(documents, policy_root=bundle_dir)
    assert [(name, [(f.id, f.resource, f.evidence) for f in found]) for name, found in once] == [
        (name, [(f.id, f.resource, f.evidence) for f in found]) for name, found in served]
    assert [f.resource for f in once[0][1]] == ["risky"] and once[1][1] == []


def test_one_shot_evaluation_refuses_undefined_broken_and_invalid_input_naming_the_document(bundle_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"bad\.yaml: field vendors/0/requires_withdraw"):
        evaluate_each([("ok.yaml", vendors(("a", False))),
                       ("bad.yaml", {"kind": "vendors", "vendors": [{"name": "x", "requires_withdraw": "yes"}]})],
                      policy_root=bundle_dir)
    # Two complete definitions that disagree for one document only: OPA's error names that document.
    (bundle_dir / "main.rego").write_text(
        'package keyguard.main\n\nimport rego.v1\n\ndefault findings := []\n\n'
        'findings := ["a"] if input.vendors[_].name == "boom"\n\n'
        'findings := ["b"] if input.vendors[_].requires_withdraw\n')
    with pytest.raises(PolicyError, match=r"(?s)boom\.yaml.*eval_conflict_error"):
        evaluate_each([("ok.yaml", vendors(("a", False))), ("boom.yaml", vendors(("boom", True)))],
                      policy_root=bundle_dir)
    (bundle_dir / "main.rego").write_text('package keyguard.main\n\nimport rego.v1\n\n'
                                          'findings := set() if input.kind == "keys"\n')
    with pytest.raises(PolicyError, match=r"policy result for vendors\.yaml is undefined"):
        evaluate_each([("vendors.yaml", vendors(("risky", True)))], policy_root=bundle_dir)
    (bundle_dir / "main.rego").write_text("package keyguard.main\n\nimport rego.v1\n\nfindings contains x if {\n")
    with pytest.raises(PolicyError, match=r"main\.rego:\d+: rego_parse_error"):
        evaluate_each([("vendors.yaml", vendors(("risky", True)))], policy_root=bundle_dir)
