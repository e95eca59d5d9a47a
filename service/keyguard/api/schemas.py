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
    silenced_by: int | None = Field(default=None, description="an active silence matches it: its alerts are "
                                                              "recorded, not sent")


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
    tier: int = Field(description="routes of tiers up to this one owe it")
    incident_pk: int | None = Field(description="the incident it belongs to")
    silenced_by: int | None = Field(description="the silence that held it back: recorded, not sent")
    routes: list[DeliveryOut] = Field(default_factory=list)


class IncidentOut(BaseModel):
    pk: int
    status: str = Field(description="open | acknowledged | resolved")
    rule_id: str
    severity: str
    resource: str
    scope: str
    fingerprint: str
    title: str
    opened_at: datetime
    tier: int = Field(description="the highest route tier it has reached")
    notifications: int
    last_notified_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    resolved_at: datetime | None
    resolved_by: str | None
    silenced_by: int | None = Field(default=None, description="an active silence holds its notifications")


class TimelineEntry(BaseModel):
    at: datetime
    kind: str = Field(description="an event (opened, acknowledged, ...) or delivered / not_delivered for an alert "
                                   "on one route")
    actor: str
    detail: str


class IncidentDetailOut(IncidentOut):
    timeline: list[TimelineEntry]


class IncidentActionIn(BaseModel):
    model_config = {"extra": "forbid"}

    note: str = Field(default="", max_length=500)
    force: bool = Field(default=False, description="resolve: close it even though its finding still fires")


class IncidentActionOut(BaseModel):
    changed: bool = Field(description="false: it already was in that state")
    incident: IncidentOut


class SilenceIn(BaseModel):
    model_config = {"extra": "forbid"}

    rule: str = Field(min_length=1, max_length=200, description="rule id or glob, e.g. KG-KEY-101, KG-KEY-*, *")
    resource: str = Field(min_length=1, max_length=500, description="resource or glob, e.g. binance/bot-*")
    reason: str = Field(min_length=1, max_length=500)
    starts_at: datetime | None = Field(default=None, description="default now; later: a maintenance window")
    ends_at: datetime | None = Field(default=None, description="when it ends (or give duration_s)")
    duration_s: float | None = Field(default=None, gt=0, description="how long from its start")


class SilenceOut(BaseModel):
    pk: int
    rule: str
    resource: str
    reason: str
    author: str
    created_at: datetime
    starts_at: datetime
    ends_at: datetime
    state: str = Field(description="pending | active | expired | ended (by an operator)")
    ended_at: datetime | None
    ended_by: str | None


class AuditOut(BaseModel):
    """One operator action or refused attempt; `actor` is the token's name, never the token."""

    at: datetime
    actor: str
    role: str
    action: str
    target: str
    result: str
    detail: str
