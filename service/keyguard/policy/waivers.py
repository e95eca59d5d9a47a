"""Waivers: an accepted risk, with a reason, an approver and an expiry. All fields are required; an expired
or malformed waiver stops applying and says so, so a waiver can never silently become permanent."""

from __future__ import annotations

import fnmatch
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from keyguard.errors import ConfigError
from keyguard.policy.documents import load_document
from keyguard.policy.models import Finding, FindingStatus


class Waiver(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt field is a malformed waiver, not an ignored one

    rule: str = Field(min_length=1, description="rule id, e.g. KG-IP-104")
    resource: str = Field(min_length=1, description="resource id; shell-style wildcards allowed")
    reason: str = Field(min_length=10)
    approver: str = Field(min_length=1)
    expires: datetime

    @field_validator("expires")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return value if value.tzinfo else value.replace(tzinfo=UTC)

    def covers(self, finding: Finding) -> bool:
        return finding.id == self.rule and fnmatch.fnmatchcase(finding.resource, self.resource)


class WaiverNote(BaseModel):
    index: int
    message: str


def parse_waivers(entries: list[Any], source: str = "waivers") -> tuple[list[Waiver], list[WaiverNote]]:
    """Valid waivers, and a note for each malformed one (which does not apply)."""
    waivers: list[Waiver] = []
    notes: list[WaiverNote] = []
    for index, entry in enumerate(entries):
        try:
            waivers.append(Waiver.model_validate(entry))
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or "(entry)"
            notes.append(WaiverNote(index=index, message=f"{source}[{index}].{field}: {first['msg']}; not applied"))
    return waivers, notes


def load_waivers(path: Path) -> tuple[list[Waiver], list[WaiverNote]]:
    doc = load_document(path)
    entries = doc.get("waivers")
    if not isinstance(entries, list):
        raise ConfigError(
            f"{path}: expected a top-level 'waivers' list of {{rule, resource, reason, approver, expires}}"
        )
    return parse_waivers(entries, source=f"{path}:waivers")


def apply_waivers(findings: list[Finding], waivers: list[Waiver],
                  now: datetime) -> tuple[list[Finding], list[WaiverNote]]:
    """Mark covered findings waived; an expired waiver leaves its findings open and yields a note."""
    notes: list[WaiverNote] = []
    result: list[Finding] = []
    for index, waiver in enumerate(waivers):
        if waiver.expires <= now and any(waiver.covers(f) for f in findings):
            notes.append(WaiverNote(index=index, message=(
                f"waiver for {waiver.rule} on {waiver.resource} (approved by {waiver.approver}) expired "
                f"{waiver.expires:%Y-%m-%d %H:%M} UTC; the finding is open again")))
    for finding in findings:
        active = next((w for w in waivers if w.expires > now and w.covers(finding)), None)
        if active is not None:
            finding = finding.model_copy(update={"status": FindingStatus.waived, "evidence": {
                **finding.evidence, "waiver": {"reason": active.reason, "approver": active.approver,
                                               "expires": active.expires.isoformat()}}})
        result.append(finding)
    return result, notes
