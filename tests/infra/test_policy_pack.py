"""The CrossGuard pack's validators, called the way the Pulumi engine calls them (pulumi_policy's own
PolicyResource and StackValidationArgs, props behind its unknown-checking proxy), against a real OPA."""

from __future__ import annotations

import copy
import importlib
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import empty_pb2, struct_pb2
from pulumi.runtime import proto
from pulumi.runtime.proto import analyzer_pb2_grpc
from pulumi_policy import PolicyCustomTimeouts, PolicyResource, PolicyResourceOptions, StackValidationArgs
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, unknown_checking_proxy

from keyguard.infra.capture import CapturedStack, capture_program
from keyguard.policy import PolicyEngine
from keyguard.tools import POLICY_DIR, opa_binary

from .conftest import MUTATIONS, dev_config

sys.path.insert(0, str(POLICY_DIR / "pulumi"))
pack = importlib.import_module("keyguard_crossguard")


def urn(resource: dict[str, Any]) -> str:
    return f"urn:pulumi:dev::keyguard::{resource['type']}::{resource['name']}"


def policy_resource(resource: dict[str, Any], props: dict[str, Any] | None = None,
                    dependencies: dict[str, list[PolicyResource]] | None = None) -> PolicyResource:
    opts = PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])
    values = props if props is not None else {**resource["properties"], "id": resource["id"]}
    return PolicyResource(resource["type"], unknown_checking_proxy(values), urn(resource), resource["name"], opts,
                          None, None, [], dependencies or {})


def stack_args(stack: CapturedStack) -> StackValidationArgs:
    return StackValidationArgs([policy_resource(r) for r in stack.resources])


def run_validators(judge: Any, args: StackValidationArgs) -> dict[str, list[tuple[str, str | None]]]:
    reported: dict[str, list[tuple[str, str | None]]] = {"mandatory": [], "advisory": []}
    for level, mandatory in (("mandatory", True), ("advisory", False)):
        judge.validator(mandatory)(args, lambda message, urn=None, _l=level: reported[_l].append((message, urn)))
    return reported


@pytest.fixture
def judge(infra_engine: PolicyEngine) -> Any:
    return pack.StackJudge(opa_url=infra_engine.url)


def mutated(name: str) -> CapturedStack:
    return capture_program(MUTATIONS / name, dev_config())


def test_shipped_stack_passes_both_validators(judge: Any, shipped: CapturedStack) -> None:
    assert run_validators(judge, stack_args(shipped)) == {"mandatory": [], "advisory": []}


def test_world_open_ssh_blocks_with_severity_remediation_and_resource_urn(judge: Any) -> None:
    stack = mutated("ssh_open")
    reported = run_validators(judge, stack_args(stack))
    rule = stack.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")[0]
    messages = {message.split(" ")[1]: (message, where) for message, where in reported["mandatory"]}
    assert set(messages) == {"KG-INF-102", "KG-INF-103"}
    message, where = messages["KG-INF-102"]
    assert message.startswith("[critical] KG-INF-102 SecurityGroupIngressRule/exec-ssh-admin")
    assert "Remediation: Remove the world-open ingress" in message
    assert where == urn(rule)
    assert reported["advisory"] == []


def test_medium_finding_is_advisory_not_mandatory(judge: Any, shipped: CapturedStack) -> None:
    stack = copy.deepcopy(shipped)
    stack.of_type("aws:kms/key:Key")[0]["properties"]["enableKeyRotation"] = False
    reported = run_validators(judge, stack_args(stack))
    assert reported["mandatory"] == []
    assert [m.split(" ")[:2] for m, _ in reported["advisory"]] == [["[medium]", "KG-INF-107"]]


def test_preview_unknowns_keep_associations_and_are_reported_as_advisory(judge: Any, shipped: CapturedStack) -> None:
    """During a first preview ids and ARNs are unknown; references resolve through property dependencies."""
    resources = {r["name"]: r for r in shipped.resources}
    built: dict[str, PolicyResource] = {}
    for r in shipped.resources:
        props = dict(r["properties"])  # no id: nothing exists yet
        built[r["name"]] = policy_resource(r, props)
    instance, key, eip = built["exec-instance"], built["vault-key"], built["exec-eip"]
    association = resources["exec-eip-association"]
    built["exec-eip-association"] = policy_resource(
        association, {**association["properties"], "allocationId": UNKNOWN_STRING_VALUE,
                      "instanceId": UNKNOWN_STRING_VALUE}, {"allocationId": [eip], "instanceId": [instance]})
    secret_names = ("vault-bot-exec-1", "vault-monitor-1", "vault-service-api-token")
    for name in secret_names:
        built[name] = policy_resource(resources[name], {**resources[name]["properties"],
                                                        "kmsKeyId": UNKNOWN_STRING_VALUE}, {"kmsKeyId": [key]})
    secrets = [built[name] for name in secret_names]
    built["exec-least-privilege"] = policy_resource(
        resources["exec-least-privilege"], {**resources["exec-least-privilege"]["properties"],
                                            "policy": UNKNOWN_STRING_VALUE}, {"policy": [*secrets, key]})
    reported = run_validators(judge, StackValidationArgs(list(built.values())))
    assert reported["mandatory"] == []
    unknown_notes = [(m, where) for m, where in reported["advisory"] if "not known until apply" in m]
    pending = ("exec-eip-association", "exec-least-privilege", *secret_names)
    assert {where for _, where in unknown_notes} == {built[name].urn for name in pending}


