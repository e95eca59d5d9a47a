"""The Pulumi program's resources and properties, asserted under Pulumi mocks (nothing reaches AWS)."""

from __future__ import annotations

import json
from datetime import date, timedelta
from typing import Any

import pytest
import yaml

from keyguard.infra.capture import CapturedStack, InfraProgramError

from .conftest import DEV_CONFIG, capture_with

DEV = yaml.safe_load(DEV_CONFIG.read_text())["config"]


def one(stack: CapturedStack, type_token: str) -> dict[str, Any]:
    found = stack.of_type(type_token)
    assert len(found) == 1, f"expected one {type_token}, got {[r['name'] for r in found]}"
    return found[0]


def test_host_role_policy_grants_exact_actions_on_exact_arns(shipped: CapturedStack) -> None:
    secret_arns = sorted(s["properties"]["arn"] for s in shipped.of_type("aws:secretsmanager/secret:Secret"))
    key_arn = one(shipped, "aws:kms/key:Key")["properties"]["arn"]
    log_arn = one(shipped, "aws:cloudwatch/logGroup:LogGroup")["properties"]["arn"]
    policy = json.loads(one(shipped, "aws:iam/rolePolicy:RolePolicy")["properties"]["policy"])

    assert policy["Statement"] == [
        {"Sid": "ReadVaultSecrets", "Effect": "Allow",
         "Action": ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"], "Resource": secret_arns},
        {"Sid": "DecryptOnlyThroughSecretsManager", "Effect": "Allow", "Action": "kms:Decrypt", "Resource": key_arn,
         "Condition": {"StringEquals": {"kms:ViaService": "secretsmanager.eu-west-1.amazonaws.com"}}},
        {"Sid": "WriteHostLogs", "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
         "Resource": f"{log_arn}:log-stream:*"},
    ]
    assert len(secret_arns) == len(DEV["keyguard:keys"])


def test_host_role_is_assumable_by_ec2_only_and_gets_ssm_access(shipped: CapturedStack) -> None:
    role = one(shipped, "aws:iam/role:Role")
    trust = json.loads(role["properties"]["assumeRolePolicy"])
    assert [s["Principal"] for s in trust["Statement"]] == [{"Service": "ec2.amazonaws.com"}]
    attachment = one(shipped, "aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    assert attachment["properties"]["policyArn"] == "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
    profile = one(shipped, "aws:iam/instanceProfile:InstanceProfile")
    assert profile["properties"]["role"] == role["properties"]["name"]


def test_only_ingress_is_ssh_from_the_admin_address(shipped: CapturedStack) -> None:
    group = one(shipped, "aws:ec2/securityGroup:SecurityGroup")
    assert not group["properties"].get("ingress")
    ingress = one(shipped, "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")["properties"]
    assert (ingress["ipProtocol"], ingress["fromPort"], ingress["toPort"], ingress["cidrIpv4"]) == (
        "tcp", 22, 22, DEV["keyguard:adminCidr"])
    assert ingress["securityGroupId"] == group["id"]


def test_egress_is_https_and_ntp_only(shipped: CapturedStack) -> None:
    egress = {(e["properties"]["ipProtocol"], e["properties"]["fromPort"], e["properties"]["toPort"])
              for e in shipped.of_type("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule")}
    assert egress == {("tcp", 443, 443), ("udp", 123, 123)}


def test_without_admin_cidr_the_host_has_no_ingress_at_all() -> None:
    stack = capture_with(**{"keyguard:adminCidr": ""})
    assert stack.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule") == []
    assert stack.of_type("aws:ec2/securityGroupRule:SecurityGroupRule") == []


def test_instance_requires_imdsv2_and_encrypts_its_root_volume(shipped: CapturedStack) -> None:
    instance = one(shipped, "aws:ec2/instance:Instance")["properties"]
    assert instance["metadataOptions"] == {"httpEndpoint": "enabled", "httpTokens": "required",
                                           "httpPutResponseHopLimit": 1}
    assert instance["rootBlockDevice"]["encrypted"] is True
    assert instance["associatePublicIpAddress"] is False


def test_elastic_ip_is_associated_with_the_instance_and_is_the_static_ip_output(shipped: CapturedStack) -> None:
    instance = one(shipped, "aws:ec2/instance:Instance")
    eip = one(shipped, "aws:ec2/eip:Eip")
    assert eip["properties"]["instance"] == instance["id"]
    assert eip["properties"]["domain"] == "vpc"
    assert shipped.outputs["staticIp"] == eip["properties"]["publicIp"]
    assert shipped.outputs["instanceId"] == instance["id"]


def test_vault_key_rotates_and_encrypts_every_secret(shipped: CapturedStack) -> None:
    key = one(shipped, "aws:kms/key:Key")
    assert key["properties"]["enableKeyRotation"] is True
    secrets = shipped.of_type("aws:secretsmanager/secret:Secret")
    assert {s["properties"]["kmsKeyId"] for s in secrets} == {key["properties"]["arn"]}
    assert {s["properties"]["recoveryWindowInDays"] for s in secrets} == {30}


def test_each_declared_key_has_a_secret_tagged_with_purpose_and_rotation_due(shipped: CapturedStack) -> None:
    tags = {s["properties"]["name"]: s["properties"]["tags"]
            for s in shipped.of_type("aws:secretsmanager/secret:Secret")}
    for declared in DEV["keyguard:keys"]:
        due = date.fromisoformat(declared["issuedOn"]) + timedelta(days=declared["rotationDays"])
        assert tags[f"keyguard/dev/{declared['name']}"] == {
            "keyguard:exchange": declared["exchange"], "keyguard:purpose": declared["purpose"],
            "keyguard:rotation-due": due.isoformat()}
    assert set(shipped.outputs["secretArns"]) == {k["name"] for k in DEV["keyguard:keys"]}


def test_secret_policies_let_only_the_host_role_read(shipped: CapturedStack) -> None:
    role_arn = one(shipped, "aws:iam/role:Role")["properties"]["arn"]
    policies = shipped.of_type("aws:secretsmanager/secretPolicy:SecretPolicy")
    assert {p["properties"]["secretArn"] for p in policies} == set(shipped.outputs["secretArns"].values())
    for p in policies:
        allow, deny = json.loads(p["properties"]["policy"])["Statement"]
        assert allow["Principal"] == {"AWS": role_arn} and allow["Effect"] == "Allow"
        assert deny["Effect"] == "Deny" and deny["Principal"] == "*"
        assert deny["Condition"] == {"StringNotEquals": {"aws:PrincipalArn": role_arn}}
        assert allow["Resource"] == deny["Resource"] == p["properties"]["secretArn"]
    assert shipped.outputs["roleArn"] == role_arn


def test_log_group_keeps_logs_for_the_configured_retention(shipped: CapturedStack) -> None:
    group = one(shipped, "aws:cloudwatch/logGroup:LogGroup")["properties"]
    assert (group["name"], group["retentionInDays"]) == ("/keyguard/dev", DEV["keyguard:logRetentionDays"])


def test_user_data_starts_service_and_worker_and_holds_no_secret(shipped: CapturedStack) -> None:
    user_data = one(shipped, "aws:ec2/instance:Instance")["properties"]["userData"]
    assert "systemctl enable --now keyguard-service keyguard-worker" in user_data
    assert "KEYGUARD_SECRETS_BACKEND=aws_secretsmanager" in user_data
    for arn in shipped.outputs["secretArns"].values():
        assert arn not in user_data


def test_given_subnet_and_vpc_are_used_instead_of_a_new_network() -> None:
    stack = capture_with(**{"keyguard:subnetId": "subnet-0abc", "keyguard:vpcId": "vpc-0abc"})
    assert stack.of_type("aws:ec2/vpc:Vpc") == []
    assert one(stack, "aws:ec2/instance:Instance")["properties"]["subnetId"] == "subnet-0abc"
    assert one(stack, "aws:ec2/securityGroup:SecurityGroup")["properties"]["vpcId"] == "vpc-0abc"


def test_capturing_twice_in_one_process_gives_the_same_resources(shipped: CapturedStack) -> None:
    again = capture_with()
    assert again.resources == shipped.resources
    assert again.outputs == shipped.outputs


@pytest.mark.parametrize(("override", "expected"), [
    ({"keyguard:adminCidr": "10.0.0.0/8"}, "keyguard:adminCidr is '10.0.0.0/8'; SSH is allowed from one IPv4"),
    ({"keyguard:adminCidr": "2001:db8::1/128"}, "keyguard:adminCidr is '2001:db8::1/128'"),
    ({"keyguard:adminCidr": "not-an-ip"}, "keyguard:adminCidr is 'not-an-ip', not a network"),
    ({"keyguard:keys": "[]"}, "keyguard:keys must be a non-empty list"),
    ({"keyguard:keys": '[{"name": "a", "exchange": "binance", "purpose": "execution"}]'},
     "keyguard:keys[0] is missing issuedOn"),
    ({"keyguard:keys": '[{"name": "a", "exchange": "b", "purpose": "p", "issuedOn": "yesterday"}]'},
     "keyguard:keys[0].issuedOn is 'yesterday'"),
    ({"keyguard:keys": '[{"name": "a", "exchange": "b", "purpose": "p", "issuedOn": "2026-01-01", '
                       '"rotationDays": 900}]'}, "keyguard:keys[0].rotationDays is 900"),
    ({"keyguard:keys": '[{"name": "a", "exchange": "b", "purpose": "p", "issuedOn": "2026-01-01"},'
                       '{"name": "a", "exchange": "b", "purpose": "p", "issuedOn": "2026-01-01"}]'},
     "keyguard:keys declares a more than once"),
    ({"keyguard:subnetId": "subnet-1"}, "keyguard:subnetId and keyguard:vpcId must be set together"),
    ({"keyguard:logRetentionDays": "45"}, "keyguard:logRetentionDays is 45"),
    ({"keyguard:secretRecoveryWindowDays": "3"}, "keyguard:secretRecoveryWindowDays is 3"),
    ({"aws:region": ""}, "config aws:region is not set"),
])
def test_bad_config_stops_the_program_with_a_message_naming_the_key(override: dict[str, str],
                                                                     expected: str) -> None:
    with pytest.raises(InfraProgramError) as caught:
        capture_with(**override)
    assert expected in str(caught.value)


def test_a_failed_capture_leaves_the_runtime_usable_for_the_next(shipped: CapturedStack) -> None:
    with pytest.raises(InfraProgramError):
        capture_with(**{"keyguard:adminCidr": "0.0.0.0/0"})
    assert capture_with().resources == shipped.resources
