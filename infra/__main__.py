"""Keyguard's infrastructure: read config, compose the vault, the log group and the execution host."""

import pulumi

from components import ExecutionHost, ExecutionHostArgs, HostLogs, HostLogsArgs, Vault, VaultArgs
from stack_config import load_stack_config

config = load_stack_config()
stack = pulumi.get_stack()
secret_prefix = f"keyguard/{stack}/"

vault = Vault("vault", VaultArgs(keys=config.keys, name_prefix=secret_prefix,
                                 recovery_window_days=config.secret_recovery_window_days))
logs = HostLogs("logs", HostLogsArgs(group_name=f"/keyguard/{stack}", retention_days=config.log_retention_days))
host = ExecutionHost("exec", ExecutionHostArgs(
    region=config.region,
    secret_arns=vault.secret_arns,
    kms_key_arn=vault.key.arn,
    log_group_name=logs.group.name,
    log_group_arn=logs.group.arn,
    secret_name_prefix=secret_prefix,
    instance_type=config.instance_type,
    ami_id=config.ami_id,
    admin_cidr=config.admin_cidr,
    vpc_cidr=config.vpc_cidr,
    subnet_id=config.subnet_id,
    vpc_id=config.vpc_id,
    keyguard_package=config.keyguard_package,
))
vault.admit_only(host.role.arn)

# The address every exchange key must be bound to.
pulumi.export("staticIp", host.static_ip.public_ip)
# Where to put each key's value (`aws secretsmanager put-secret-value`) and what the drift check reads.
pulumi.export("secretArns", vault.secret_arns)
pulumi.export("roleArn", host.role.arn)
pulumi.export("instanceId", host.instance.id)
pulumi.export("kmsKeyArn", vault.key.arn)
pulumi.export("securityGroupId", host.security_group.id)
pulumi.export("logGroupName", logs.group.name)
