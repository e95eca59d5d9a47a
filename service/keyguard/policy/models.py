"""Finding and severity: the contract every check and alert shares (DESIGN.md, Contracts)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field


class Severity(StrEnum):
    low = "low"
    medium = "medium"
    high = "high"
    critical = "critical"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Severity.low: 1, Severity.medium: 2, Severity.high: 3, Severity.critical: 4}


class FindingStatus(StrEnum):
    open = "open"
    resolved = "resolved"
    waived = "waived"


def fingerprint(rule_id: str, resource: str) -> str:
    return hashlib.sha256(f"{rule_id}\x00{resource}".encode()).hexdigest()[:32]


class Finding(BaseModel):
    id: str
    severity: Severity
    resource: str
    message: str
    remediation: str
    evidence: dict[str, Any] = Field(default_factory=dict)
    fingerprint: str = ""
    first_seen: datetime = Field(default_factory=lambda: datetime.now(UTC))
    last_seen: datetime = Field(default_factory=lambda: datetime.now(UTC))
    status: FindingStatus = FindingStatus.open

    def model_post_init(self, __context: Any) -> None:
        if not self.fingerprint:
            self.fingerprint = fingerprint(self.id, self.resource)

    def at_or_above(self, threshold: Severity | str) -> bool:
        return self.severity.rank >= Severity(threshold).rank


def sort_findings(findings: list[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda f: (-f.severity.rank, f.id, f.resource))
