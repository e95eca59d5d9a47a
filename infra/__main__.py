"""Keyguard's infrastructure: read config, compose the release, the vault, the log group and the execution host."""

import pulumi

from components import (
    ExecutionHost,
    ExecutionHostArgs,
    HostLogs,
    HostLogsArgs,
    ReleaseBucket,
    ReleaseBucketArgs,
    Vault,
    VaultArgs,
)
from components.vault import API_TOKEN
from host_boot import HostBootArgs, HostLayout
from keyguard.tools import OPA_VERSION
from stack_config import load_stack_config

config = load_stack_config()
stack = pulumi.get_stack()
secret_prefix = f"keyguard/{stack}/"

release = ReleaseBucket("release", ReleaseBucketArgs(
    files={"wheel": config.release.wheel, "requirements": config.release.requirements, "opa": config.release.opa},
    name_prefix=f"keyguard-{stack}-release-",
))
vault = Vault("vault", VaultArgs(keys=config.keys, name_prefix=secret_prefix,
                                 recovery_window_days=config.secret_recovery_window_days))
logs = HostLogs("logs", HostLogsArgs(group_name=f"/keyguard/{stack}", retention_days=config.log_retention_days))
wheel, requirements, opa = release.artifacts
host = ExecutionHost("exec", ExecutionHostArgs(
    region=config.region,
    secret_arns=vault.secret_arns,
    kms_key_arn=vault.key.arn,
    log_group_arn=logs.group.arn,
    release_object_arns=release.object_arns,
    boot=HostBootArgs(
        stack=stack,
        region=config.region,
        release_bucket=release.bucket.bucket,
        release=(wheel, requirements, opa),
        opa_version=OPA_VERSION,
        keys=config.keys,
        secret_names=vault.secret_names,
        api_token_secret=vault.secret_names[API_TOKEN],
        log_group=logs.group.name,
        worker=config.worker,
        service_port=config.service_port,
        exchange_urls=config.exchange_urls,
        layout=HostLayout(config.host_root),
    ),
    instance_type=config.instance_type,
    ami_id=config.ami_id,
    admin_cidr=config.admin_cidr,
    vpc_cidr=config.vpc_cidr,
    subnet_id=config.subnet_id,
    vpc_id=config.vpc_id,
))
vault.admit_only(host.role.arn)

# The address every exchange key must be bound to.
pulumi.export("staticIp", host.static_ip.public_ip)
# Where to put each secret's value (`aws secretsmanager put-secret-value`): every key's, and the service's API
# token (service/api-token); the drift check reads them all.
pulumi.export("secretArns", vault.secret_arns)
pulumi.export("roleArn", host.role.arn)
pulumi.export("instanceId", host.instance.id)
pulumi.export("kmsKeyArn", vault.key.arn)
pulumi.export("securityGroupId", host.security_group.id)
pulumi.export("logGroupName", logs.group.name)
# What the host installed: the release bucket and each file's sha256 (the boot script refuses any other).
pulumi.export("releaseBucket", release.bucket.bucket)
pulumi.export("release", {a.name: a.sha256 for a in release.artifacts})
