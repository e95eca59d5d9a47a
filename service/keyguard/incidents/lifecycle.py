"""Incidents and silences: what turns an alert into something people act on.

A paged new, regressed or waiver-expired finding of severity high or critical opens an incident (one active per
finding); its finding resolving resolves it. While nobody acknowledges an incident of the re-notify severity
(critical by default), it is re-notified every `renotify_s` and escalated to the next route tier every
`escalate_after_s`. A silence (maintenance window) matches rule and resource by glob from its start to its end:
alerts it matches are recorded and shown, not sent, and incidents under it are neither re-notified nor escalated.
When a silence ends, it says so, and what it held back that is still open is sent then.

Every change lands on the incident's timeline with who made it (keyguard, or the operator's token or CLI user)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING

from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from keyguard.errors import KeyguardError
from keyguard.policy.models import Severity
from keyguard.redact import redact_text
from keyguard.store.db import session_scope
from keyguard.store.models import AlertRecord, FindingRecord, Incident, IncidentEvent, Silence, as_utc

if TYPE_CHECKING:
    from keyguard.checks.transitions import Transition

log = logging.getLogger("keyguard.incidents")

KEYGUARD = "keyguard"
OPENS_INCIDENT = (Severity.critical, Severity.high)
ACTIVE = ("open", "acknowledged")
REASON_MAX = 500


class IncidentError(KeyguardError):
    """An incident or silence action that cannot be done as asked (unknown id, wrong state, bad matcher)."""

    def __init__(self, message: str, status_code: int = 409) -> None:
        super().__init__(message)
        self.status_code = status_code


@dataclass(frozen=True)
class EscalationPolicy:
    renotify_s: float = 300.0
    escalate_after_s: float = 900.0
    renotify_min_severity: Severity = Severity.critical


# -- silences -----------------------------------------------------------------------------------------------
def active_silences(session: Session, now: datetime) -> list[Silence]:
    rows = session.exec(select(Silence).where(col(Silence.ended_at).is_(None))).all()
    return [s for s in rows if as_utc(s.starts_at) <= now < as_utc(s.ends_at)]


def silence_for(silences: Iterable[Silence], rule_id: str, resource: str) -> Silence | None:
    """The first silence whose rule and resource globs both match (case-sensitive, as the ids are)."""
    for silence in silences:
        if fnmatchcase(rule_id, silence.rule) and fnmatchcase(resource, silence.resource):
            return silence
    return None


def add_silence(store: Engine, *, rule: str, resource: str, reason: str, author: str, ends_at: datetime,
                now: datetime, starts_at: datetime | None = None, max_duration_s: float = 7 * 86400) -> Silence:
    """A silence from `starts_at` (default now) to `ends_at`. It must name a rule or a resource (a silence of
    everything is refused), carry a reason, and end within `max_duration_s` of its start."""
    rule, resource, reason = rule.strip(), resource.strip(), redact_text(reason.strip())
    starts_at = as_utc(starts_at) if starts_at else now
    ends_at = as_utc(ends_at)
    if not rule or not resource:
        raise IncidentError("a silence needs both matchers: rule (e.g. KG-KEY-101 or KG-KEY-*) and resource "
                            "(e.g. binance/bot-exec or binance/*); use * for any", 422)
    if rule.strip("*") == "" and resource.strip("*") == "":
        raise IncidentError("a silence of every rule on every resource is refused: name a rule or a resource", 422)
    if not reason:
        raise IncidentError("a silence needs a reason (what is going on, who to ask)", 422)
    if len(reason) > REASON_MAX:
        raise IncidentError(f"the reason is {len(reason)} characters; at most {REASON_MAX}", 422)
    if ends_at <= starts_at:
        raise IncidentError(f"the silence ends ({ends_at:%Y-%m-%d %H:%M:%S} UTC) before it starts "
                            f"({starts_at:%Y-%m-%d %H:%M:%S} UTC)", 422)
    if ends_at <= now:
        raise IncidentError(f"the silence would already have ended ({ends_at:%Y-%m-%d %H:%M:%S} UTC)", 422)
    if (ends_at - starts_at).total_seconds() > max_duration_s:
        raise IncidentError(f"a silence may last at most {max_duration_s / 3600:g} h "
                            "(incidents.max_silence_s); add another when it ends", 422)
    with session_scope(store) as session:
        silence = Silence(rule=rule, resource=resource, reason=reason, author=author, created_at=now,
                          starts_at=starts_at, ends_at=ends_at)
        session.add(silence)
        session.flush()
        for incident in session.exec(select(Incident).where(col(Incident.status).in_(ACTIVE))).all():
            if silence_for([silence], incident.rule_id, incident.resource):
                add_event(session, incident, now, "silenced", author,
                       f"silence #{silence.pk} from {starts_at:%Y-%m-%d %H:%M} to {ends_at:%Y-%m-%d %H:%M} UTC: "
                       f"{reason}")
        session.refresh(silence)
        session.expunge(silence)
    log.warning("silence #%s by %s: %s on %s until %s (%s)", silence.pk, author, rule, resource,
                f"{ends_at:%Y-%m-%d %H:%M:%S} UTC", reason)
    return silence


def end_silence(store: Engine, pk: int, actor: str, now: datetime) -> tuple[Silence, bool]:
    """End a silence now (the next tick sends what it held back and is still open). Returns (silence, changed)."""
    with session_scope(store) as session:
        silence = session.get(Silence, pk)
        if silence is None:
            raise IncidentError(f"no silence #{pk}", 404)
        changed = silence.ended_at is None and as_utc(silence.ends_at) > now
        if changed:
            silence.ends_at = now  # the tick ends it and sends what it held back, as for an expiry
            silence.ended_by = actor
            session.add(silence)
            session.flush()
        session.refresh(silence)
        session.expunge(silence)
    return silence, changed


def silence_state(silence: Silence, now: datetime) -> str:
    if silence.ended_at is not None or as_utc(silence.ends_at) <= now:
        return "ended" if silence.ended_by not in (None, KEYGUARD) else "expired"
    return "active" if as_utc(silence.starts_at) <= now else "pending"


# -- incidents from transitions ---------------------------------------------------------------------------------
def on_transitions(session: Session, pairs: Sequence[tuple[Transition, AlertRecord | None]], now: datetime) -> None:
    """Open and resolve incidents for this check's transitions, and mark the alerts a silence holds back."""
    if not pairs:
        return
    silences = active_silences(session, now)
    for transition, alert in pairs:
        record = transition.record
        silence = silence_for(silences, record.rule_id, record.resource)
        if alert is not None and silence is not None:
            alert.silenced_by = silence.pk
        incident = _active_incident(session, record.scope, record.fingerprint)
        opens = (transition.kind in ("new", "regressed", "waiver_expired") and transition.paged
                 and Severity(record.severity) in OPENS_INCIDENT)
        if opens and incident is None:
            incident = Incident(scope=record.scope, fingerprint=record.fingerprint, rule_id=record.rule_id,
                                severity=record.severity, resource=record.resource,
                                title=redact_text(f"{record.severity.upper()} {record.rule_id} on {record.resource}"),
                                status="open", opened_at=now, tier=0, last_notified_at=now, notifications=1)
            session.add(incident)
            session.flush()
            detail = f"{transition.kind}: {redact_text(record.message)}"
            if silence is not None:
                detail += f" (silenced by #{silence.pk} until {as_utc(silence.ends_at):%Y-%m-%d %H:%M} UTC: not sent)"
            add_event(session, incident, now, "opened", KEYGUARD, detail)
            if alert is not None:
                alert.body += f"\nIncident #{incident.pk}; acknowledge: keyguard incident ack {incident.pk}"
        elif transition.kind == "resolved" and incident is not None:
            incident.status, incident.resolved_at, incident.resolved_by = "resolved", now, KEYGUARD
            session.add(incident)
            add_event(session, incident, now, "finding_resolved", KEYGUARD,
                   f"{record.rule_id} no longer fires for {record.resource}; incident resolved")
        if alert is not None and incident is not None:
            alert.incident_pk, alert.tier = incident.pk, incident.tier


