"""The core of Keyguard's CrossGuard pack: stack resources -> the `infra` policy input -> OPA -> violations.

Plain functions over plain data so they can be tested without the Pulumi engine; `__main__.py` only wires
them into a PolicyPack. The Rego is the same rule set `keyguard infra check` and the live drift check use.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pulumi_policy import proxy as unknowns

PACK_DIR = Path(__file__).resolve().parent
MANDATORY_SEVERITIES = frozenset({"critical", "high"})
UNKNOWN_SENTINELS = frozenset(
    value for name, value in vars(unknowns).items() if name.startswith("UNKNOWN_") and isinstance(value, str)
)
# Properties holding whole documents: a stand-in reference would make them unparseable, so they stay unknown.
DOCUMENT_PROPERTIES = frozenset({"policy", "assumeRolePolicy", "userData", "userDataBase64", "inlinePolicies"})
# Resource types the infra rules read; an unknown property on one of them is reported (advisory) at preview.
JUDGED_TYPES = frozenset({
    "aws:ec2/instance:Instance", "aws:ec2/launchTemplate:LaunchTemplate", "aws:ec2/eip:Eip",
    "aws:ec2/eipAssociation:EipAssociation", "aws:ec2/securityGroup:SecurityGroup",
    "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup", "aws:ec2/securityGroupRule:SecurityGroupRule",
    "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", "aws:iam/rolePolicy:RolePolicy",
    "aws:iam/userPolicy:UserPolicy", "aws:iam/groupPolicy:GroupPolicy", "aws:iam/policy:Policy",
    "aws:iam/role:Role", "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
    "aws:iam/userPolicyAttachment:UserPolicyAttachment", "aws:iam/groupPolicyAttachment:GroupPolicyAttachment",
    "aws:iam/policyAttachment:PolicyAttachment", "aws:secretsmanager/secret:Secret", "aws:kms/key:Key",
})


class PackError(Exception):
    """OPA could not be started or could not evaluate the stack; the pack reports it as a violation."""


@dataclass
class StackResource:
    """What the pack needs from a pulumi_policy PolicyResource, as plain data."""

    type: str
    name: str
    urn: str
    props: dict[str, Any]
    property_dependencies: dict[str, list[str]] = field(default_factory=dict)  # property -> dependency URNs
    unknown: list[str] = field(default_factory=list)  # property paths not known yet (preview)


@dataclass(frozen=True)
class Violation:
    rule: str
    severity: str
    message: str
    urn: str | None
    mandatory: bool


def plain(value: Any, path: str = "", unknown: list[str] | None = None) -> Any:
    """Copy a (proxied) property value into plain JSON data; unknown preview values become None."""
    if isinstance(value, str):
        if value in UNKNOWN_SENTINELS:
            if unknown is not None:
                unknown.append(path)
            return None
        return value
    if isinstance(value, Mapping):
        target = value["__target"] if type(value).__name__ == "_DictProxy" else value
        return {str(k): plain(target[k], f"{path}.{k}" if path else str(k), unknown) for k in target}
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        target = value["__target"] if type(value).__name__ == "_ListProxy" else value  # type: ignore[call-overload]
        return [plain(item, f"{path}[{i}]", unknown) for i, item in enumerate(target)]
    if value is None or isinstance(value, bool | int | float):
        return value
    return str(value)


def from_policy_resources(resources: Iterable[Any]) -> list[StackResource]:
    """pulumi_policy PolicyResource objects -> StackResource (the SDK's proxies unwrapped)."""
    converted = []
    for r in resources:
        unknown: list[str] = []
        props = plain(r.props, "", unknown)
        deps = {prop: [d.urn for d in dependencies] for prop, dependencies in (r.property_dependencies or {}).items()}
        converted.append(StackResource(r.resource_type, r.name, r.urn, props, deps, unknown))
    return converted


def _type_name(type_token: str) -> str:
    return type_token.rsplit(":", 1)[-1]


def resource_key(resource: StackResource) -> str:
    """The `resource` string the rules put in a finding for this resource (Type/name)."""
    return f"{_type_name(resource.type)}/{resource.name}"


def stack_input(resources: Sequence[StackResource], source: str = "pulumi-preview") -> dict[str, Any]:
    """Build the `infra` input. A resource's id is its real id, or its URN while it does not exist yet; an
    unknown reference to exactly one other resource is replaced by that resource's id, so associations
    (EIP -> instance, secret -> KMS key) hold during a preview just as they will after `pulumi up`."""
    by_urn = {r.urn: r for r in resources}

    def resource_id(r: StackResource) -> str:
        known = r.props.get("id")
        return known if isinstance(known, str) and known else r.urn

    items = []
    for r in resources:
        if r.type.startswith("pulumi:") or "::pulumi:providers:" in r.urn:
            continue
        props = dict(r.props)
        for prop, urns in r.property_dependencies.items():
            if props.get(prop) is None and prop not in DOCUMENT_PROPERTIES and len(urns) == 1 and urns[0] in by_urn:
                props[prop] = resource_id(by_urn[urns[0]])
        items.append({"type": r.type, "name": r.name, "id": resource_id(r), "properties": props})
    return {"kind": "infra", "source": source, "resources": items}


def evaluate(document: dict[str, Any], opa_url: str) -> list[dict[str, Any]]:
    """POST the input to OPA's data API for data.keyguard.main.findings; undefined is an error, never a pass."""
    if not opa_url.startswith(("http://", "https://")):
        raise PackError(f"OPA URL {opa_url!r} is not an http(s) URL like http://127.0.0.1:8181")
    request = urllib.request.Request(  # noqa: S310 - scheme checked above
        f"{opa_url.rstrip('/')}/v1/data/keyguard/main/findings",
        data=json.dumps({"input": document}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - URL is configured OPA
            body = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise PackError(f"OPA at {opa_url} failed to evaluate the stack: {exc.read()[:300]!r}") from None
    except OSError as exc:
        raise PackError(f"OPA at {opa_url} unreachable: {exc}") from None
    if "result" not in body:
        raise PackError("data.keyguard.main.findings is undefined: the Keyguard policies are not loaded in OPA")
    return list(body["result"])


def violations(resources: Sequence[StackResource], findings: Iterable[Mapping[str, Any]]) -> list[Violation]:
    urns = {resource_key(r): r.urn for r in resources}
    out = []
    for f in sorted(findings, key=lambda f: (f["id"], f["resource"])):
        severity = str(f["severity"])
        message = (f"[{severity}] {f['id']} {f['resource']}: {f['message']}. "
                   f"Remediation: {f['remediation']}")
        out.append(Violation(f["id"], severity, message, urns.get(f["resource"]), severity in MANDATORY_SEVERITIES))
    for r in resources:
        if r.type in JUDGED_TYPES and r.unknown:
            out.append(Violation(
                "preview-unknown", "low",
                f"{resource_key(r)}: {', '.join(sorted(r.unknown))} not known until apply; checked again on "
                "`pulumi up` and by `keyguard infra check` (Pulumi mocks resolve every value)",
                r.urn, False,
            ))
    return out


def policy_bundle(source: Path | None = None) -> Path:
    """The one Keyguard policy bundle (keyguard.policy.bundle): KEYGUARD_POLICY_BUNDLE (a .tar.gz written by
    `keyguard policy bundle -o FILE`), else the one keyguard itself loads when it is installed beside the pack
    (`source` a policy directory or bundle, default the checkout's policies/ or the packaged bundle)."""
    configured = os.environ.get("KEYGUARD_POLICY_BUNDLE")
    if source is None and configured:
        if not Path(configured).is_file():
            raise PackError(f"KEYGUARD_POLICY_BUNDLE={configured} does not exist")
        return Path(configured)
    try:
        from keyguard.errors import KeyguardError
        from keyguard.policy.bundle import resolve_bundle
    except ImportError:
        raise PackError("no Keyguard policy bundle: set KEYGUARD_POLICY_BUNDLE to the file "
                        "`keyguard policy bundle -o FILE` writes, or install keyguard in the pack's venv") from None
    try:
        return resolve_bundle(source).path
    except KeyguardError as exc:
        raise PackError(str(exc)) from None


class OpaSidecar:
    """A private `opa run --server` on 127.0.0.1 with the Keyguard policy bundle, for one pack process."""

    def __init__(self, source: Path | None = None) -> None:
        self.source = source
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self, timeout: float = 20.0) -> str:
        binary = _opa_binary()
        bundle = policy_bundle(self.source)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        self.process = subprocess.Popen(
            [binary, "run", "--server", "--addr", f"127.0.0.1:{port}", "--log-level", "error", "--bundle",
             str(bundle)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                stderr = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
                raise PackError(f"opa exited while loading {bundle}: {stderr[:500]}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=1):  # noqa: S310 - loopback
                    return self.url
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise PackError(f"opa did not become healthy on {self.url} within {timeout}s")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=5)
        if self.process and self.process.stderr:
            self.process.stderr.close()


def _opa_binary() -> str:
    configured = os.environ.get("KEYGUARD_OPA_BIN")
    candidates = [configured] if configured else []
    candidates += [str(PACK_DIR.parents[1] / ".tools" / "bin" / "opa"), shutil.which("opa")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return candidate
    raise PackError("opa not found: set KEYGUARD_OPA_BIN, run `make setup`, or put opa on PATH")


class StackJudge:
    """Evaluates each stack once and hands the results to both validators (mandatory and advisory)."""

    def __init__(self, opa_url: str | None = None) -> None:
        self._opa_url = opa_url or os.environ.get("KEYGUARD_OPA_URL")
        self._sidecar: OpaSidecar | None = None
        self._cache: tuple[str, list[Violation]] | None = None

    def _url(self) -> str:
        if self._opa_url:
            return self._opa_url
        if self._sidecar is None:
            self._sidecar = OpaSidecar()
            atexit.register(self._sidecar.stop)
            self._sidecar.start()
        return self._sidecar.url

    def judge(self, resources: Sequence[StackResource]) -> list[Violation]:
        document = stack_input(resources)
        key = json.dumps(document, sort_keys=True)
        if self._cache and self._cache[0] == key:
            return self._cache[1]
        try:
            result = violations(resources, evaluate(document, self._url()))
        except PackError as exc:
            # Unknown is never safe: a stack the rules could not judge does not pass.
            result = [Violation("keyguard-pack", "critical", f"Keyguard policies could not run: {exc}", None, True)]
        self._cache = (key, result)
        return result

    def validator(self, mandatory: bool) -> Callable[[Any, Callable[..., None]], None]:
        def validate(args: Any, report_violation: Callable[..., None]) -> None:
            for v in self.judge(from_policy_resources(args.resources)):
                if v.mandatory == mandatory:
                    report_violation(v.message, v.urn)

        return validate

    def close(self) -> None:
        if self._sidecar:
            self._sidecar.stop()