def test_unreachable_opa_blocks_the_deployment(shipped: CapturedStack) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    judge = pack.StackJudge(opa_url=f"http://127.0.0.1:{closed_port}")
    reported = run_validators(judge, stack_args(shipped))
    assert len(reported["mandatory"]) == 1
    assert "Keyguard policies could not run" in reported["mandatory"][0][0]


@pytest.fixture
def sidecar(infra_policy_root: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("KEYGUARD_OPA_BIN", opa_binary())
    opa = pack.OpaSidecar(infra_policy_root)
    opa.start()
    try:
        yield opa
    finally:
        opa.stop()


def test_pack_started_opa_evaluates_the_same_rules(sidecar: Any) -> None:
    stack = mutated("wildcard_iam")
    resources = pack.from_policy_resources(stack_args(stack).resources)
    findings = pack.evaluate(pack.stack_input(resources), sidecar.url)
    assert {f["id"] for f in findings} == {"KG-INF-108", "KG-INF-109"}


def test_pack_refuses_a_non_http_opa_url() -> None:
    with pytest.raises(pack.PackError, match="not an http"):
        pack.evaluate({"kind": "infra", "resources": []}, "file:///etc/passwd")


@pytest.fixture
def pack_process(infra_engine: PolicyEngine) -> Iterator[Any]:
    """The pack as Pulumi runs it: `python __main__.py` serving the analyzer gRPC API on a printed port."""
    env = {**os.environ, "KEYGUARD_OPA_URL": infra_engine.url}
    process = subprocess.Popen([sys.executable, str(POLICY_DIR / "pulumi" / "__main__.py")],
                               stdout=subprocess.PIPE, env=env)
    try:
        port = int(process.stdout.readline())  # type: ignore[union-attr]
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield analyzer_pb2_grpc.AnalyzerStub(channel)
    finally:
        process.terminate()
        process.wait(timeout=10)


def analyzer_resources(stack: CapturedStack) -> list[Any]:
    resources = []
    for r in stack.resources:
        properties = struct_pb2.Struct()
        properties.update({**r["properties"], "id": r["id"]})
        resources.append(proto.AnalyzerResource(type=r["type"], properties=properties, urn=urn(r), name=r["name"]))
    return resources


def test_pack_process_declares_a_mandatory_and_an_advisory_policy(pack_process: Any) -> None:
    info = pack_process.GetAnalyzerInfo(empty_pb2.Empty())
    levels = {p.name: proto.EnforcementLevel.Name(p.enforcementLevel) for p in info.policies}
    assert (info.name, levels) == ("keyguard", {"keyguard-critical-and-high": "MANDATORY",
                                                "keyguard-medium-and-low": "ADVISORY"})


def test_pack_process_blocks_a_world_open_stack_over_grpc(pack_process: Any, shipped: CapturedStack) -> None:
    clean = pack_process.AnalyzeStack(proto.AnalyzeStackRequest(resources=analyzer_resources(shipped)))
    assert list(clean.diagnostics) == []
    stack = mutated("ssh_open")
    response = pack_process.AnalyzeStack(proto.AnalyzeStackRequest(resources=analyzer_resources(stack)))
    found = {(d.message.split("\n", 1)[1].split(" ")[1], proto.EnforcementLevel.Name(d.enforcementLevel))
             for d in response.diagnostics}
    assert found == {("KG-INF-102", "MANDATORY"), ("KG-INF-103", "MANDATORY")}
    rule = stack.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")[0]
    assert {d.urn for d in response.diagnostics} == {urn(rule)}


def test_every_resource_type_the_infra_rules_read_is_reported_when_unknown_at_preview() -> None:
    read = {m for f in (POLICY_DIR / "infra").glob("*.rego") if not f.name.endswith("_test.rego")
            for m in re.findall(r'"(aws:[A-Za-z0-9]+/[A-Za-z0-9]+:[A-Za-z0-9]+)"', f.read_text())}
    assert read, "no resource types found in the infra rules"
    assert read <= pack.JUDGED_TYPES, f"read by the rules but not judged at preview: {sorted(read - pack.JUDGED_TYPES)}"
