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
    # Consecutive cycles in which the resource was observed and the rule did not fire; resolves at the threshold.
    clean_streak: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    # Whether its opening was alerted: a finding folded into an outage alert resolves without a page either.
    alerted: bool = Field(default=False, sa_column_kwargs={"server_default": "0"})


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
    runner: str | None = Field(default=None, description="the replica that ran it")


class CheckSchedule(SQLModel, table=True):
    """One row per check scope: when it is next due, and its last outcome. Replicas claim a due row with
    SELECT ... FOR UPDATE SKIP LOCKED and hold the lock while the check runs, so each cycle runs once."""

    __tablename__ = "check_schedule"

    scope: str = Field(primary_key=True)
    next_due_at: datetime | None = None
    last_started_at: datetime | None = None
    last_finished_at: datetime | None = None
    last_ok_at: datetime | None = None
    last_error: str | None = None
    last_runner: str | None = None


class ObservationRecord(SQLModel, table=True):
    """When each resource (a key, a document) was last observed successfully, and why the last try failed."""

    __tablename__ = "observations"
    __table_args__ = (UniqueConstraint("scope", "resource", name="uq_observations_scope_resource"),)

    pk: int | None = Field(default=None, primary_key=True)
    scope: str = Field(index=True)
    resource: str
    last_attempt_at: datetime
    last_ok_at: datetime | None = None
    last_error: str | None = None
