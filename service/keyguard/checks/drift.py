"""Drift: turn each check's findings into transitions (new, resolved, regressed) against what is stored.

Alerts fire on transitions only, so a finding that stays open is reported once, not every cycle."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, select

from keyguard.policy.models import Finding
from keyguard.redact import redact_text, redact_value
from keyguard.store.models import AlertRecord, FindingRecord


@dataclass(frozen=True)
class Transition:
    kind: str  # new | resolved | regressed | waiver_expired
    record: FindingRecord


def apply_findings(session: Session, scope: str, findings: list[Finding], now: datetime) -> list[Transition]:
    """Upsert this scope's findings, resolve the ones that vanished, and queue one alert per transition."""
    stored = {r.fingerprint: r for r in session.exec(select(FindingRecord).where(FindingRecord.scope == scope))}
    seen: set[str] = set()
    transitions: list[Transition] = []
    for finding in findings:
        if finding.fingerprint in seen:
            continue
        seen.add(finding.fingerprint)
        record = stored.get(finding.fingerprint)
        evidence = redact_value(finding.evidence)
        status = str(finding.status)
        if record is None:
            record = FindingRecord(
                scope=scope, fingerprint=finding.fingerprint, rule_id=finding.id, severity=finding.severity,
                resource=finding.resource, message=redact_text(finding.message), status=status,
                remediation=finding.remediation, evidence=evidence, first_seen=now, last_seen=now,
            )
            session.add(record)
            if status == "open":
                transitions.append(Transition("new", record))
            continue
        record.severity, record.message, record.evidence = finding.severity, redact_text(finding.message), evidence
        record.remediation, record.last_seen = finding.remediation, now
        previous, record.status = record.status, status
        if status == "open" and previous == "resolved":
            record.resolved_at = None
            transitions.append(Transition("regressed", record))
        elif status == "open" and previous == "waived":
            transitions.append(Transition("waiver_expired", record))
        session.add(record)
    for fingerprint, record in stored.items():
        if fingerprint not in seen and record.status in ("open", "waived"):
            record.status, record.resolved_at = "resolved", now
            session.add(record)
            transitions.append(Transition("resolved", record))
    for t in transitions:
        session.add(alert_for(t, now))
    return transitions


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
        transition=t.kind, scope=r.scope, fingerprint=r.fingerprint, rule_id=r.rule_id, severity=r.severity,
        resource=r.resource, title=redact_text(title), body=redact_text(body), created_at=now,
    )
