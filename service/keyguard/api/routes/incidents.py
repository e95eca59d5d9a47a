"""Incidents: list them, read one with its timeline, acknowledge and resolve them (operators, audited)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from sqlmodel import col, select

from keyguard.api.deps import CheckServiceDep, OperatorDep, SessionDep, ViewerDep
from keyguard.api.schemas import (
    IncidentActionIn,
    IncidentActionOut,
    IncidentDetailOut,
    IncidentOut,
    TimelineEntry,
)
from keyguard.incidents import lifecycle
from keyguard.store.models import AlertDelivery, ContainmentRun, DeliveryAttempt, Incident, Silence, as_utc

router = APIRouter(prefix="/api/incidents", tags=["incidents"])


def incident_out(incident: Incident, silenced_by: int | None = None) -> IncidentOut:
    return IncidentOut.model_validate({**incident.model_dump(), "silenced_by": silenced_by})


@router.get("")
def list_incidents(
    _: ViewerDep, session: SessionDep,
    status: Annotated[str | None, Query(pattern="^(open|acknowledged|resolved|active)$")] = "active",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[IncidentOut]:
    """Newest first; `active` (the default) is open and acknowledged."""
    query = select(Incident)
    if status == "active":
        query = query.where(col(Incident.status).in_(lifecycle.ACTIVE))
    elif status:
        query = query.where(Incident.status == status)
    silences = lifecycle.active_silences(session, datetime.now(UTC))
    rows = session.exec(query.order_by(col(Incident.pk).desc()).limit(limit)).all()
    return [incident_out(i, _silence_pk(silences, i)) for i in rows]


def _silence_pk(silences: list[Silence], incident: Incident) -> int | None:
    if incident.status == "resolved":
        return None
    silence = lifecycle.silence_for(silences, incident.rule_id, incident.resource)
    return silence.pk if silence else None


@router.get("/{pk}")
def get_incident(pk: int, _: ViewerDep, session: SessionDep) -> IncidentDetailOut:
    """The incident and its timeline: every event, and every attempt to deliver its alerts on every route."""
    try:
        incident, events, alerts = lifecycle.timeline(session, pk)
    except lifecycle.IncidentError as exc:
        raise HTTPException(status_code=exc.status_code, detail=str(exc)) from None
    entries = [TimelineEntry(at=as_utc(e.at), kind=e.kind, actor=e.actor, detail=e.detail) for e in events]
    by_alert = {a.pk: a for a in alerts}
    if by_alert:
        rows = session.exec(select(AlertDelivery, DeliveryAttempt)
                            .join(DeliveryAttempt, col(DeliveryAttempt.delivery_pk) == col(AlertDelivery.pk))
                            .where(col(AlertDelivery.alert_pk).in_(list(by_alert)))).all()
        for delivery, attempt in rows:
            alert = by_alert[delivery.alert_pk]
            entries.append(TimelineEntry(at=as_utc(attempt.at), kind="delivered" if attempt.ok else "not_delivered",
                                         actor=f"route:{delivery.route}",
                                         detail=f"{alert.transition}: {attempt.detail}"))
        for alert in alerts:
            if alert.silenced_by is not None:
                entries.append(TimelineEntry(at=as_utc(alert.created_at), kind="held", actor="keyguard",
                                             detail=f"{alert.transition}: held back by silence #{alert.silenced_by}"))
    entries.sort(key=lambda e: e.at)
    silences = lifecycle.active_silences(session, datetime.now(UTC))
    return IncidentDetailOut.model_validate({**incident_out(incident, _silence_pk(silences, incident)).model_dump(),
                                             "timeline": entries})


@router.get("/{pk}/evidence")
def get_evidence(pk: int, _: ViewerDep, session: SessionDep) -> dict[str, Any]:
    """The evidence pack its key's containment read at the exchange (the newest, if contained more than once)."""
    run = session.exec(select(ContainmentRun).where(ContainmentRun.incident_pk == pk,
                                                    col(ContainmentRun.evidence).is_not(None))
                       .order_by(col(ContainmentRun.pk).desc())).first()
    if run is None:
        raise HTTPException(status_code=404, detail=f"incident #{pk} has no evidence pack")
    return dict(run.evidence or {})


def _act(action: str, pk: int, body: IncidentActionIn, operator: OperatorDep,
         service: CheckServiceDep) -> IncidentActionOut:
    try:
        if action == "ack":
            incident, changed = lifecycle.acknowledge(service.store, pk, operator.actor, service.clock, body.note)
        else:
            incident, changed = lifecycle.resolve(service.store, pk, operator.actor, service.clock, body.note,
                                                  body.force)
    except lifecycle.IncidentError as exc:
        raise HTTPException(status_code=exc.status_code, detail=str(exc)) from None
    if changed and service.alerts_queued is not None:
        service.alerts_queued()
    operator.ok(f"{incident.rule_id} on {incident.resource}: {incident.status}" + ("" if changed else " already")
                + (" (forced)" if body.force and changed else ""))
    return IncidentActionOut(changed=changed, incident=incident_out(incident))


@router.post("/{pk}/ack", name="incident.ack")
def acknowledge(pk: int, operator: OperatorDep, service: CheckServiceDep,
                body: IncidentActionIn | None = None) -> IncidentActionOut:
    """Someone is on it: re-notification and escalation stop; the routes hear who acknowledged."""
    return _act("ack", pk, body or IncidentActionIn(), operator, service)


@router.post("/{pk}/resolve", name="incident.resolve")
def resolve(pk: int, operator: OperatorDep, service: CheckServiceDep,
            body: IncidentActionIn | None = None) -> IncidentActionOut:
    """Close it. Refused (409) while its finding still fires, unless `force`."""
    return _act("resolve", pk, body or IncidentActionIn(), operator, service)
