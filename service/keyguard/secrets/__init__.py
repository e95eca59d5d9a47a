"""Secret backends the inventory can name: environment, a local file, AWS Secrets Manager (production)."""

from keyguard.secrets.aws import AwsSecret

__all__ = ["AwsSecret"]
