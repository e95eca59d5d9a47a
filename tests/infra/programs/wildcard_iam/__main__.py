"""The host role's policy replaced by the classic 'make it work' wildcard."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mutation import run_shipped_with  # noqa: E402

WILDCARD = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})

run_shipped_with("aws:iam/rolePolicy:RolePolicy", lambda props: props.update(policy=WILDCARD))
