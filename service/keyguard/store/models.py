"""SQLModel tables. Nothing here ever holds a secret: evidence is redacted before it is stored."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class FindingRecord(SQLModel, table=True):
    """One finding per (scope, fingerprint); transitions move its status, never duplicate it."""

    __tablename__ = "findings"
    __table_args__ = (UniqueConstraint("scope", "fingerprint", name="uq_findings_scope_fingerprint"),)

    pk: int | None = Field(default=None, primary_key=True)
    scope: str = Field(index=True, description="which collector produced it, e.g. keys:binance")
    fingerprint: str = Field(index=True)
    rule_id: str = Field(index=True)
    severity: str
    resource: str
    message: str
    remediation: str
    evidence: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    status: str = Field(default="open", index=True)
    first_seen: datetime = Field(default_factory=utcnow)
    last_seen: datetime = Field(default_factory=utcnow)
    resolved_at: datetime | None = None


class AlertRecord(SQLModel, table=True):
    """The alert outbox: written in the same transaction as the transition, delivered afterwards."""

    __tablename__ = "alerts"

    pk: int | None = Field(default=None, primary_key=True)
    transition: str = Field(description="new | resolved | regressed | waiver_expired | check_failed")
    scope: str
    fingerprint: str
    rule_id: str
    severity: str
    resource: str
    title: str
    body: str
    created_at: datetime = Field(default_factory=utcnow)
    delivered_at: datetime | None = Field(default=None, index=True)
    attempts: int = 0
    delivered_routes: list[int] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    last_error: str | None = None


class CheckRun(SQLModel, table=True):
    """One run of one collector: what it saw, or why it could not see."""

    __tablename__ = "check_runs"

    pk: int | None = Field(default=None, primary_key=True)
    scope: str = Field(index=True)
    started_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None
    ok: bool = False
    findings: int = 0
    error: str | None = None
