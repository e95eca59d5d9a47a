"""The instance's metadata service left on IMDSv1 (session tokens optional)."""

import sys
from pathlib import Path

import pulumi_aws as aws

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mutation import run_shipped_with  # noqa: E402

run_shipped_with(
    "aws:ec2/instance:Instance",
    lambda props: props.update(metadata_options=aws.ec2.InstanceMetadataOptionsArgs(http_tokens="optional")),
)
