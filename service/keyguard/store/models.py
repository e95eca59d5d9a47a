"""SQLModel tables. Nothing here ever holds a secret: evidence is redacted before it is stored."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, UniqueConstraint, text
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """SQLite hands timestamps back without a zone; every timestamp Keyguard writes is UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


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
    # The finding's fingerprint: receivers fold retries, crashes and replicas into one incident with it.
    dedup_key: str = Field(default="", sa_column_kwargs={"server_default": text("''")})
    # Whether its per-route deliveries exist yet (the delivery service makes them, once, for every route).
    fanned_out: bool = Field(default=False, sa_column_kwargs={"server_default": "0"})
    # The routes of tiers up to this one get it (0: the first line; an escalated incident's alerts reach further).
    tier: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    # The incident it belongs to, if its finding opened one.
    incident_pk: int | None = Field(default=None, index=True)
    # The silence that held it back: recorded and shown, not sent.
    silenced_by: int | None = None


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
    # What the run measured, read from the collected document (the worker's weight used and its limit), so the
    # dashboard can draw it over time from the store every replica shares.
    gauges: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))


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
    # The resource's part of the last successful observation (a key's KeyState as the policies saw it), redacted.
    facts: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))


class AlertDelivery(SQLModel, table=True):
    """One alert on one route: retried on its own backoff until that route accepts it; never dropped."""

    __tablename__ = "alert_deliveries"
    __table_args__ = (UniqueConstraint("alert_pk", "route", name="uq_alert_deliveries_alert_route"),)

    pk: int | None = Field(default=None, primary_key=True)
    alert_pk: int = Field(index=True)
    route: str = Field(index=True)
    status: str = Field(default="pending", index=True, description="pending | delivered")
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=utcnow)
    last_attempt_at: datetime | None = None
    delivered_at: datetime | None = None
    last_error: str | None = None
    # When the alert passed the give-up age on this route undelivered (the fallback routes then got it).
    gave_up_at: datetime | None = None
    # For a fallback delivery: the route whose failure it stands in for.
    fallback_for: str | None = None


class DeliveryAttempt(SQLModel, table=True):
    """The evidence of delivery: every attempt on every route, with its outcome."""

    __tablename__ = "delivery_attempts"

    pk: int | None = Field(default=None, primary_key=True)
    delivery_pk: int = Field(index=True)
    at: datetime
    ok: bool
    duration_ms: int
    detail: str = ""


class ApiToken(SQLModel, table=True):
    """A bearer token for the HTTP API. Only its sha256 is kept; a revoked token stays, so its name is never reused
    and the audit log's names keep meaning one token."""

    __tablename__ = "api_tokens"
    __table_args__ = (
        UniqueConstraint("name", name="uq_api_tokens_name"),
        UniqueConstraint("token_hash", name="uq_api_tokens_token_hash"),
    )

    pk: int | None = Field(default=None, primary_key=True)
    name: str
    role: str = Field(description="viewer | operator")
    token_hash: str = Field(description="sha256 (hex) of the token; the token itself is never stored")
    created_at: datetime = Field(default_factory=utcnow)
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None


class AuditEntry(SQLModel, table=True):
    """One operator action, or one refused attempt at it: who, with which role, did what to what, and how it ended."""

    __tablename__ = "audit_log"

    pk: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, index=True)
    actor: str = Field(index=True, description="the token's name (env: the environment token; cli:<user>)")
    role: str
    action: str = Field(description="e.g. checks.run, policy.reload, token.create")
    target: str
    result: str = Field(description="ok | refused | failed")
    detail: str = ""


class Incident(SQLModel, table=True):
    """A critical or high finding someone has to act on: opened by the finding, acknowledged and resolved by people
    (or resolved by the finding itself), re-notified and escalated while nobody acknowledges it."""

    __tablename__ = "incidents"
    __table_args__ = (
        # At most one incident per finding is not resolved, whichever replica or cycle opens it.
        Index("uq_incidents_active_fingerprint", "scope", "fingerprint", unique=True,
              sqlite_where=text("status != 'resolved'"), postgresql_where=text("status != 'resolved'")),
    )

    pk: int | None = Field(default=None, primary_key=True)
    scope: str
    fingerprint: str = Field(index=True)
    rule_id: str
    severity: str
    resource: str
    title: str
    status: str = Field(default="open", index=True, description="open | acknowledged | resolved")
    opened_at: datetime
    tier: int = Field(default=0, description="the highest route tier it has reached")
    last_notified_at: datetime
    notifications: int = 1
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    resolved_at: datetime | None = None
    resolved_by: str | None = None


