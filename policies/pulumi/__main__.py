"""Keyguard's CrossGuard policy pack: `pulumi preview|up --policy-pack policies/pulumi`.

Critical and high findings block the deployment (mandatory); medium and low are shown (advisory). Every
message carries the rule id, severity and remediation from the rule's METADATA.
"""

from keyguard_crossguard import StackJudge
from pulumi_policy import EnforcementLevel, PolicyPack, StackValidationPolicy

judge = StackJudge()

PolicyPack(
    name="keyguard",
    description="Keyguard infra rules (policies/infra) evaluated through OPA",
    policies=[
        StackValidationPolicy(
            name="keyguard-critical-and-high",
            description="Keyguard infra rules at critical or high severity",
            validate=judge.validator(mandatory=True),
            enforcement_level=EnforcementLevel.MANDATORY,
        ),
        StackValidationPolicy(
            name="keyguard-medium-and-low",
            description="Keyguard infra rules at medium or low severity, and values unknown until apply",
            validate=judge.validator(mandatory=False),
            enforcement_level=EnforcementLevel.ADVISORY,
        ),
    ],
)
