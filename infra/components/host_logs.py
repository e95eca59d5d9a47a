"""The CloudWatch log group the host's service and worker write to, with a bounded retention."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws


@dataclass(frozen=True)
class HostLogsArgs:
    group_name: str
    retention_days: int = 90


class HostLogs(pulumi.ComponentResource):
    group: aws.cloudwatch.LogGroup

    def __init__(self, name: str, args: HostLogsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("keyguard:infra:HostLogs", name, None, opts)
        self.group = aws.cloudwatch.LogGroup(
            f"{name}-group",
            name=args.group_name,
            retention_in_days=args.retention_days,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"logGroupName": self.group.name, "logGroupArn": self.group.arn})
