"""Live drift against moto's server over HTTP: the deployed stack read back with boto3, judged by the same
Rego. Each test starts from a compliant deployment and changes one thing the way an operator or attacker
would after `pulumi up`."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from keyguard.errors import ConfigError
from keyguard.infra.drift import LiveAws, StackOutputs, collect_live_infra
from keyguard.policy import Finding, PolicyEngine

REGION = "eu-west-1"
ADMIN = "198.51.100.7/32"
FIXED_NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def moto_endpoint(moto_url: str) -> str:
    return moto_url


@pytest.fixture(scope="module")
def aws(moto_endpoint: str) -> LiveAws:
    session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)
    return LiveAws(region=REGION, endpoint_url=moto_endpoint, session=session)


@pytest.fixture(scope="module")
def base(aws: LiveAws) -> dict[str, str]:
    """Looked up once: moto builds its EC2 region (default VPC, images) on first use, which is slow."""
    ec2 = aws.client("ec2")
    subnet = ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"][0]
    return {"ami": ec2.describe_images()["Images"][0]["ImageId"], "vpc": subnet["VpcId"], "subnet": subnet["SubnetId"]}


@dataclass
class Deployment:
    outputs: StackOutputs
    allocation_id: str
    association_id: str


@pytest.fixture
def deployment(aws: LiveAws, base: dict[str, str]) -> Deployment:
    return deploy_compliant(aws, base, uuid.uuid4().hex[:8])


def deploy_compliant(aws: LiveAws, base: dict[str, str], stack: str) -> Deployment:
    """What `pulumi up` of the shipped program leaves behind, created directly with boto3. Every test deploys
    its own stack (names carry `stack`) into the one moto server; the collector reads only what the outputs name."""
    ec2, iam, kms, sm = (aws.client(s) for s in ("ec2", "iam", "kms", "secretsmanager"))
    group = ec2.create_security_group(GroupName=f"exec-sg-{stack}", Description="keyguard host", VpcId=base["vpc"])[
        "GroupId"
    ]
    ec2.revoke_security_group_egress(
        GroupId=group, IpPermissions=[{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]
    )
    ec2.authorize_security_group_egress(
        GroupId=group,
        IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
            {"IpProtocol": "udp", "FromPort": 123, "ToPort": 123, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
        ],
    )
    ec2.authorize_security_group_ingress(
        GroupId=group,
        IpPermissions=[{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": ADMIN}]}],
    )

    key = kms.create_key(Description="Keyguard vault")["KeyMetadata"]
    kms.enable_key_rotation(KeyId=key["KeyId"])
    role_name = f"exec-role-{stack}"
    role = iam.create_role(
        RoleName=role_name,
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
                ],
            }
        ),
    )["Role"]
    secret_arns = {}
    for name, purpose in (("bot-exec-1", "execution"), ("monitor-1", "monitoring")):
        arn = sm.create_secret(
            Name=f"keyguard/{stack}/{name}", KmsKeyId=key["Arn"], Tags=[{"Key": "keyguard:purpose", "Value": purpose}]
        )["ARN"]
        sm.put_resource_policy(
            SecretId=arn,
            ResourcePolicy=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"AWS": role["Arn"]},
                            "Action": "secretsmanager:GetSecretValue",
                            "Resource": arn,
                        }
                    ],
                }
            ),
        )
        secret_arns[name] = arn
    iam.put_role_policy(
        RoleName=role_name,
        PolicyName="exec-least-privilege",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": ["secretsmanager:GetSecretValue"],
                        "Resource": sorted(secret_arns.values()),
                    },
                    {
                        "Effect": "Allow",
                        "Action": "kms:Decrypt",
                        "Resource": key["Arn"],
                        "Condition": {"StringEquals": {"kms:ViaService": f"secretsmanager.{REGION}.amazonaws.com"}},
                    },
                ],
            }
        ),
    )
    iam.attach_role_policy(RoleName=role_name, PolicyArn="arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore")
    iam.create_instance_profile(InstanceProfileName=f"exec-profile-{stack}")
    iam.add_role_to_instance_profile(InstanceProfileName=f"exec-profile-{stack}", RoleName=role_name)

    instance = ec2.run_instances(
        ImageId=base["ami"],
        MinCount=1,
        MaxCount=1,
        InstanceType="t3.small",
        SubnetId=base["subnet"],
        SecurityGroupIds=[group],
        IamInstanceProfile={"Name": f"exec-profile-{stack}"},
        MetadataOptions={"HttpTokens": "required"},
        # moto reports /dev/sda1 as the root device name, so the root mapping uses it.
        BlockDeviceMappings=[{"DeviceName": "/dev/sda1", "Ebs": {"Encrypted": True, "VolumeSize": 20}}],
        UserData=(
            "#!/bin/bash\nset -euo pipefail\nsystemctl enable --now keyguard-worker keyguard-service\n"
        ),
    )["Instances"][0]["InstanceId"]
    address = ec2.allocate_address(Domain="vpc")
    association = ec2.associate_address(InstanceId=instance, AllocationId=address["AllocationId"])
    outputs = StackOutputs.from_mapping(
        {
            "instanceId": instance,
            "staticIp": address["PublicIp"],
            "roleArn": role["Arn"],
            "secretArns": secret_arns,
            "kmsKeyArn": key["Arn"],
            "securityGroupId": group,
        },
        stack=f"keyguard/{stack}",
    )
    return Deployment(outputs, address["AllocationId"], association["AssociationId"])


def live_findings(
    engine: PolicyEngine, aws: LiveAws, outputs: StackOutputs, key_bindings: list[dict[str, Any]] | None = None
) -> list[Finding]:
    doc = collect_live_infra(outputs, aws, key_bindings=key_bindings, clock=lambda: FIXED_NOW)
    return engine.evaluate(doc, source="aws-live")


def ids(findings: list[Finding]) -> set[str]:
    return {f.id for f in findings}


def test_compliant_deployment_has_no_live_findings(
    infra_engine: PolicyEngine, aws: LiveAws, deployment: Deployment
) -> None:
    assert live_findings(infra_engine, aws, deployment.outputs) == []


def test_live_input_uses_pulumi_type_tokens_and_property_names(aws: LiveAws, deployment: Deployment) -> None:
    doc = collect_live_infra(deployment.outputs, aws, clock=lambda: FIXED_NOW)
    assert (doc["kind"], doc["source"], doc["now"]) == ("infra", "aws-live", "2026-11-25T12:00:00Z")
    by_type = {r["type"]: r for r in doc["resources"]}
    instance = by_type["aws:ec2/instance:Instance"]["properties"]
    assert instance["metadataOptions"]["httpTokens"] == "required"
    assert instance["rootBlockDevice"]["encrypted"] is True
    assert "keyguard-worker" in instance["userData"]
    assert by_type["aws:ec2/eip:Eip"]["properties"]["instance"] == deployment.outputs.instance_id
    assert by_type["aws:kms/key:Key"]["properties"]["enableKeyRotation"] is True


def test_security_group_opened_after_deploy_is_a_finding(
    infra_engine: PolicyEngine, aws: LiveAws, deployment: Deployment
) -> None:
    aws.client("ec2").authorize_security_group_ingress(
        GroupId=deployment.outputs.security_group_id,
        IpPermissions=[{"IpProtocol": "tcp", "FromPort": 8000, "ToPort": 9000, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}],
    )
    findings = live_findings(infra_engine, aws, deployment.outputs)
    assert ids(findings) == {"KG-INF-102"}
    assert findings[0].evidence["from_port"] == 8000


def test_ssh_widened_after_deploy_is_a_finding(
    infra_engine: PolicyEngine, aws: LiveAws, deployment: Deployment
) -> None:
    aws.client("ec2").authorize_security_group_ingress(
        GroupId=deployment.outputs.security_group_id,
        IpPermissions=[{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "10.0.0.0/8"}]}],
    )
    assert ids(live_findings(infra_engine, aws, deployment.outputs)) == {"KG-INF-103"}


def test_disassociated_elastic_ip_is_a_finding(
    infra_engine: PolicyEngine, aws: LiveAws, deployment: Deployment
) -> None:
    aws.client("ec2").disassociate_address(AssociationId=deployment.association_id)
    findings = live_findings(infra_engine, aws, deployment.outputs)
    assert ids(findings) == {"KG-INF-101"}
    assert findings[0].evidence["instance_id"] == deployment.outputs.instance_id


def test_released_elastic_ip_is_a_finding(infra_engine: PolicyEngine, aws: LiveAws, deployment: Deployment) -> None:
    ec2 = aws.client("ec2")
    ec2.disassociate_address(AssociationId=deployment.association_id)
    ec2.release_address(AllocationId=deployment.allocation_id)
    assert ids(live_findings(infra_engine, aws, deployment.outputs)) == {"KG-INF-101"}


def test_secret_moved_off_the_cmk_is_a_finding(
    infra_engine: PolicyEngine, aws: LiveAws, deployment: Deployment
) -> None:
    arn = deployment.outputs.secret_arns["bot-exec-1"]
    aws.client("secretsmanager").update_secret(SecretId=arn, KmsKeyId="alias/aws/secretsmanager")
    findings = live_findings(infra_engine, aws, deployment.outputs)
    assert [(f.id, f.resource) for f in findings] == [
        ("KG-INF-106", f"Secret/{arn.split(':secret:')[1].rsplit('-', 1)[0]}")
    ]


def test_key_rotation_disabled_after_deploy_is_a_finding(
    infra_engine: PolicyEngine, aws: LiveAws, deployment: Deployment
) -> None:
    aws.client("kms").disable_key_rotation(KeyId=deployment.outputs.kms_key_arn)
    assert ids(live_findings(infra_engine, aws, deployment.outputs)) == {"KG-INF-107"}


def test_wildcard_policy_attached_to_the_host_role_is_a_finding(
    infra_engine: PolicyEngine, aws: LiveAws, deployment: Deployment
) -> None:
    iam = aws.client("iam")
    arn = iam.create_policy(
        PolicyName=f"debug-{uuid.uuid4().hex[:6]}",
        PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        ),
    )["Policy"]["Arn"]
    iam.attach_role_policy(RoleName=deployment.outputs.role_arn.rsplit("/", 1)[-1], PolicyArn=arn)
    findings = live_findings(infra_engine, aws, deployment.outputs)
    assert ("KG-INF-108", f"Policy/{arn.rsplit('/', 1)[-1]}") in {(f.id, f.resource) for f in findings}


def test_deleted_secret_cannot_be_read_and_is_a_finding(
    infra_engine: PolicyEngine, aws: LiveAws, deployment: Deployment
) -> None:
    aws.client("secretsmanager").delete_secret(
        SecretId=deployment.outputs.secret_arns["monitor-1"], ForceDeleteWithoutRecovery=True
    )
    findings = live_findings(infra_engine, aws, deployment.outputs)
    assert [(f.id, f.resource) for f in findings] == [("KG-INF-112", "Secret/monitor-1")]


def test_terminated_instance_is_a_finding(infra_engine: PolicyEngine, aws: LiveAws, deployment: Deployment) -> None:
    outputs = StackOutputs.from_mapping({**_as_mapping(deployment.outputs), "instanceId": "i-0000000000000dead"})
    assert "KG-INF-112" in ids(live_findings(infra_engine, aws, outputs))


def test_keys_bound_to_the_live_eip_pass(infra_engine: PolicyEngine, aws: LiveAws, deployment: Deployment) -> None:
    bindings = [{"key": "bot-exec-1", "ips": [deployment.outputs.static_ip]}]
    assert live_findings(infra_engine, aws, deployment.outputs, bindings) == []


def test_every_key_still_bound_to_the_old_ip_after_migration_is_a_finding(
    infra_engine: PolicyEngine, aws: LiveAws, deployment: Deployment
) -> None:
    ec2 = aws.client("ec2")
    old_ip = deployment.outputs.static_ip
    # Migration: the host gets a new Elastic IP; two keys were never re-bound, one was.
    ec2.disassociate_address(AssociationId=deployment.association_id)
    new = ec2.allocate_address(Domain="vpc")
    ec2.associate_address(InstanceId=deployment.outputs.instance_id, AllocationId=new["AllocationId"])
    bindings = [
        {"key": "bot-exec-1", "ips": [old_ip]},
        {"key": "bot-hedge-1", "ips": [old_ip]},
        {"key": "monitor-1", "ips": [new["PublicIp"]]},
    ]
    findings = live_findings(infra_engine, aws, deployment.outputs, bindings)
    assert {(f.id, f.resource) for f in findings} == {
        ("KG-INF-111", "key/bot-exec-1"),
        ("KG-INF-111", "key/bot-hedge-1"),
    }
    assert all(old_ip in f.message for f in findings)


def test_outputs_missing_required_keys_are_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="missing output\\(s\\) instanceId, secretArns"):
        StackOutputs.from_mapping({"staticIp": "203.0.113.10", "roleArn": "arn:aws:iam::1:role/r"})


def _as_mapping(outputs: StackOutputs) -> dict[str, Any]:
    return {
        "instanceId": outputs.instance_id,
        "staticIp": outputs.static_ip,
        "roleArn": outputs.role_arn,
        "secretArns": outputs.secret_arns,
        "kmsKeyArn": outputs.kms_key_arn,
        "securityGroupId": outputs.security_group_id,
    }


def test_drift_command_reports_live_findings_and_exits_nonzero(
    infra_engine: PolicyEngine, aws: LiveAws, deployment: Deployment, moto_endpoint: str, tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from typer.testing import CliRunner

    from keyguard.cli import app

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    aws.client("ec2").disassociate_address(AssociationId=deployment.association_id)
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps(_as_mapping(deployment.outputs)))
    result = CliRunner().invoke(app, [
        "infra", "drift", "--outputs", str(outputs), "--region", REGION, "--endpoint-url", moto_endpoint,
        "--opa-url", infra_engine.url, "--json",
    ])
    assert result.exit_code == 1, result.output
    assert {f["id"] for f in json.loads(result.output)} == {"KG-INF-101"}
