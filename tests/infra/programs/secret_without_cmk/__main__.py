"""The vault's secrets left on the AWS-managed key (no kmsKeyId)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mutation import run_shipped_with  # noqa: E402

run_shipped_with("aws:secretsmanager/secret:Secret", lambda props: props.update(kms_key_id=None))
