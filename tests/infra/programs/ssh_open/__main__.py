"""The admin SSH rule widened to the whole internet."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mutation import run_shipped_with  # noqa: E402

run_shipped_with(
    "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
    lambda props: props.update(cidr_ipv4="0.0.0.0/0"),
)
