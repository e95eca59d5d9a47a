"""What the API answers with. Field names and shapes are the API's contract: clients and tests depend on them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class FindingOut(BaseModel):
    fingerprint: str
    scope: str
    rule_id: str
    severity: str
    resource: str
    message: str
    remediation: str
    evidence: dict[str, Any]
    status: str
    first_seen: datetime
    last_seen: datetime
    resolved_at: datetime | None


class CheckOut(BaseModel):
    scope: str
    ok: bool
    findings: int
    error: str | None
    started_at: datetime
    finished_at: datetime | None
    runner: str | None


class CheckRunOut(BaseModel):
    """One check of an operator's run."""

    scope: str
    ok: bool
    findings: int
    transitions: list[str]
    unverified: int
    error: str | None


class ObservationOut(BaseModel):
    """When a resource (a key, a document) was last observed successfully; unverified while last_error is set."""

    scope: str
    resource: str
    last_ok_at: datetime | None
    last_attempt_at: datetime
    age_s: float | None = Field(description="seconds since the last successful observation; null: never observed")
    unverified: bool
    last_error: str | None


class DeliveryOut(BaseModel):
    """The alert on one route: the evidence of delivery (or of why not yet)."""

    route: str
    status: str
    attempts: int
    last_attempt_at: datetime | None
    delivered_at: datetime | None
    last_error: str | None
    gave_up_at: datetime | None = Field(description="past the give-up age undelivered: the fallback routes got it")
    fallback_for: str | None


class AlertOut(BaseModel):
    transition: str
    rule_id: str
    severity: str
    resource: str
    title: str
    dedup_key: str
    created_at: datetime
    delivered_at: datetime | None = Field(description="every route that owes it has it; null: still being retried")
    attempts: int
    last_error: str | None
    routes: list[DeliveryOut] = Field(default_factory=list)


class AuditOut(BaseModel):
    """One operator action or refused attempt; `actor` is the token's name, never the token."""

    at: datetime
    actor: str
    role: str
    action: str
    target: str
    result: str
    detail: str
