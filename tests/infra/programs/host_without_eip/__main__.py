"""The Elastic IP allocated but never associated with the execution host."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mutation import run_shipped_with  # noqa: E402

run_shipped_with("aws:ec2/eipAssociation:EipAssociation", lambda props: props.update(instance_id=None))