def _active_incident(session: Session, scope: str, fingerprint: str) -> Incident | None:
    return session.exec(select(Incident).where(Incident.scope == scope, Incident.fingerprint == fingerprint,
                                               col(Incident.status).in_(ACTIVE))).first()


def add_event(session: Session, incident: Incident, now: datetime, kind: str, actor: str, detail: str) -> None:
    session.add(IncidentEvent(incident_pk=incident.pk or 0, at=now, kind=kind, actor=actor,
                              detail=redact_text(detail)[:1000]))


# -- operator actions -------------------------------------------------------------------------------------------
Clock = datetime | Callable[[], datetime]


def _at(now: Clock) -> datetime:
    return now() if callable(now) else now


def acknowledge(store: Engine, pk: int, actor: str, now: Clock, note: str = "") -> tuple[Incident, bool]:
    """Stop re-notification and escalation: someone is on it. Returns (incident, changed). With a clock, the time is
    read once the incident is locked, so a re-notification the incident clock sent first is also earlier on the
    timeline."""
    with session_scope(store) as session:
        incident = _locked(session, pk)
        now = _at(now)
        changed = incident.status == "open"
        if changed:
            incident.status, incident.acknowledged_at, incident.acknowledged_by = "acknowledged", now, actor
            session.add(incident)
            add_event(session, incident, now, "acknowledged", actor, note)
            _queue(session, incident, now, "acknowledged", f"acknowledged by {actor}" + (f": {note}" if note else ""))
        session.flush()
        session.refresh(incident)
        session.expunge(incident)
    return incident, changed


