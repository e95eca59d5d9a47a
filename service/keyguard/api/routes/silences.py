"""Silences and maintenance windows: matched alerts are recorded and shown, not sent (operators add and end them,
audited; anyone may read them)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from sqlmodel import col, select

from keyguard.api.deps import CheckServiceDep, ContextDep, OperatorDep, SessionDep, ViewerDep
from keyguard.api.schemas import SilenceIn, SilenceOut
from keyguard.incidents import lifecycle
from keyguard.store.models import Silence, as_utc

router = APIRouter(prefix="/api/silences", tags=["silences"])


def silence_out(silence: Silence, now_state: str) -> SilenceOut:
    values = silence.model_dump()
    for key in ("created_at", "starts_at", "ends_at", "ended_at"):
        if values[key] is not None:
            values[key] = as_utc(values[key])
    return SilenceOut.model_validate({**values, "state": now_state})


@router.get("")
def list_silences(_: ViewerDep, session: SessionDep, service: CheckServiceDep,
                  include_ended: bool = False, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[SilenceOut]:
    """Newest first: pending, active and (with include_ended) expired or ended ones, each with its state."""
    now = service.clock()
    rows = session.exec(select(Silence).order_by(col(Silence.pk).desc()).limit(limit)).all()
    out = [silence_out(s, lifecycle.silence_state(s, now)) for s in rows]
    return [s for s in out if include_ended or s.state in ("pending", "active")]


@router.post("", name="silence.add", status_code=201)
def add_silence(body: SilenceIn, operator: OperatorDep, service: CheckServiceDep, context: ContextDep) -> SilenceOut:
    now = service.clock()
    starts_at = as_utc(body.starts_at) if body.starts_at else now
    if (body.ends_at is None) == (body.duration_s is None):
        operator.failed("needs exactly one of ends_at and duration_s")
        raise HTTPException(status_code=422, detail="give exactly one of ends_at and duration_s: a silence always ends")
    ends_at = as_utc(body.ends_at) if body.ends_at else starts_at + timedelta(seconds=body.duration_s or 0)
    try:
        silence = lifecycle.add_silence(service.store, rule=body.rule, resource=body.resource, reason=body.reason,
                                        author=operator.actor, starts_at=starts_at, ends_at=ends_at, now=now,
                                        max_duration_s=context.max_silence_s)
    except lifecycle.IncidentError as exc:
        raise HTTPException(status_code=exc.status_code, detail=str(exc)) from None
    operator.ok(f"#{silence.pk} {silence.rule} on {silence.resource} until {as_utc(silence.ends_at):%Y-%m-%d %H:%M} "
                f"UTC: {silence.reason}")
    return silence_out(silence, lifecycle.silence_state(silence, now))


@router.delete("/{pk}", name="silence.end")
def end_silence(pk: int, operator: OperatorDep, service: CheckServiceDep) -> SilenceOut:
    """End it now: what it held back and is still open is sent at the next tick."""
    now = service.clock()
    try:
        silence, changed = lifecycle.end_silence(service.store, pk, operator.actor, now)
    except lifecycle.IncidentError as exc:
        raise HTTPException(status_code=exc.status_code, detail=str(exc)) from None
    operator.ok(f"#{pk} ended" if changed else f"#{pk} had already ended")
    if changed and service.alerts_queued is not None:
        service.alerts_queued()
    return silence_out(silence, lifecycle.silence_state(silence, now))
