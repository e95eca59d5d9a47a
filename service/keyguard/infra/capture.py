"""Run a Pulumi program in-process under Pulumi's mocks and capture its resources in the `infra` input shape.

Nothing reaches AWS: the mocks stand in for the cloud, returning deterministic ids, ARNs and addresses.
Pulumi's runtime state is global, so every capture starts from a fresh runtime and removes the program's
own modules afterwards; captures can run one after another in the same process.
"""

from __future__ import annotations

import hashlib
import json
import runpy
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import settings as pulumi_settings
from pulumi.runtime.config import set_all_config
from pulumi.runtime.stack import run_in_stack
from pulumi.runtime.sync_await import _sync_await

from keyguard.errors import ConfigError
from keyguard.loading import parse_text, read_text

MOCK_ACCOUNT = "123456789012"
# Stands in for the SSM-published Amazon Linux image id the program looks up.
MOCK_AMI = "ami-0123456789abcdef0"


class InfraProgramError(ConfigError):
    """The Pulumi program refused its config or failed while it ran under mocks."""


@dataclass
class CapturedStack:
    project: str
    stack: str
    resources: list[dict[str, Any]]
    outputs: dict[str, Any] = field(default_factory=dict)

    def to_policy_input(self, key_bindings: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "kind": "infra",
            "source": "pulumi-mocks",
            "stack": f"{self.project}/{self.stack}",
            "resources": self.resources,
        }
        if key_bindings is not None:
            doc["key_bindings"] = key_bindings
        return doc

    def of_type(self, type_token: str) -> list[dict[str, Any]]:
        return [r for r in self.resources if r["type"] == type_token]


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


