"""Live AWS drift: read the deployed resources named by the stack outputs and map them into the `infra` input
shape (Pulumi type tokens, camelCase properties), so the same Rego judges declared and live state.

The mapping functions are pure (boto3 response in, resource dict out); `collect_live_infra` is the edge that
calls AWS. A resource that cannot be read is emitted with an `error` so the policy reports it: unknown is
never safe.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from keyguard.errors import ConfigError
from keyguard.loading import load_mapping
from keyguard.redact import redact_text

AWS_MANAGED_POLICY_PREFIX = "arn:aws:iam::aws:policy/"
AWS_MANAGED_KMS_ALIAS_PREFIX = "alias/aws/"
BOTO_CONFIG = BotoConfig(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=15)
NOT_FOUND_CODES = frozenset({"InvalidAddress.NotFound", "InvalidAllocationID.NotFound"})


@dataclass(frozen=True)
class StackOutputs:
    """The stack outputs the collector starts from (`pulumi stack output --json`)."""

    instance_id: str
    static_ip: str
    role_arn: str
    secret_arns: dict[str, str]
    kms_key_arn: str | None = None
    security_group_id: str | None = None
    stack: str | None = None

    @classmethod
    def from_mapping(cls, outputs: Mapping[str, Any], source: str = "stack outputs",
                     stack: str | None = None) -> StackOutputs:
        missing = [k for k in ("instanceId", "staticIp", "roleArn", "secretArns") if not outputs.get(k)]
        if missing:
            raise ConfigError(f"{source}: missing output(s) {', '.join(missing)}; expected the outputs of the "
                              "Keyguard Pulumi program (`pulumi stack output --json`)")
        wrong = [k for k in ("instanceId", "staticIp", "roleArn", "kmsKeyArn", "securityGroupId")
                 if outputs.get(k) is not None and not isinstance(outputs[k], str)]
        if wrong:
            raise ConfigError(f"{source}: output(s) {', '.join(wrong)} must be text (an id, address or ARN)")
        secret_arns = outputs["secretArns"]
        if not isinstance(secret_arns, dict) or not all(isinstance(v, str) for v in secret_arns.values()):
            raise ConfigError(f"{source}: output secretArns must map key name -> secret ARN")
        return cls(
            instance_id=str(outputs["instanceId"]),
            static_ip=str(outputs["staticIp"]),
            role_arn=str(outputs["roleArn"]),
            secret_arns=dict(secret_arns),
            kms_key_arn=outputs.get("kmsKeyArn"),
            security_group_id=outputs.get("securityGroupId"),
            stack=stack,
        )

    @classmethod
    def from_file(cls, path: Path) -> StackOutputs:
        return cls.from_mapping(load_mapping(path, "stack outputs").data, source=str(path))


@dataclass
class LiveAws:
    """boto3 clients for one region; endpoint_url points them at another endpoint (moto's server in tests)."""

    region: str
    endpoint_url: str | None = None
    session: boto3.Session | None = None
    _clients: dict[str, Any] = field(default_factory=dict, init=False, repr=False)

    def client(self, service: str) -> Any:
        if service not in self._clients:
            session = self.session or boto3.Session(region_name=self.region)
            self._clients[service] = session.client(service, region_name=self.region,
                                                    endpoint_url=self.endpoint_url, config=BOTO_CONFIG)
        return self._clients[service]


def _error_text(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        return redact_text(f"{err.get('Code', 'ClientError')}: {err.get('Message', '')}".strip())
    return redact_text(f"{type(exc).__name__}: {exc}")


def _unreadable(type_token: str, name: str, resource_id: str | None, exc: Exception) -> dict[str, Any]:
    return {"type": type_token, "name": name, "id": resource_id, "properties": {}, "error": _error_text(exc)}


def _tags(items: Iterable[Mapping[str, str]] | None) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in items or []}


# --- pure mapping: AWS API responses -> infra resources ----------------------------------------------------

def map_instance(instance: Mapping[str, Any], root_volume: Mapping[str, Any] | None,
                 user_data_b64: str | None) -> dict[str, Any]:
    metadata = instance.get("MetadataOptions") or {}
    props: dict[str, Any] = {
        "ami": instance.get("ImageId"),
        "instanceType": instance.get("InstanceType"),
        "subnetId": instance.get("SubnetId"),
        "vpcSecurityGroupIds": [g["GroupId"] for g in instance.get("SecurityGroups", [])],
        "iamInstanceProfile": (instance.get("IamInstanceProfile") or {}).get("Arn", "").rsplit("/", 1)[-1] or None,
        "metadataOptions": {
            "httpTokens": metadata.get("HttpTokens"),
            "httpEndpoint": metadata.get("HttpEndpoint"),
            "httpPutResponseHopLimit": metadata.get("HttpPutResponseHopLimit"),
        },
        # No root volume found means its encryption is unknown, which the volume rule reports.
        "rootBlockDevice": {"volumeId": root_volume["VolumeId"], "encrypted": root_volume.get("Encrypted"),
                            "kmsKeyId": root_volume.get("KmsKeyId")} if root_volume else {},
        "publicIp": instance.get("PublicIpAddress"),
        "privateIp": instance.get("PrivateIpAddress"),
        "tags": _tags(instance.get("Tags")),
    }
    if user_data_b64:
        try:
            props["userData"] = base64.b64decode(user_data_b64).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            props["userDataBase64"] = user_data_b64
    name = props["tags"].get("Name") or instance["InstanceId"]
    return {"type": "aws:ec2/instance:Instance", "name": name, "id": instance["InstanceId"], "properties": props}


def map_address(address: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "type": "aws:ec2/eip:Eip",
        "name": address["PublicIp"],
        "id": address.get("AllocationId"),
        "properties": {
            "publicIp": address["PublicIp"],
            "allocationId": address.get("AllocationId"),
            "associationId": address.get("AssociationId"),
            "instance": address.get("InstanceId"),
            "domain": address.get("Domain"),
            "tags": _tags(address.get("Tags")),
        },
    }


def _permission(p: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "protocol": p.get("IpProtocol"),
        "fromPort": p.get("FromPort"),
        "toPort": p.get("ToPort"),
        "cidrBlocks": [r["CidrIp"] for r in p.get("IpRanges", [])],
        "ipv6CidrBlocks": [r["CidrIpv6"] for r in p.get("Ipv6Ranges", [])],
        "securityGroups": [g["GroupId"] for g in p.get("UserIdGroupPairs", []) if g.get("GroupId")],
        "prefixListIds": [x["PrefixListId"] for x in p.get("PrefixListIds", [])],
    }


def map_security_group(group: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "type": "aws:ec2/securityGroup:SecurityGroup",
        "name": group.get("GroupName") or group["GroupId"],
        "id": group["GroupId"],
        "properties": {
            "name": group.get("GroupName"),
            "description": group.get("Description"),
            "vpcId": group.get("VpcId"),
            "ingress": [_permission(p) for p in group.get("IpPermissions", [])],
            "egress": [_permission(p) for p in group.get("IpPermissionsEgress", [])],
            "tags": _tags(group.get("Tags")),
        },
    }


def map_secret(described: Mapping[str, Any], resource_policy: str | None,
               resolved_key_arn: str | None) -> list[dict[str, Any]]:
    arn = described["ARN"]
    secret = {
        "type": "aws:secretsmanager/secret:Secret",
        "name": described.get("Name") or arn,
        "id": arn,
        "properties": {
            "arn": arn,
            "name": described.get("Name"),
            # An absent KmsKeyId is the AWS-managed aws/secretsmanager key; a resolved id is shown as its ARN.
            "kmsKeyId": resolved_key_arn or described.get("KmsKeyId"),
            "tags": _tags(described.get("Tags")),
        },
    }
    if described.get("DeletedDate"):
        secret["error"] = f"scheduled for deletion on {described['DeletedDate']}"
    resources = [secret]
    if resource_policy:
        resources.append({"type": "aws:secretsmanager/secretPolicy:SecretPolicy", "name": f"{secret['name']}-policy",
                          "id": arn, "properties": {"secretArn": arn, "policy": resource_policy}})
    return resources


def map_key(metadata: Mapping[str, Any], rotation_enabled: bool | None) -> dict[str, Any]:
    return {
        "type": "aws:kms/key:Key",
        "name": metadata["KeyId"],
        "id": metadata["Arn"],
        "properties": {
            "arn": metadata["Arn"],
            "keyId": metadata["KeyId"],
            "keyManager": metadata.get("KeyManager"),
            "keyState": metadata.get("KeyState"),
            "enableKeyRotation": rotation_enabled,
        },
    }


# --- the edge: reading AWS ------------------------------------------------------------------------------

def collect_live_infra(
    outputs: StackOutputs,
    aws: LiveAws,
    key_bindings: list[dict[str, Any]] | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> dict[str, Any]:
    """Read the stack's live resources and return an `infra` policy input with source `aws-live`."""
    resources: list[dict[str, Any]] = []
    instance = _read_instance(aws, outputs.instance_id, resources)
    group_ids = set(instance["properties"]["vpcSecurityGroupIds"]) if instance else set()
    if outputs.security_group_id:
        group_ids.add(outputs.security_group_id)
    _read_addresses(aws, outputs, resources)
    _read_security_groups(aws, sorted(group_ids), resources)
    _read_role(aws, outputs.role_arn, resources)
    key_refs = _read_secrets(aws, outputs.secret_arns, resources)
    if outputs.kms_key_arn:
        key_refs.add(outputs.kms_key_arn)
    _read_keys(aws, key_refs, resources)
    doc: dict[str, Any] = {
        "kind": "infra",
        "source": "aws-live",
        "now": clock().strftime("%Y-%m-%dT%H:%M:%SZ"),
        "resources": resources,
    }
    if outputs.stack:
        doc["stack"] = outputs.stack
    if key_bindings is not None:
        doc["key_bindings"] = key_bindings
    return doc


def _read_instance(aws: LiveAws, instance_id: str, out: list[dict[str, Any]]) -> dict[str, Any] | None:
    ec2 = aws.client("ec2")
    try:
        reservations = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
        instance = reservations[0]["Instances"][0]
        root = next((m for m in instance.get("BlockDeviceMappings", [])
                     if m.get("DeviceName") == instance.get("RootDeviceName")), None)
        volume = None
        if root and root.get("Ebs", {}).get("VolumeId"):
            volume = ec2.describe_volumes(VolumeIds=[root["Ebs"]["VolumeId"]])["Volumes"][0]
        user_data = ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")
        mapped = map_instance(instance, volume, (user_data.get("UserData") or {}).get("Value"))
    except (ClientError, BotoCoreError, IndexError, KeyError) as exc:
        out.append(_unreadable("aws:ec2/instance:Instance", instance_id, instance_id, exc))
        return None
    out.append(mapped)
    return mapped


def _read_addresses(aws: LiveAws, outputs: StackOutputs, out: list[dict[str, Any]]) -> None:
    """The static IP from the outputs, plus any address now associated with the host (a migration)."""
    ec2 = aws.client("ec2")
    seen: set[str] = set()
    try:
        for address in ec2.describe_addresses(PublicIps=[outputs.static_ip])["Addresses"]:
            seen.add(address["PublicIp"])
            out.append(map_address(address))
    except ClientError as exc:
        # A released address is a fact (the host has no EIP), not an unknown; anything else is unknown.
        if exc.response.get("Error", {}).get("Code") not in NOT_FOUND_CODES:
            out.append(_unreadable("aws:ec2/eip:Eip", outputs.static_ip, None, exc))
    except BotoCoreError as exc:
        out.append(_unreadable("aws:ec2/eip:Eip", outputs.static_ip, None, exc))
    try:
        current = ec2.describe_addresses(Filters=[{"Name": "instance-id", "Values": [outputs.instance_id]}])
    except (ClientError, BotoCoreError) as exc:
        out.append(_unreadable("aws:ec2/eip:Eip", f"{outputs.instance_id}-addresses", None, exc))
        return
    for address in current["Addresses"]:
        if address["PublicIp"] not in seen:
            out.append(map_address(address))


def _read_security_groups(aws: LiveAws, group_ids: list[str], out: list[dict[str, Any]]) -> None:
    ec2 = aws.client("ec2")
    for group_id in group_ids:
        try:
            group = ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]
        except (ClientError, BotoCoreError, IndexError) as exc:
            out.append(_unreadable("aws:ec2/securityGroup:SecurityGroup", group_id, group_id, exc))
            continue
        out.append(map_security_group(group))


def _read_role(aws: LiveAws, role_arn: str, out: list[dict[str, Any]]) -> None:
    iam = aws.client("iam")
    role_name = role_arn.rsplit("/", 1)[-1]
    try:
        role = iam.get_role(RoleName=role_name)["Role"]
        inline_names = [n for page in iam.get_paginator("list_role_policies").paginate(RoleName=role_name)
                        for n in page["PolicyNames"]]
        inline = [iam.get_role_policy(RoleName=role_name, PolicyName=n) for n in inline_names]
        attached = [p for page in iam.get_paginator("list_attached_role_policies").paginate(RoleName=role_name)
                    for p in page["AttachedPolicies"]]
    except (ClientError, BotoCoreError) as exc:
        out.append(_unreadable("aws:iam/role:Role", role_name, role_name, exc))
        return
    out.append({"type": "aws:iam/role:Role", "name": role_name, "id": role_name,
                "properties": {"arn": role["Arn"], "name": role_name,
                               "assumeRolePolicy": role.get("AssumeRolePolicyDocument")}})
    for policy in inline:
        out.append({"type": "aws:iam/rolePolicy:RolePolicy", "name": f"{role_name}/{policy['PolicyName']}",
                    "id": f"{role_name}:{policy['PolicyName']}",
                    "properties": {"role": role_name, "name": policy["PolicyName"],
                                   "policy": policy["PolicyDocument"]}})
    for policy in attached:
        arn = policy["PolicyArn"]
        out.append({"type": "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
                    "name": f"{role_name}/{policy['PolicyName']}", "id": f"{role_name}/{arn}",
                    "properties": {"role": role_name, "policyArn": arn}})
        if arn.startswith(AWS_MANAGED_POLICY_PREFIX):
            continue  # AWS-managed documents are public and versioned by AWS; the program names them exactly
        try:
            version = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
            document = iam.get_policy_version(PolicyArn=arn, VersionId=version)["PolicyVersion"]["Document"]
        except (ClientError, BotoCoreError) as exc:
            out.append(_unreadable("aws:iam/policy:Policy", policy["PolicyName"], arn, exc))
            continue
        out.append({"type": "aws:iam/policy:Policy", "name": policy["PolicyName"], "id": arn,
                    "properties": {"arn": arn, "name": policy["PolicyName"], "policy": document}})


def _read_secrets(aws: LiveAws, secret_arns: Mapping[str, str], out: list[dict[str, Any]]) -> set[str]:
    """Map every declared secret; return the KMS key references they use (to read those keys too)."""
    sm, kms = aws.client("secretsmanager"), aws.client("kms")
    key_refs: set[str] = set()
    for key_name, arn in sorted(secret_arns.items()):
        try:
            described = sm.describe_secret(SecretId=arn)
            policy = sm.get_resource_policy(SecretId=arn).get("ResourcePolicy")
        except (ClientError, BotoCoreError) as exc:
            out.append(_unreadable("aws:secretsmanager/secret:Secret", key_name, arn, exc))
            continue
        resolved = None
        key_ref = described.get("KmsKeyId")
        if key_ref and not key_ref.startswith(AWS_MANAGED_KMS_ALIAS_PREFIX):
            try:
                resolved = kms.describe_key(KeyId=key_ref)["KeyMetadata"]["Arn"]
                key_refs.add(resolved)
            except (ClientError, BotoCoreError) as exc:
                out.append(_unreadable("aws:kms/key:Key", key_ref, key_ref, exc))
        out.extend(map_secret(described, policy, resolved))
    return key_refs


def _read_keys(aws: LiveAws, key_refs: set[str], out: list[dict[str, Any]]) -> None:
    kms = aws.client("kms")
    for ref in sorted(key_refs):
        try:
            metadata = kms.describe_key(KeyId=ref)["KeyMetadata"]
            rotation = None
            if metadata.get("KeyManager") == "CUSTOMER":
                rotation = kms.get_key_rotation_status(KeyId=metadata["Arn"])["KeyRotationEnabled"]
        except (ClientError, BotoCoreError) as exc:
            out.append(_unreadable("aws:kms/key:Key", ref, ref, exc))
            continue
        out.append(map_key(metadata, rotation))
