"""AWS Secrets Manager: read a key's credentials through the host's instance role, and learn how the secret is
encrypted so the storage rules judge the real vault, not a declaration."""

from __future__ import annotations

import json
import logging
from typing import Any

from keyguard.errors import ConfigError
from keyguard.loading import HttpUrlText, StrictModel

AWS_MANAGED_ALIAS = "alias/aws/secretsmanager"

# botocore logs whole request and response bodies at DEBUG, secret values included; keep its wire loggers at
# INFO whatever the root level is (the redaction filter is the second line of defence, not the only one).
for _wire in ("botocore.parsers", "botocore.endpoint", "botocore.hooks"):
    logging.getLogger(_wire).setLevel(logging.INFO)


def _aws_errors() -> tuple[type[Exception], ...]:
    from botocore.exceptions import BotoCoreError, ClientError

    return (ClientError, BotoCoreError)


class AwsSecret(StrictModel):
    secret_id: str
    region: str | None = None
    endpoint_url: HttpUrlText | None = None

    def _client(self) -> Any:
        import boto3  # on first use: settings that merely name a secret do not pay for boto3's import

        return boto3.client("secretsmanager", region_name=self.region, endpoint_url=self.endpoint_url)

    def _fail(self, exc: Exception) -> ConfigError:
        from botocore.exceptions import ClientError, NoCredentialsError

        if isinstance(exc, ClientError):
            code = exc.response.get("Error", {}).get("Code", "error")
            return ConfigError(f"Secrets Manager secret {self.secret_id}: {code} (region {self.region or 'default'})")
        if isinstance(exc, NoCredentialsError):
            return ConfigError(f"Secrets Manager secret {self.secret_id}: no AWS credentials (instance role?)")
        return ConfigError(f"Secrets Manager secret {self.secret_id}: {exc.__class__.__name__}")

    def read_string(self) -> str:
        """The secret's string value; errors name the secret and the AWS error code, never the value. A secret
        created without a value yet (`put-secret-value` not run) is an error, not an empty string."""
        try:
            value = self._client().get_secret_value(SecretId=self.secret_id)
        except _aws_errors() as exc:
            raise self._fail(exc) from None
        text = value.get("SecretString")
        if not text:
            raise ConfigError(f"Secrets Manager secret {self.secret_id}: holds no string value "
                              "(put one with `aws secretsmanager put-secret-value`)")
        return str(text)

    def read_json(self) -> dict[str, Any]:
        """The secret's JSON object; errors name the secret and the AWS error code, never the value."""
        text = self.read_string()
        try:
            data = json.loads(text)
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
        except _aws_errors():
            return "unknown"
        key = described.get("KmsKeyId")
        return "aws_managed" if not key or key.endswith(AWS_MANAGED_ALIAS) else "customer_managed"
