"""Documents built to slip past the rules, one per class of trick, checked as a user checks them: `keyguard policy
check` on a YAML file, against the real rule set in a real OPA. Each class is fixed at its root in the Rego (a shared
helper in policies/lib where one mechanism was at fault); the rule tests beside each rule hold the variants."""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.cli_in_process import run_cli

from keyguard.policy import PolicyEngine
from keyguard.tools import PROJECT_ROOT

EXAMPLES = PROJECT_ROOT / "examples"


def example(name: str) -> dict[str, Any]:
    path = EXAMPLES / name
    text = path.read_text(encoding="utf-8")
    return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)


def check(doc: dict[str, Any], directory: Path, opa_url: str) -> tuple[int, list[dict[str, Any]], str]:
    """`keyguard policy check DOC.yaml --format json`: (exit code, findings, stderr)."""
    path, report = directory / "document.yaml", directory / "findings.json"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    report.unlink(missing_ok=True)
    code, _, err = run_cli(["policy", "check", str(path), "--format", "json", "--output", str(report),
                            "--fail-on", "low", "--opa-url", opa_url])
    findings = json.loads(report.read_text(encoding="utf-8")) if report.exists() else []
    return code, findings, err


@pytest.fixture(scope="module")
def opa_url(policy_engine: PolicyEngine) -> str:
    return policy_engine.url


