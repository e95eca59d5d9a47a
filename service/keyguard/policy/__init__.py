"""Policy engine: OPA evaluation of Keyguard's Rego rule set, returning Findings."""

from typing import TYPE_CHECKING, Any

from keyguard.policy.documents import load_document, validate_document
from keyguard.policy.models import Finding, FindingStatus, Severity, sort_findings

if TYPE_CHECKING:
    from keyguard.policy.engine import PolicyEngine

__all__ = [
    "Finding",
    "FindingStatus",
    "PolicyEngine",
    "Severity",
    "load_document",
    "sort_findings",
    "validate_document",
]


def __getattr__(name: str) -> Any:
    # The server engine is imported on first use, so `import keyguard.policy.cli` stays light.
    if name == "PolicyEngine":
        from keyguard.policy.engine import PolicyEngine

        return PolicyEngine
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