def resolve(store: Engine, pk: int, actor: str, now: Clock, note: str = "",
            force: bool = False) -> tuple[Incident, bool]:
    """Close the incident. While its finding is still open the key may still be dangerous, so that needs `force`
    (and the timeline and the receivers say the finding is still open). Returns (incident, changed)."""
    with session_scope(store) as session:
        incident = _locked(session, pk)
        now = _at(now)
        if incident.status == "resolved":
            session.expunge(incident)
            return incident, False
        finding = session.exec(select(FindingRecord).where(FindingRecord.scope == incident.scope,
                                                           FindingRecord.fingerprint == incident.fingerprint)).first()
        still_open = finding is not None and finding.status == "open"
        if finding is not None and still_open and not force:
            raise IncidentError(
                f"incident #{pk}: {incident.rule_id} still fires for {incident.resource} (last seen "
                f"{as_utc(finding.last_seen):%Y-%m-%d %H:%M:%S} UTC); it resolves itself once the key is observed "
                "clean. Acknowledge it to stop the re-notification, silence it with a reason, or resolve with "
                "force to close it anyway", 409)
        incident.status, incident.resolved_at, incident.resolved_by = "resolved", now, actor
        session.add(incident)
        detail = note + (" (finding still open: closed by force)" if still_open else "")
        add_event(session, incident, now, "resolved", actor, detail.strip())
        _queue(session, incident, now, "resolved", f"incident resolved by {actor}" +
               ("; the finding is still open" if still_open else "") + (f": {note}" if note else ""))
        session.flush()
        session.refresh(incident)
        session.expunge(incident)
    return incident, True


def _locked(session: Session, pk: int) -> Incident:
    """The incident, locked for this transaction: FOR UPDATE on PostgreSQL; on SQLite a no-op write takes the
    database's write lock, so the incident clock's pass and this action happen one after the other."""
    query = select(Incident).where(Incident.pk == pk)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    else:
        session.execute(update(Incident).where(col(Incident.pk) == pk).values(status=Incident.status))
    incident = session.exec(query).first()
    if incident is None:
        raise IncidentError(f"no incident #{pk}", 404)
    return incident


# -- the clock: re-notify, escalate, end silences ---------------------------------------------------------------
def tick(session: Session, now: datetime, policy: EscalationPolicy, tiers: Sequence[int]) -> list[AlertRecord]:
    """One pass of the incident clock; returns the alerts it queued. Rows are claimed FOR UPDATE SKIP LOCKED on
    PostgreSQL, so replicas ticking together notify once."""
    locking = session.get_bind().dialect.name == "postgresql"
    queued: list[AlertRecord] = []
    ended = select(Silence).where(col(Silence.ended_at).is_(None), col(Silence.ends_at) <= now)
    if locking:
        ended = ended.with_for_update(skip_locked=True)
    for silence in session.exec(ended).all():
        queued += _end(session, silence, now)
    silences = active_silences(session, now)
    due = select(Incident).where(Incident.status == "open")
    if locking:
        due = due.with_for_update(skip_locked=True)
    for incident in session.exec(due).all():
        if Severity(incident.severity).rank < policy.renotify_min_severity.rank:
            continue
        if silence_for(silences, incident.rule_id, incident.resource) is not None:
            continue  # the silence holds re-notification and escalation too
        age_s = (now - as_utc(incident.opened_at)).total_seconds()
        higher = sorted(t for t in tiers if t > incident.tier)
        escalated = sum(1 for t in tiers if min(tiers, default=0) < t <= incident.tier)
        if higher and age_s >= policy.escalate_after_s * (escalated + 1):
            kind, tier = "escalated", higher[0]
        elif (now - as_utc(incident.last_notified_at)).total_seconds() >= policy.renotify_s:
            kind, tier = "renotify", incident.tier
        else:
            continue
        # Only while it is still open: an acknowledgement committed since this pass read it wins (SQLite has no
        # row locks; on PostgreSQL the row is locked already).
        guarded = update(Incident).where(col(Incident.pk) == incident.pk, col(Incident.status) == "open")
        claimed = session.execute(guarded.values(tier=tier, last_notified_at=now,
                                                 notifications=incident.notifications + 1))
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            continue
        session.refresh(incident)
        if kind == "escalated":
            add_event(session, incident, now, "escalated", KEYGUARD,
                   f"unacknowledged for {age_s / 60:.0f} min: escalated to route tier {tier}")
            queued.append(_queue(session, incident, now, "escalated",
                                 f"unacknowledged for {age_s / 60:.0f} min; escalated to tier {tier}"))
        else:
            add_event(session, incident, now, "renotified", KEYGUARD,
                   f"unacknowledged for {age_s / 60:.0f} min (notification {incident.notifications})")
            queued.append(_queue(session, incident, now, "renotify",
                                 f"still unacknowledged after {age_s / 60:.0f} min"))
    return queued


