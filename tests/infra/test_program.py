"""The Pulumi program's resources and properties, asserted under Pulumi mocks (nothing reaches AWS)."""

from __future__ import annotations

import hashlib
import json
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from keyguard.infra.capture import CapturedStack, InfraProgramError

from .conftest import DEV_CONFIG, capture_with, stand_in_release, unit_settings, written_files

DEV = yaml.safe_load(DEV_CONFIG.read_text())["config"]


def one(stack: CapturedStack, type_token: str) -> dict[str, Any]:
    found = stack.of_type(type_token)
    assert len(found) == 1, f"expected one {type_token}, got {[r['name'] for r in found]}"
    return found[0]


def test_host_role_policy_grants_exact_actions_on_exact_arns(shipped: CapturedStack) -> None:
    secret_arns = sorted(s["properties"]["arn"] for s in shipped.of_type("aws:secretsmanager/secret:Secret"))
    key_arn = one(shipped, "aws:kms/key:Key")["properties"]["arn"]
    log_arn = one(shipped, "aws:cloudwatch/logGroup:LogGroup")["properties"]["arn"]
    bucket_arn = one(shipped, "aws:s3/bucket:Bucket")["properties"]["arn"]
    objects = sorted(f"{bucket_arn}/{o['properties']['key']}"
                     for o in shipped.of_type("aws:s3/bucketObjectv2:BucketObjectv2"))
    policy = json.loads(one(shipped, "aws:iam/rolePolicy:RolePolicy")["properties"]["policy"])

    assert policy["Statement"] == [
        {"Sid": "ReadVaultSecrets", "Effect": "Allow",
         "Action": ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"], "Resource": secret_arns},
        {"Sid": "DecryptOnlyThroughSecretsManager", "Effect": "Allow", "Action": "kms:Decrypt", "Resource": key_arn,
         "Condition": {"StringEquals": {"kms:ViaService": "secretsmanager.eu-west-1.amazonaws.com"}}},
        {"Sid": "WriteHostLogs", "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
         "Resource": f"{log_arn}:log-stream:*"},
        {"Sid": "ReadRelease", "Effect": "Allow", "Action": "s3:GetObject", "Resource": objects},
    ]
    # One secret per declared key, and the service's API token.
    assert len(secret_arns) == len(DEV["keyguard:keys"]) + 1
    assert len(objects) == 3


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
    association = one(shipped, "aws:ec2/eipAssociation:EipAssociation")["properties"]
    assert (association["allocationId"], association["instanceId"]) == (eip["properties"]["allocationId"],
                                                                        instance["id"])
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
    assert tags["keyguard/dev/service/api-token"] == {"keyguard:purpose": "service-api-token"}
    assert set(shipped.outputs["secretArns"]) == {k["name"] for k in DEV["keyguard:keys"]} | {"service/api-token"}


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


def test_release_bucket_is_private_encrypted_and_tls_only(shipped: CapturedStack) -> None:
    bucket = one(shipped, "aws:s3/bucket:Bucket")
    block = one(shipped, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")["properties"]
    assert block == {"bucket": bucket["id"], "blockPublicAcls": True, "blockPublicPolicy": True,
                     "ignorePublicAcls": True, "restrictPublicBuckets": True}
    encryption = one(shipped, "aws:s3/bucketServerSideEncryptionConfiguration:"
                              "BucketServerSideEncryptionConfiguration")["properties"]
    assert encryption["rules"] == [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}}]
    [deny] = json.loads(one(shipped, "aws:s3/bucketPolicy:BucketPolicy")["properties"]["policy"])["Statement"]
    assert (deny["Effect"], deny["Principal"], deny["Condition"]) == (
        "Deny", "*", {"Bool": {"aws:SecureTransport": "false"}})


def test_each_release_file_is_an_object_named_by_its_sha256_and_pinned_in_the_user_data(
        shipped: CapturedStack) -> None:
    user_data = one(shipped, "aws:ec2/instance:Instance")["properties"]["userData"]
    objects = {o["name"]: o["properties"] for o in shipped.of_type("aws:s3/bucketObjectv2:BucketObjectv2")}
    assert set(objects) == {"release-wheel", "release-requirements", "release-opa"}
    for key, path in stand_in_release().items():
        digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        [stored] = [o for o in objects.values() if o["source"] == {"asset": "file", "name": Path(path).name}]
        assert stored["key"] == f"releases/{digest}/{Path(path).name}", key
        assert f" {digest}\n" in user_data
    assert shipped.outputs["release"] == {Path(p).name: hashlib.sha256(Path(p).read_bytes()).hexdigest()
                                          for p in stand_in_release().values()}


def test_a_missing_release_file_stops_the_program_naming_the_key_and_how_to_build_it(tmp_path: Path) -> None:
    with pytest.raises(InfraProgramError) as caught:
        capture_with(**{"keyguard:wheel": str(tmp_path / "keyguard-0.1.0-py3-none-any.whl")})
    assert "keyguard:wheel names" in str(caught.value) and "bash infra/release.sh" in str(caught.value)


