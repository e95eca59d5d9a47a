"""Transitions: turn each check's findings into new, resolved, regressed and waiver-expired against the store.

Alerts fire on transitions only, so a finding that stays open is reported once, not every cycle. A finding
resolves only when its resource was observed and the rule stopped firing for `resolve_after` cycles in a row:
what could not be seen keeps its findings open. A finding opened while its resource's trouble is already
reported by another alert (an exchange outage) is recorded without a page of its own; it is paged as soon as
that no longer holds, and its resolution is paged only if its opening was."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, select

from keyguard.incidents.lifecycle import on_transitions
from keyguard.policy.models import Finding
from keyguard.redact import redact_text, redact_value
from keyguard.store.models import AlertRecord, FindingRecord


@dataclass(frozen=True)
class Transition:
    kind: str  # new | resolved | regressed | waiver_expired
    record: FindingRecord
    paged: bool = True  # False: folded into another alert (see `inhibited`)


def covers(prefixes: Mapping[str, str], resource: str) -> str | None:
    """The entry of `prefixes` that names `resource` or a resource it contains (binance/k1 covers binance/k1/ip/..)."""
    for prefix, value in prefixes.items():
        if resource == prefix or resource.startswith(prefix + "/"):
            return value
    return None


def apply_findings(session: Session, scope: str, findings: list[Finding], now: datetime, *,
                   resolve_after: int = 1, unobserved: Mapping[str, str] | None = None,
                   inhibited: Mapping[str, str] | None = None) -> list[Transition]:
    """Upsert this scope's findings, resolve the ones that vanished from observed resources, queue the alerts.

    `unobserved`: resource -> why it could not be observed this cycle (its open findings stay open).
    `inhibited`: resource -> the alert that already speaks for it (its new findings are not paged yet)."""
    unobserved, inhibited = unobserved or {}, inhibited or {}
    stored = {r.fingerprint: r for r in session.exec(select(FindingRecord).where(FindingRecord.scope == scope))}
    seen: set[str] = set()
    transitions: list[Transition] = []
    for finding in findings:
        if finding.fingerprint in seen:
            continue
        seen.add(finding.fingerprint)
        pageable = covers(inhibited, finding.resource) is None
        record = stored.get(finding.fingerprint)
        previous = record.status if record is not None else None
        if record is None:
            record, inserted = _upsert(session, scope, finding, now)
            previous = None if inserted else record.status
        status = str(finding.status)
        record.severity, record.message = finding.severity, redact_text(finding.message)
        record.evidence, record.remediation, record.last_seen = redact_value(finding.evidence), finding.remediation, now
        record.status, record.clean_streak = status, 0
        kind = None
        if status == "open" and previous in (None, "resolved"):
            record.resolved_at = None
            kind = "new" if previous is None else "regressed"
        elif status == "open" and previous == "waived":
            kind = "waiver_expired"
        elif status == "open" and not record.alerted and pageable:
            kind = "new"  # opened while folded into an outage; the outage no longer speaks for it
        if kind is not None:
            record.alerted = pageable
            transitions.append(Transition(kind, record, paged=pageable))
        session.add(record)
    for fingerprint, record in stored.items():
        if fingerprint in seen or record.status not in ("open", "waived"):
            continue
        if covers(unobserved, record.resource) is not None:
            record.clean_streak = 0  # not seen is not clean: nothing resolves by a blind spot
        else:
            record.clean_streak += 1
            if record.clean_streak >= resolve_after:
                record.status, record.resolved_at = "resolved", now
                transitions.append(Transition("resolved", record, paged=record.alerted))
                record.alerted = False
        session.add(record)
    pairs = [(t, alert_for(t, now) if t.paged else None) for t in transitions]
    for _, alert in pairs:
        if alert is not None:
            session.add(alert)
    on_transitions(session, pairs, now)  # incidents open and resolve; silences hold alerts back
    return transitions


def _upsert(session: Session, scope: str, finding: Finding, now: datetime) -> tuple[FindingRecord, bool]:
    """Insert the finding unless it is stored already; return the stored row and whether this call inserted it.
    INSERT ... ON CONFLICT DO NOTHING: two writers of one new finding never raise, never duplicate."""
    values: dict[str, Any] = dict(
        scope=scope, fingerprint=finding.fingerprint, rule_id=finding.id, severity=str(finding.severity),
        resource=finding.resource, message=redact_text(finding.message), status=str(finding.status),
        remediation=finding.remediation, evidence=redact_value(finding.evidence), first_seen=now, last_seen=now,
        clean_streak=0, alerted=False,
    )
    dialect = session.get_bind().dialect.name
    module: Any = postgresql if dialect == "postgresql" else sqlite
    statement = module.insert(FindingRecord).values(**values).on_conflict_do_nothing(
        index_elements=["scope", "fingerprint"])
    inserted = session.execute(statement).rowcount == 1  # type: ignore[attr-defined]
    record = session.exec(select(FindingRecord).where(FindingRecord.scope == scope,
                                                      FindingRecord.fingerprint == finding.fingerprint)).one()
    return record, inserted


def alert_for(t: Transition, now: datetime) -> AlertRecord:
    r = t.record
    verb = {"new": "NEW", "resolved": "RESOLVED", "regressed": "REGRESSED", "waiver_expired": "WAIVER EXPIRED"}[t.kind]
    title = f"[keyguard] {verb} {r.severity.upper()} {r.rule_id} on {r.resource}"
    if t.kind == "resolved":
        body = f"{r.rule_id} no longer fires for {r.resource} (open since {r.first_seen:%Y-%m-%d %H:%M} UTC)."
    else:
        body = (
            f"{r.message}\n\nDo now: {r.remediation}\n"
            f"Playbook: keyguard incident show {r.rule_id}\n"
            f"Rule {r.rule_id} ({r.severity}) · resource {r.resource} · scope {r.scope} · "
            f"first seen {r.first_seen:%Y-%m-%d %H:%M:%S} UTC"
        )
    return AlertRecord(
        transition=t.kind, scope=r.scope, fingerprint=r.fingerprint, dedup_key=r.fingerprint, rule_id=r.rule_id,
        severity=r.severity,
        resource=r.resource, title=redact_text(title), body=redact_text(body), created_at=now,
    )