class IncidentEvent(SQLModel, table=True):
    """One line of an incident's timeline."""

    __tablename__ = "incident_events"

    pk: int | None = Field(default=None, primary_key=True)
    incident_pk: int = Field(index=True)
    at: datetime
    kind: str = Field(description="opened | renotified | escalated | acknowledged | resolved | finding_resolved | "
                                   "regressed | silenced | silence_expired | note")
    actor: str = Field(description="keyguard, or the operator (token name, cli:<user>)")
    detail: str = ""


class Silence(SQLModel, table=True):
    """A silence or maintenance window: alerts whose rule and resource match are recorded and shown, not sent,
    from `starts_at` until `ends_at`. When it ends, what it held back and is still open is sent."""

    __tablename__ = "silences"

    pk: int | None = Field(default=None, primary_key=True)
    rule: str = Field(description="rule id or glob (KG-KEY-*, * for any)")
    resource: str = Field(description="resource or glob (binance/bot-*, * for any)")
    reason: str
    author: str
    created_at: datetime
    starts_at: datetime
    ends_at: datetime
    # When Keyguard noticed it ended (expiry) or an operator ended it early, and who.
    ended_at: datetime | None = None
    ended_by: str | None = None


class ActivityEvent(SQLModel, table=True):
    """Something an exchange recorded on a watched account that Keyguard did not send (an order), or that moves
    funds (a withdrawal, a transfer). Kept until an operator's release reviews it, so a stolen key's trace does
    not age out of the exchange's history window and quietly resolve its finding."""

    __tablename__ = "activity_events"
    __table_args__ = (UniqueConstraint("resource", "kind", "ref", name="uq_activity_events_resource_kind_ref"),)

    pk: int | None = Field(default=None, primary_key=True)
    resource: str = Field(index=True, description="the key, exchange/key-id")
    kind: str = Field(description="order | withdrawal | transfer")
    ref: str = Field(description="the exchange's id for it")
    at: datetime | None = Field(default=None, description="when the exchange says it happened")
    record: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    first_seen: datetime
    cleared_at: datetime | None = None
    cleared_by: str | None = None


class ContainmentRun(SQLModel, table=True):
    """One containment (or its release) of one key: who or what started it, and how it ended."""

    __tablename__ = "containment_runs"

    pk: int | None = Field(default=None, primary_key=True)
    resource: str = Field(index=True)
    action: str = Field(description="contain | release")
    trigger: str = Field(description="the rule that started it, or the operator's reason")
    actor: str
    dry_run: bool = False
    incident_pk: int | None = Field(default=None, index=True)
    started_at: datetime
    finished_at: datetime | None = None
    result: str = Field(default="running", description="running | done | partial | failed | refused | planned")
    # What undoing it needs (previous IP list, the secret's ARN and statement id), for the release.
    undo: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    # The evidence pack read at the exchange while containing (orders, trades, withdrawals, transfers, the key).
    evidence: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))


class ContainmentStep(SQLModel, table=True):
    """{action, target, started, finished, result: done | failed | not_available | planned, detail}: a step that
    cannot be confirmed is failed, never done."""

    __tablename__ = "containment_steps"

    pk: int | None = Field(default=None, primary_key=True)
    run_pk: int = Field(index=True)
    action: str
    target: str
    started_at: datetime
    finished_at: datetime
    result: str
    detail: str = ""


class WebSession(SQLModel, table=True):
    """A dashboard session: the cookie holds 256 random bits, the store only their sha256 (as for API tokens), so
    every replica honours it and a copy of the store cannot log anyone in. It is only as good as the token it was
    opened with: a revoked token's sessions stop at their next request."""

    __tablename__ = "web_sessions"
    __table_args__ = (UniqueConstraint("session_hash", name="uq_web_sessions_session_hash"),)

    pk: int | None = Field(default=None, primary_key=True)
    session_hash: str = Field(description="sha256 (hex) of the session id; the id itself is never stored")
    token_name: str = Field(description="the API token it was opened with (env: the environment token)")
    role: str = Field(description="viewer | operator")
    created_at: datetime
    expires_at: datetime
    ended_at: datetime | None = None


class LoginLink(SQLModel, table=True):
    """A one-time dashboard login link (what `keyguard demo` prints): its code is not an API token, lives minutes,
    and opens one session at most. Only the code's sha256 is kept."""

    __tablename__ = "login_links"
    __table_args__ = (UniqueConstraint("code_hash", name="uq_login_links_code_hash"),)

    pk: int | None = Field(default=None, primary_key=True)
    code_hash: str
    token_name: str
    role: str
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None = None