def test_the_host_config_names_the_vault_secrets_and_the_static_ip_never_a_value(shipped: CapturedStack) -> None:
    files = written_files(one(shipped, "aws:ec2/instance:Instance")["properties"]["userData"])
    service = yaml.safe_load(files["/etc/keyguard/service.yaml"])
    assert service["service"]["api_token_secret"] == {"secret_id": "keyguard/dev/service/api-token",
                                                      "region": "eu-west-1"}
    inventory = yaml.safe_load(files["/etc/keyguard/inventory.yaml"])
    static_ip = shipped.outputs["staticIp"]
    assert inventory["hosts"] == [{"name": "exec", "ip": static_ip, "authorized": True}]
    assert {k["id"]: (k["credentials"], [ip["value"] for ip in k["allowed_ips"]]) for k in inventory["keys"]} == {
        k["name"]: ({"aws_secret": {"secret_id": f"keyguard/dev/{k['name']}", "region": "eu-west-1"}}, [static_ip])
        for k in DEV["keyguard:keys"]}
    worker = yaml.safe_load(files["/etc/keyguard/worker.yaml"])
    assert worker["exchange"]["aws_secret"] == {"secret_id": "keyguard/dev/bot-exec-1", "region": "eu-west-1"}
    assert (worker["stage"], worker["exchange"]["base_url"]) == ("paper", "https://api.binance.com")
    assert "KEYGUARD_SECRET" not in "".join(files.values()) and "KEYGUARD_API_TOKEN" not in "".join(files.values())


def test_units_run_the_real_commands_with_the_env_file_and_the_state_directory(shipped: CapturedStack) -> None:
    files = written_files(one(shipped, "aws:ec2/instance:Instance")["properties"]["userData"])
    service = unit_settings(files["/etc/systemd/system/keyguard-service.service"])
    worker = unit_settings(files["/etc/systemd/system/keyguard-worker.service"])
    assert service["ExecStart"] == "/opt/keyguard/bin/keyguard serve --config /etc/keyguard/service.yaml"
    assert worker["ExecStart"] == "/opt/keyguard/bin/keyguard worker run --config /etc/keyguard/worker.yaml"
    for settings in (service, worker):
        assert settings["EnvironmentFile"] == "/etc/keyguard/keyguard.env"
        assert (settings["User"], settings["StateDirectory"]) == ("keyguard", "keyguard")
    env = files["/etc/keyguard/keyguard.env"]
    assert "KEYGUARD_OPA_BIN=/opt/keyguard/bin/opa" in env.splitlines()
    assert "KEYGUARD_POLICY_DIR" not in env


def test_without_an_execution_key_the_host_runs_the_service_alone() -> None:
    keys = '[{"name": "monitor-1", "exchange": "binance", "purpose": "monitoring", "issuedOn": "2026-11-01"}]'
    stack = capture_with(**{"keyguard:keys": keys, "keyguard:worker": "null"})
    files = written_files(one(stack, "aws:ec2/instance:Instance")["properties"]["userData"])
    assert [p for p in files if p.startswith("/etc/systemd/system/")] == [
        "/etc/systemd/system/keyguard-service.service"]
    assert "worker_state" not in yaml.safe_load(files["/etc/keyguard/service.yaml"])


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
    ({"keyguard:keys": '[{"name": "service-api-token", "exchange": "b", "purpose": "p", "issuedOn": "2026-01-01"}]'},
     "keyguard:keys[0].name is 'service-api-token', the name of the vault's service API token"),
    ({"keyguard:worker": '{"key": "monitor-2"}'}, "keyguard:worker.key is 'monitor-2', not a declared key"),
    ({"keyguard:worker": '{"key": "bot-exec-1", "stage": "yolo"}'}, "keyguard:worker.stage is 'yolo'"),
    ({"keyguard:keys": '[{"name": "a", "exchange": "okx", "purpose": "execution", "issuedOn": "2026-01-01"}]',
      "keyguard:worker": '{"key": "a"}'}, "keyguard:worker.key names a on okx"),
    ({"keyguard:keys": '[{"name": "a", "exchange": "binance", "purpose": "execution", "issuedOn": "2026-01-01"},'
                       '{"name": "b", "exchange": "binance", "purpose": "execution", "issuedOn": "2026-01-01"}]',
      "keyguard:worker": "null"}, "keyguard:worker is not set and there are several execution keys (a, b)"),
    ({"keyguard:exchangeUrls": '{"binance": "ftp://x"}'}, "keyguard:exchangeUrls.binance is 'ftp://x'"),
    ({"keyguard:hostRoot": "relative/dir"}, "keyguard:hostRoot is 'relative/dir'"),
    ({"keyguard:requirements": ""}, "keyguard:requirements is not set"),
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