def _end(session: Session, silence: Silence, now: datetime) -> list[AlertRecord]:
    """The silence is over: say so, and send what it held back that is still open (unless another silence
    still covers it)."""
    silence.ended_at = now
    silence.ended_by = silence.ended_by or KEYGUARD
    session.add(silence)
    how = "expired" if silence.ended_by == KEYGUARD else f"ended by {silence.ended_by}"
    log.warning("silence #%s %s (%s on %s): what it held back and is still open is sent now", silence.pk, how,
                silence.rule, silence.resource)
    others = [s for s in active_silences(session, now) if s.pk != silence.pk]
    held = set(session.exec(select(AlertRecord.scope, AlertRecord.fingerprint)
                            .where(AlertRecord.silenced_by == silence.pk)).all())
    queued: list[AlertRecord] = []
    for scope, fingerprint in sorted(held):
        finding = session.exec(select(FindingRecord).where(FindingRecord.scope == scope,
                                                           FindingRecord.fingerprint == fingerprint)).first()
        if finding is None or finding.status != "open" or silence_for(others, finding.rule_id, finding.resource):
            continue
        incident = _active_incident(session, scope, fingerprint)
        alert = _alert(finding, incident, now, "silence_expired",
                       f"silence #{silence.pk} {how} ({silence.reason}); this is still open")
        session.add(alert)
        queued.append(alert)
        if incident is not None:
            incident.last_notified_at = now
            session.add(incident)
    for incident in session.exec(select(Incident).where(col(Incident.status).in_(ACTIVE))).all():
        if silence_for([silence], incident.rule_id, incident.resource):
            add_event(session, incident, now, "silence_expired", KEYGUARD, f"silence #{silence.pk} {how}")
    return queued


def _queue(session: Session, incident: Incident, now: datetime, transition: str, note: str) -> AlertRecord:
    finding = session.exec(select(FindingRecord).where(FindingRecord.scope == incident.scope,
                                                       FindingRecord.fingerprint == incident.fingerprint)).first()
    alert = _alert(finding, incident, now, transition, note)
    session.add(alert)
    return alert


VERBS = {"renotify": "STILL UNACKNOWLEDGED", "escalated": "ESCALATED", "acknowledged": "ACKNOWLEDGED",
         "resolved": "RESOLVED", "silence_expired": "SILENCE ENDED, STILL OPEN"}


def _alert(finding: FindingRecord | None, incident: Incident | None, now: datetime, transition: str,
           note: str) -> AlertRecord:
    source = finding if finding is not None else incident
    assert source is not None
    label = f" (incident #{incident.pk})" if incident is not None else ""
    title = f"[keyguard] {VERBS[transition]} {source.severity.upper()} {source.rule_id} on {source.resource}{label}"
    body = note[:1].upper() + note[1:] + "."
    if finding is not None and transition not in ("acknowledged", "resolved"):
        body += f"\n\n{finding.message}\n\nDo now: {finding.remediation}\nPlaybook: keyguard incident show " \
                f"{finding.rule_id}"
    if incident is not None:
        body += f"\nAcknowledge: keyguard incident ack {incident.pk}"
    return AlertRecord(transition=transition, scope=source.scope, fingerprint=source.fingerprint,
                       dedup_key=source.fingerprint, rule_id=source.rule_id, severity=source.severity,
                       resource=source.resource, title=redact_text(title), body=redact_text(body), created_at=now,
                       tier=incident.tier if incident is not None else 0,
                       incident_pk=incident.pk if incident is not None else None)


def timeline(session: Session, pk: int) -> tuple[Incident, list[IncidentEvent], list[AlertRecord]]:
    incident = session.get(Incident, pk)
    if incident is None:
        raise IncidentError(f"no incident #{pk}", 404)
    events = list(session.exec(select(IncidentEvent).where(IncidentEvent.incident_pk == pk)
                               .order_by(col(IncidentEvent.at), col(IncidentEvent.pk))).all())
    alerts = list(session.exec(select(AlertRecord).where(AlertRecord.incident_pk == pk)
                               .order_by(col(AlertRecord.pk))).all())
    return incident, events, alerts