def resource(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(r for r in doc["resources"] if r["name"] == name)


def key(doc: dict[str, Any], key_id: str) -> dict[str, Any]:
    return next(k for k in doc["keys"] if k["id"] == key_id)


# -- mutations of the compliant examples, one per class ----------------------------------------------------------

def null_order_retry(doc: dict[str, Any]) -> None:
    doc["config"]["order_retry"] = None


def null_metadata_options(doc: dict[str, Any]) -> None:
    resource(doc, "exec-instance")["properties"]["metadataOptions"] = None


def exported_aws_secret(doc: dict[str, Any]) -> None:
    props = resource(doc, "exec-instance")["properties"]
    props["userData"] += "\nexport AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n"


def launch_template_with_encoded_secret(doc: dict[str, Any]) -> None:
    script = "#!/bin/bash\nexport BINANCE_API_SECRET=Zx81kq0pL2mN4bV6cX8z9Q7wE3rT5yU1iO\n"
    doc["resources"].append({
        "type": "aws:ec2/launchTemplate:LaunchTemplate", "name": "bots", "id": "lt-1",
        "properties": {"metadataOptions": {"httpTokens": "required"},
                       "userData": base64.b64encode(script.encode()).decode()},
    })


def tag_naming_a_secret(doc: dict[str, Any]) -> None:
    tags = resource(doc, "exec-instance")["properties"]["tags"]
    tags.update({"SecretName": "keyguard/binance/bot", "secret": "keyguard/binance/bot"})


def prefix_wildcard_action(doc: dict[str, Any]) -> None:
    props = resource(doc, "exec-least-privilege")["properties"]
    policy = json.loads(props["policy"])
    policy["Statement"][0]["Action"] = ["secretsmanager:Get*"]
    props["policy"] = json.dumps(policy)


def attached_administrator_access(doc: dict[str, Any]) -> None:
    resource(doc, "exec-ssm")["properties"]["policyArn"] = "arn:aws:iam::aws:policy/AdministratorAccess"


def ipv6_everywhere_spelt_long(doc: dict[str, Any]) -> None:
    resource(doc, "exec-ssh-admin")["properties"].pop("cidrIpv4")
    resource(doc, "exec-ssh-admin")["properties"]["cidrIpv6"] = "0::/0"


def default_group_ingress(doc: dict[str, Any]) -> None:
    doc["resources"].append({
        "type": "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup", "name": "default", "id": "sg-default",
        "properties": {"vpcId": "vpc-b0843cedb3dd5c648",
                       "ingress": [{"protocol": "-1", "fromPort": 0, "toPort": 0, "self": True}]},
    })


def binding_to_the_eip_as_slash_32(doc: dict[str, Any]) -> None:
    doc["key_bindings"] = [{"key": "bot-exec-1", "ips": ["203.0.113.75/32"]}]


def host_ipv6_spelt_long(doc: dict[str, Any]) -> None:
    key(doc, "hedge-okx-1")["allowed_ips"][0]["value"] = "2001:DB8:0:0:0:0:0:10"


def capitalised_monitoring_key_that_trades(doc: dict[str, Any]) -> None:
    monitor = key(doc, "mon-1")
    monitor["purpose"] = "Monitoring"
    monitor["permissions"]["trade"] = True


def one_key_under_two_spellings_of_its_exchange(doc: dict[str, Any]) -> None:
    twin = copy.deepcopy(key(doc, "bot-exec-1"))
    twin.update({"exchange": "Binance", "purpose": "monitoring", "services": ["dashboard"]})
    doc["keys"].append(twin)


def stage_ahead_of_its_history(doc: dict[str, Any]) -> None:
    doc["golive"]["history"] = doc["golive"]["history"][:4]  # full-live configured, never recorded


def expiry_in_exactly_seven_days(doc: dict[str, Any]) -> None:
    key(doc, "bot-exec-1")["expires_at"] = "2026-12-02T00:00:00Z"


def restricted_to_nothing(doc: dict[str, Any]) -> None:
    key(doc, "bot-exec-1")["allowed_ips"] = []


Mutation = Callable[[dict[str, Any]], None]

CASES: list[tuple[str, str, Mutation, str, bool]] = [
    # (class, example, mutation, rule, expected to fire)
    ("null", "execution-compliant.yaml", null_order_retry, "KG-EXE-108", True),
    ("null", "infra-dev.json", null_metadata_options, "KG-INF-104", True),
    ("secret", "infra-dev.json", exported_aws_secret, "KG-INF-110", True),
    ("secret", "infra-dev.json", launch_template_with_encoded_secret, "KG-INF-110", True),
    ("secret", "infra-dev.json", tag_naming_a_secret, "KG-INF-110", False),
    ("iam", "infra-dev.json", prefix_wildcard_action, "KG-INF-108", True),
    ("iam", "infra-dev.json", attached_administrator_access, "KG-INF-108", True),
    ("address", "infra-dev.json", ipv6_everywhere_spelt_long, "KG-INF-102", True),
    ("address", "infra-dev.json", default_group_ingress, "KG-INF-102", True),
    ("address", "infra-dev.json", binding_to_the_eip_as_slash_32, "KG-INF-111", False),
    ("address", "keys-compliant.yaml", host_ipv6_spelt_long, "KG-IP-103", False),
    ("identity", "keys-compliant.yaml", capitalised_monitoring_key_that_trades, "KG-KEY-103", True),
    ("identity", "keys-compliant.yaml", one_key_under_two_spellings_of_its_exchange, "KG-KEY-105", True),
    ("history", "execution-compliant.yaml", stage_ahead_of_its_history, "KG-LIVE-102", True),
    ("history", "keys-compliant.yaml", expiry_in_exactly_seven_days, "KG-ROT-105", True),
    ("lie", "keys-compliant.yaml", restricted_to_nothing, "KG-IP-101", True),
]


@pytest.mark.parametrize(("example_name", "mutate", "rule", "fires"),
                         [pytest.param(e, m, r, f, id=f"{c}-{m.__name__}") for c, e, m, r, f in CASES])
def test_adversarial_document_is_judged_by_its_meaning_not_its_spelling(
        example_name: str, mutate: Mutation, rule: str, fires: bool, tmp_path: Path, opa_url: str) -> None:
    doc = example(example_name)
    mutate(doc)
    code, findings, err = check(doc, tmp_path, opa_url)
    ids = {f["id"] for f in findings}
    assert code in (0, 1), err
    if fires:
        assert rule in ids, f"{mutate.__name__} slipped past {rule}: {sorted(ids)}"
        assert code == 1
    else:
        assert rule not in ids, f"{mutate.__name__} is a false alarm of {rule}: {findings}"


@pytest.mark.parametrize("example_name", ["keys-compliant.yaml", "execution-compliant.yaml",
                                          "vendors-compliant.yaml", "infra-dev.json"])
def test_a_now_that_is_no_real_time_is_refused_or_reported_never_replaced_by_the_wall_clock(
        example_name: str, tmp_path: Path, opa_url: str) -> None:
    doc = example(example_name)
    doc["now"] = "2026-02-30T00:00:00Z"
    code, findings, err = check(doc, tmp_path, opa_url)
    if code == 2:  # refused by the schema check before OPA: the error names the field
        assert "now" in err, err
        return
    assert code == 1, err
    assert {f["id"] for f in findings} & {"KG-ROT-107", "KG-EXE-113", "KG-INF-113", "KG-VEN-107"}, findings


def test_the_compliant_examples_stay_quiet(tmp_path: Path, opa_url: str) -> None:
    for name in ("keys-compliant.yaml", "execution-compliant.yaml", "vendors-compliant.yaml", "infra-dev.json"):
        code, findings, err = check(example(name), tmp_path, opa_url)
        assert (code, findings) == (0, []), f"{name}: {err} {findings}"
