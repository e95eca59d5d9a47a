"""The release the host installs: a private bucket holding the exact wheel, its locked requirements and the opa
binary, each object named by its sha256, which the host's boot script checks before it installs anything."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_aws as aws


@dataclass(frozen=True)
class ReleaseArtifact:
    """One file of the release: its name on the host, its object key, and the sha256 the host checks."""

    name: str
    key: str
    sha256: str


@dataclass(frozen=True)
class ReleaseBucketArgs:
    # role (wheel, requirements, opa) -> the local file; the role names the object's resource, so a new version
    # of a file replaces its object instead of adding one beside it.
    files: Mapping[str, Path]
    # Bucket names are global; the stack's name plus a generated suffix keeps them apart.
    name_prefix: str


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def artifact_for(path: Path) -> ReleaseArtifact:
    digest = sha256_of(path)
    # Content-addressed: a new build is a new object, never an overwrite of what a running host installed.
    return ReleaseArtifact(name=path.name, key=f"releases/{digest}/{path.name}", sha256=digest)


class ReleaseBucket(pulumi.ComponentResource):
    bucket: aws.s3.Bucket
    artifacts: tuple[ReleaseArtifact, ...]  # in the order of args.files
    object_arns: pulumi.Output[list[str]]

    def __init__(self, name: str, args: ReleaseBucketArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("keyguard:infra:ReleaseBucket", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.bucket = aws.s3.Bucket(f"{name}-bucket", bucket_prefix=args.name_prefix, force_destroy=True,
                                    tags={"keyguard:role": "release"}, opts=child)
        aws.s3.BucketPublicAccessBlock(
            f"{name}-no-public-access", bucket=self.bucket.id, block_public_acls=True, block_public_policy=True,
            ignore_public_acls=True, restrict_public_buckets=True, opts=child,
        )
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption", bucket=self.bucket.id,
            rules=[aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                apply_server_side_encryption_by_default=aws.s3.
                BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                    sse_algorithm="AES256"))],
            opts=child,
        )
        aws.s3.BucketPolicy(f"{name}-tls-only", bucket=self.bucket.id,
                            policy=self.bucket.arn.apply(lambda arn: json.dumps(tls_only_policy(arn))), opts=child)
        self.artifacts = tuple(artifact_for(path) for path in args.files.values())
        for role, artifact in zip(args.files, self.artifacts, strict=True):
            aws.s3.BucketObjectv2(
                f"{name}-{role}",
                bucket=self.bucket.id,
                key=artifact.key,
                source=pulumi.FileAsset(str(args.files[role])),
                content_type="application/octet-stream",
                tags={"keyguard:sha256": artifact.sha256},
                opts=child,
            )
        self.object_arns = self.bucket.arn.apply(lambda arn: [f"{arn}/{a.key}" for a in self.artifacts])
        self.register_outputs({"bucket": self.bucket.bucket, "objectArns": self.object_arns})


def tls_only_policy(bucket_arn: str) -> dict:
    return {
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "TlsOnly",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [bucket_arn, f"{bucket_arn}/*"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }],
    }
