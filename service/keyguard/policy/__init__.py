"""Policy engine: OPA evaluation of Keyguard's Rego rule set, returning Findings."""

from keyguard.policy.documents import load_document, validate_document
from keyguard.policy.engine import PolicyEngine
from keyguard.policy.models import Finding, FindingStatus, Severity, sort_findings

__all__ = [
    "Finding",
    "FindingStatus",
    "PolicyEngine",
    "Severity",
    "load_document",
    "sort_findings",
    "validate_document",
]