class RecordingMocks(pulumi.runtime.Mocks):
    """Pulumi mocks that answer like AWS would (ids, ARNs, addresses) and record every custom resource."""

    def __init__(self, region: str) -> None:
        self.region = region
        self.resources: list[dict[str, Any]] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        resource_id, computed = self._computed(args.typ, args.name, dict(args.inputs))
        state = {**args.inputs, **computed}
        if args.custom:
            self.resources.append({"type": args.typ, "name": args.name, "id": resource_id,
                                   "properties": _plain(state)})
        return resource_id, state

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:  # type: ignore[override]
        if args.token == "aws:ssm/getParameter:getParameter":
            name = args.args.get("name", "")
            return {"id": name, "name": name, "arn": f"arn:aws:ssm:{self.region}::parameter{name}",
                    "type": "String", "value": MOCK_AMI, "insecureValue": MOCK_AMI, "version": 1,
                    "withDecryption": False, "region": self.region}
        return {}

    def _computed(self, typ: str, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        h = _digest(typ, name)
        region, account = self.region, MOCK_ACCOUNT
        physical = inputs.get("name") or f"{name}-{h[:7]}"
        if typ == "aws:ec2/instance:Instance":
            rid = f"i-{h[:17]}"
            return rid, {"arn": f"arn:aws:ec2:{region}:{account}:instance/{rid}",
                         "privateIp": f"10.20.0.{int(h[:2], 16) % 200 + 10}", "publicIp": ""}
        if typ == "aws:ec2/eip:Eip":
            rid = f"eipalloc-{h[:17]}"
            # 203.0.113.0/24 is TEST-NET-3: a realistic address that can never be a real host.
            return rid, {"allocationId": rid, "publicIp": f"203.0.113.{int(h[:2], 16) % 200 + 10}",
                         "associationId": f"eipassoc-{h[:17]}" if inputs.get("instance") else ""}
        if typ == "aws:kms/key:Key":
            rid = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"
            return rid, {"arn": f"arn:aws:kms:{region}:{account}:key/{rid}", "keyId": rid,
                         "keyManager": "CUSTOMER"}
        if typ == "aws:secretsmanager/secret:Secret":
            arn = f"arn:aws:secretsmanager:{region}:{account}:secret:{physical}-{h[:6]}"
            return arn, {"arn": arn}
        if typ == "aws:iam/role:Role":
            return physical, {"arn": f"arn:aws:iam::{account}:role/{physical}", "name": physical,
                              "uniqueId": f"AROA{h[:17].upper()}"}
        if typ == "aws:iam/instanceProfile:InstanceProfile":
            return physical, {"arn": f"arn:aws:iam::{account}:instance-profile/{physical}", "name": physical}
        if typ == "aws:cloudwatch/logGroup:LogGroup":
            return physical, {"arn": f"arn:aws:logs:{region}:{account}:log-group:{physical}"}
        if typ == "aws:ec2/securityGroup:SecurityGroup":
            rid = f"sg-{h[:17]}"
            return rid, {"arn": f"arn:aws:ec2:{region}:{account}:security-group/{rid}"}
        if typ == "aws:s3/bucket:Bucket":
            bucket = inputs.get("bucket") or f"{inputs.get('bucketPrefix') or name}{h[:12]}"
            return bucket, {"bucket": bucket, "arn": f"arn:aws:s3:::{bucket}",
                            "bucketRegionalDomainName": f"{bucket}.s3.{region}.amazonaws.com"}
        if typ == "aws:ec2/vpc:Vpc":
            return f"vpc-{h[:17]}", {}
        if typ == "aws:ec2/subnet:Subnet":
            return f"subnet-{h[:17]}", {}
        prefix = typ.rsplit(":", 1)[-1].lower()
        return f"{prefix}-{h[:12]}", {}


def _plain(value: Any) -> Any:
    """JSON-able copy of mock state (Pulumi may hand back tuples or non-JSON scalars)."""
    return json.loads(json.dumps(value, default=_asset_or_str))


def _asset_or_str(value: Any) -> Any:
    """An asset as what it is (kind and file name), not its repr: the capture stays the same run after run and
    machine to machine; its content is pinned where it matters (the user data names its sha256)."""
    if isinstance(value, pulumi.FileAsset):
        return {"asset": "file", "name": Path(str(value.path)).name}
    if isinstance(value, pulumi.StringAsset):
        return {"asset": "string", "sha256": hashlib.sha256(str(value.text).encode()).hexdigest()}
    return str(value)


@dataclass(frozen=True)
class StackConfigFile:
    project: str
    stack: str
    values: dict[str, str]
    secret_keys: list[str]


def read_stack_config(config_path: Path, project_file: Path | None = None,
                      overrides: Mapping[str, str] | None = None) -> StackConfigFile:
    """Read Pulumi.<stack>.yaml (and the project name from Pulumi.yaml) into Pulumi's flat config map."""
    if not config_path.is_file():
        raise InfraProgramError(f"{config_path}: stack config file not found (expected Pulumi.<stack>.yaml)")
    stem = config_path.name
    if not (stem.startswith("Pulumi.") and stem.endswith((".yaml", ".yml"))):
        raise InfraProgramError(f"{config_path}: a stack config file is named Pulumi.<stack>.yaml")
    stack = stem.removeprefix("Pulumi.").rsplit(".", 1)[0]
    project_file = project_file or config_path.parent / "Pulumi.yaml"
    project = _project_name(project_file)
    raw = _read_yaml(config_path, "Pulumi stack config") or {}  # a stack without config is an empty file
    if not isinstance(raw, dict) or not isinstance(raw.get("config") or {}, dict):
        raise InfraProgramError(f"{config_path}: expected a top-level `config:` mapping")
    if any(not isinstance(key, str) for key in raw.get("config") or {}):
        raise InfraProgramError(f"{config_path}: every key under `config:` must be text, e.g. keyguard:adminCidr")
    values: dict[str, str] = {}
    secret_keys: list[str] = []
    for key, value in (raw.get("config") or {}).items():
        full_key = key if ":" in key else f"{project}:{key}"
        if isinstance(value, dict) and set(value) == {"secure"}:
            # Encrypted values cannot be read without the stack's secrets provider; a placeholder keeps
            # the program running and the value never enters the captured resources.
            values[full_key] = "[secure]"
            secret_keys.append(full_key)
        else:
            values[full_key] = value if isinstance(value, str) else json.dumps(value)
    for key, value in (overrides or {}).items():
        values[key if ":" in key else f"{project}:{key}"] = value
    return StackConfigFile(project, stack, values, secret_keys)


def _project_name(project_file: Path) -> str:
    if not project_file.is_file():
        raise InfraProgramError(f"{project_file}: Pulumi project file not found beside the stack config")
    project = _read_yaml(project_file, "Pulumi project")
    name = project.get("name") if isinstance(project, dict) else None
    if not isinstance(name, str) or not name:
        raise InfraProgramError(f"{project_file}: missing the project `name:`")
    return name


def _read_yaml(path: Path, what: str) -> Any:
    """The file's YAML (None when empty) by the CLI's one loader: no duplicate keys, no .nan, no quoted lines."""
    try:
        return parse_text(read_text(path, what), str(path), as_json=False)[0]
    except ConfigError as exc:
        raise InfraProgramError(str(exc)) from None


def capture_program(program_dir: Path, config: StackConfigFile) -> CapturedStack:
    """Run `program_dir/__main__.py` under mocks with `config`; return its resources and stack outputs."""
    main = program_dir / "__main__.py"
    if not main.is_file():
        raise InfraProgramError(f"{program_dir}: no __main__.py (the Pulumi program directory, `main:` in Pulumi.yaml)")
    region = config.values.get("aws:region", "us-east-1")
    mocks = RecordingMocks(region)
    modules_before = set(sys.modules)
    pulumi_settings.reset_options(project=config.project, stack=config.stack, preview=False)
    set_all_config(dict(config.values), config.secret_keys)
    pulumi_mocks.set_mocks(mocks, project=config.project, stack=config.stack, preview=False)
    # set_mocks installs a root stack of its own; run_in_stack must create the one the program exports to.
    pulumi_settings.ROOT.set(None)
    pulumi_settings.SETTINGS.outputs.clear()
    roots: list[Any] = []

    def run_program() -> None:
        # The stack is installed in the runtime task's context, invisible from here once the run ends.
        roots.append(pulumi_settings.get_root_resource())
        runpy.run_path(str(program_dir), run_name="__main__")

    try:
        _sync_await(run_in_stack(run_program))
        exported = getattr(roots[0], "outputs", {}) if roots else {}
        outputs = {name: _sync_await(pulumi.Output.from_input(value).future()) for name, value in exported.items()}
    except InfraProgramError:
        raise
    except Exception as exc:  # noqa: BLE001 - any program failure is reported as a config/program error
        raise InfraProgramError(f"{program_dir}: the Pulumi program failed: {_describe(exc)}") from None
    finally:
        _forget_program_modules(program_dir, modules_before)
        pulumi_settings.ROOT.set(None)
    resources = sorted(mocks.resources, key=lambda r: (r["type"], r["name"]))
    return CapturedStack(config.project, config.stack, resources, _plain(outputs))


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if isinstance(exc, pulumi.RunError) else f"{type(exc).__name__}: {text}"


def _forget_program_modules(program_dir: Path, before: set[str]) -> None:
    """Drop modules the program imported from its own directory so the next capture loads them afresh."""
    root = program_dir.resolve()
    for name in set(sys.modules) - before:
        origin = getattr(sys.modules[name], "__file__", None)
        if origin and Path(origin).resolve().is_relative_to(root):
            del sys.modules[name]
