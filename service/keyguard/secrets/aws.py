"""AWS Secrets Manager: read a key's credentials through the host's instance role, and learn how the secret is
encrypted so the storage rules judge the real vault, not a declaration."""

from __future__ import annotations

import json
import logging
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
from pydantic import BaseModel

from keyguard.errors import ConfigError

AWS_MANAGED_ALIAS = "alias/aws/secretsmanager"

# botocore logs whole request and response bodies at DEBUG, secret values included; keep its wire loggers at
# INFO whatever the root level is (the redaction filter is the second line of defence, not the only one).
for _wire in ("botocore.parsers", "botocore.endpoint", "botocore.hooks"):
    logging.getLogger(_wire).setLevel(logging.INFO)


class AwsSecret(BaseModel):
    secret_id: str
    region: str | None = None
    endpoint_url: str | None = None

    def _client(self) -> Any:
        return boto3.client("secretsmanager", region_name=self.region, endpoint_url=self.endpoint_url)

    def _fail(self, exc: Exception) -> ConfigError:
        if isinstance(exc, ClientError):
            code = exc.response.get("Error", {}).get("Code", "error")
            return ConfigError(f"Secrets Manager secret {self.secret_id}: {code} (region {self.region or 'default'})")
        if isinstance(exc, NoCredentialsError):
            return ConfigError(f"Secrets Manager secret {self.secret_id}: no AWS credentials (instance role?)")
        return ConfigError(f"Secrets Manager secret {self.secret_id}: {exc.__class__.__name__}")

    def read_json(self) -> dict[str, Any]:
        """The secret's JSON object; errors name the secret and the AWS error code, never the value."""
        try:
            value = self._client().get_secret_value(SecretId=self.secret_id)
        except (ClientError, BotoCoreError) as exc:
            raise self._fail(exc) from None
        try:
            data = json.loads(value.get("SecretString") or "")
        except json.JSONDecodeError:
            raise ConfigError(f"Secrets Manager secret {self.secret_id}: value is not a JSON object "
                              "with api_key and secret") from None
        if not isinstance(data, dict):
            raise ConfigError(f"Secrets Manager secret {self.secret_id}: value is not a JSON object")
        return data

    def kms(self) -> str:
        """customer_managed, aws_managed, or unknown when the secret cannot be described."""
        try:
            described = self._client().describe_secret(SecretId=self.secret_id)
        except (ClientError, BotoCoreError):
            return "unknown"
        key = described.get("KmsKeyId")
        return "aws_managed" if not key or key.endswith(AWS_MANAGED_ALIAS) else "customer_managed"
