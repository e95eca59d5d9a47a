"""The reads behind the GET endpoints, so handlers stay thin: each takes a session and returns response models."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlmodel import Session, col, select

from keyguard.api.schemas import AlertOut, CheckOut, DeliveryOut, FindingOut, ObservationOut
from keyguard.incidents.lifecycle import active_silences, silence_for
from keyguard.policy.models import Severity
from keyguard.redact import redact_value
from keyguard.store.models import (
    AlertDelivery,
    AlertRecord,
    CheckRun,
    FindingRecord,
    ObservationRecord,
    Silence,
    as_utc,
)


def _finding_out(record: FindingRecord, silences: list[Silence]) -> FindingOut:
    silence = silence_for(silences, record.rule_id, record.resource) if record.status != "resolved" else None
    return FindingOut.model_validate({**redact_value(record.model_dump()),
                                      "silenced_by": silence.pk if silence else None})


def findings(session: Session, status: str | None, severity: Severity | None, scope: str | None) -> list[FindingOut]:
    """Most severe first; `severity` is a floor. A finding an active silence matches says which."""
    query = select(FindingRecord)
    if status:
        query = query.where(FindingRecord.status == status)
    if scope:
        query = query.where(FindingRecord.scope == scope)
    rows = list(session.exec(query).all())
    if severity is not None:
        rows = [r for r in rows if Severity(r.severity).rank >= severity.rank]
    rows.sort(key=lambda r: (-Severity(r.severity).rank, r.rule_id, r.resource))
    silences = active_silences(session, datetime.now(UTC))
    return [_finding_out(r, silences) for r in rows]


def findings_with_fingerprint(session: Session, fingerprint: str) -> list[FindingOut]:
    rows = session.exec(select(FindingRecord).where(FindingRecord.fingerprint == fingerprint)).all()
    silences = active_silences(session, datetime.now(UTC))
    return [_finding_out(r, silences) for r in rows]


def recent_checks(session: Session, limit: int) -> list[CheckOut]:
    rows = session.exec(select(CheckRun).order_by(col(CheckRun.pk).desc()).limit(limit)).all()
    return [CheckOut.model_validate(r.model_dump()) for r in rows]


def observations(session: Session, now: datetime, scope: str | None, unverified: bool | None) -> list[ObservationOut]:
    query = select(ObservationRecord)
    if scope:
        query = query.where(ObservationRecord.scope == scope)
    rows = session.exec(query.order_by(col(ObservationRecord.scope), col(ObservationRecord.resource))).all()
    out = []
    for r in rows:
        last_ok = as_utc(r.last_ok_at) if r.last_ok_at else None
        item = ObservationOut(
            scope=r.scope, resource=r.resource, last_ok_at=last_ok, last_attempt_at=as_utc(r.last_attempt_at),
            age_s=round((now - last_ok).total_seconds(), 1) if last_ok else None,
            unverified=r.last_error is not None, last_error=r.last_error)
        if unverified is None or item.unverified == unverified:
            out.append(item)
    return out


def recent_alerts(session: Session, limit: int, undelivered: bool = False) -> list[AlertOut]:
    query = select(AlertRecord)
    if undelivered:
        query = query.where(col(AlertRecord.delivered_at).is_(None), col(AlertRecord.silenced_by).is_(None))
    rows = session.exec(query.order_by(col(AlertRecord.pk).desc()).limit(limit)).all()
    deliveries: dict[int, list[DeliveryOut]] = {}
    if rows:
        for d in session.exec(select(AlertDelivery).where(col(AlertDelivery.alert_pk).in_([r.pk for r in rows]))
                              .order_by(col(AlertDelivery.pk))):
            deliveries.setdefault(d.alert_pk, []).append(DeliveryOut.model_validate(d.model_dump()))
    return [AlertOut.model_validate({**r.model_dump(), "routes": deliveries.get(r.pk or 0, [])}) for r in rows]
