"""The vault: a rotating customer-managed KMS key, one Secrets Manager secret per declared exchange key, and the
service's API token."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from stack_config import DeclaredKey

# The API token's entry in `secret_arns` and its secret's name suffix; key names cannot hold a '/', so no declared
# key can take it.
API_TOKEN = "service/api-token"


@dataclass(frozen=True)
class VaultArgs:
    keys: Sequence[DeclaredKey]
    # Secret names are "<prefix><key name>", so the host can list its own secrets and nothing else.
    name_prefix: str
    recovery_window_days: int = 30


class Vault(pulumi.ComponentResource):
    key: aws.kms.Key
    secrets: dict[str, aws.secretsmanager.Secret]
    api_token: aws.secretsmanager.Secret
    # Every secret's name (deterministic, so the host's configs can name them before they exist).
    secret_names: dict[str, str]

    def __init__(self, name: str, args: VaultArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("keyguard:infra:Vault", name, None, opts)
        self._child_prefix = name  # admit_only() names its resources after this component
        child = pulumi.ResourceOptions(parent=self)
        self.key = aws.kms.Key(
            f"{name}-key",
            description="Keyguard vault: encrypts the exchange API key secrets and the service token",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            opts=child,
        )
        aws.kms.Alias(f"{name}-key-alias", name=f"alias/{args.name_prefix.strip('/').replace('/', '-')}",
                      target_key_id=self.key.key_id, opts=child)
        self.secrets = {
            key.name: aws.secretsmanager.Secret(
                f"{name}-{key.name}",
                name=f"{args.name_prefix}{key.name}",
                description=f"{key.exchange} API key {key.name} ({key.purpose}); value put after deploy",
                kms_key_id=self.key.arn,
                recovery_window_in_days=args.recovery_window_days,
                tags={
                    "keyguard:exchange": key.exchange,
                    "keyguard:purpose": key.purpose,
                    "keyguard:rotation-due": key.rotation_due.isoformat(),
                },
                opts=child,
            )
            for key in args.keys
        }
        # The operator token the service reads at start (`service.api_token_secret`); its value is put after
        # deploy, like the keys', so it never passes through Pulumi's state.
        self.api_token = aws.secretsmanager.Secret(
            f"{name}-service-api-token",
            name=f"{args.name_prefix}{API_TOKEN}",
            description="Keyguard service API token (operator); value put after deploy",
            kms_key_id=self.key.arn,
            recovery_window_in_days=args.recovery_window_days,
            tags={"keyguard:purpose": "service-api-token"},
            opts=child,
        )
        self.secret_names = {**{k.name: f"{args.name_prefix}{k.name}" for k in args.keys},
                             API_TOKEN: f"{args.name_prefix}{API_TOKEN}"}
        self.secret_arns = pulumi.Output.all(
            **{key_name: secret.arn for key_name, secret in self._all_secrets().items()}
        )
        self.register_outputs({"keyArn": self.key.arn, "secretArns": self.secret_arns})

    def _all_secrets(self) -> dict[str, aws.secretsmanager.Secret]:
        return {**self.secrets, API_TOKEN: self.api_token}

    def admit_only(self, reader_role_arn: pulumi.Input[str]) -> None:
        """Attach a resource policy to every secret so only the given role may read its value."""
        for key_name, secret in self._all_secrets().items():
            aws.secretsmanager.SecretPolicy(
                f"{self._child_prefix}-{key_name.replace('/', '-')}-policy",
                secret_arn=secret.arn,
                policy=pulumi.Output.all(secret.arn, reader_role_arn).apply(
                    lambda values: json.dumps(_reader_only_policy(values[0], values[1]))
                ),
                block_public_policy=True,
                opts=pulumi.ResourceOptions(parent=self),
            )


def _reader_only_policy(secret_arn: str, reader_role_arn: str) -> dict:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "HostRoleReads",
                "Effect": "Allow",
                "Principal": {"AWS": reader_role_arn},
                "Action": "secretsmanager:GetSecretValue",
                "Resource": secret_arn,
            },
            {
                "Sid": "NobodyElseReads",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "secretsmanager:GetSecretValue",
                "Resource": secret_arn,
                "Condition": {"StringNotEquals": {"aws:PrincipalArn": reader_role_arn}},
            },
        ],
    }
