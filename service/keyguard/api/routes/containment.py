"""Containment: every run (contain, release) with its steps; operators contain and release keys (audited)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field
from sqlmodel import col, select

from keyguard.api.deps import ContextDep, OperatorDep, SessionDep, ViewerDep
from keyguard.errors import KeyguardError
from keyguard.store.models import ContainmentRun, ContainmentStep, as_utc

router = APIRouter(prefix="/api/containment", tags=["containment"])


class StepOut(BaseModel):
    action: str
    target: str
    started_at: datetime
    finished_at: datetime
    result: str = Field(description="done | failed | not_available | planned")
    detail: str


class RunOut(BaseModel):
    pk: int
    resource: str
    action: str = Field(description="contain | release")
    trigger: str
    actor: str
    dry_run: bool
    incident_pk: int | None
    started_at: datetime
    finished_at: datetime | None
    result: str = Field(description="running | done | partial | failed | refused | planned")
    steps: list[StepOut]


class ContainIn(BaseModel):
    model_config = {"extra": "forbid"}

    reason: str = Field(min_length=1, max_length=300)
    dry_run: bool = False


class ReleaseIn(BaseModel):
    model_config = {"extra": "forbid"}

    reason: str = Field(min_length=1, max_length=300, description="who checked what")


def _runs(session: Any, query: Any) -> list[RunOut]:
    runs = session.exec(query).all()
    steps: dict[int, list[StepOut]] = {}
    if runs:
        for step in session.exec(select(ContainmentStep).where(col(ContainmentStep.run_pk).in_([r.pk for r in runs]))
                                 .order_by(col(ContainmentStep.pk))):
            steps.setdefault(step.run_pk, []).append(StepOut.model_validate(
                {**step.model_dump(), "started_at": as_utc(step.started_at), "finished_at": as_utc(step.finished_at)}))
    return [RunOut.model_validate({**r.model_dump(exclude={"undo", "evidence"}), "steps": steps.get(r.pk or 0, [])})
            for r in runs]


@router.get("")
def list_runs(_: ViewerDep, session: SessionDep, resource: str | None = None,
              limit: Annotated[int, Query(ge=1, le=500)] = 50) -> list[RunOut]:
    """Newest first, each with its steps."""
    query = select(ContainmentRun)
    if resource:
        query = query.where(ContainmentRun.resource == resource)
    return _runs(session, query.order_by(col(ContainmentRun.pk).desc()).limit(limit))


def _service(context: Any) -> Any:
    if context.containment is None:
        raise HTTPException(status_code=409, detail="this service has no inventory (inventory: keyguard.yaml), so "
                                                    "no key to contain")
    return context.containment


@router.post("/{key}/contain", name="incident.contain")
def contain(key: str, body: ContainIn, operator: OperatorDep, context: ContextDep, session: SessionDep) -> RunOut:
    """Kill switch, evidence, cancel orders, cut the key, block its secret: each step read back, or failed."""
    service = _service(context)
    try:
        resolved = service.key_named(key)
        outcome = service.contain(resolved, trigger=f"{body.reason} ({operator.actor})", actor=operator.actor,
                                  dry_run=body.dry_run, incident_pk=service.latest_incident(resolved.resource))
    except KeyguardError as exc:
        raise HTTPException(status_code=404 if "no key" in str(exc) else 422, detail=str(exc)) from None
    (operator.ok if outcome.result in ("done", "planned") else operator.failed)(
        f"{outcome.result}: " + "; ".join(f"{s.action} {s.result}" for s in outcome.steps))
    return _runs(session, select(ContainmentRun).where(ContainmentRun.pk == outcome.run_pk))[0]


@router.post("/{key}/release", name="incident.release")
def release(key: str, body: ReleaseIn, operator: OperatorDep, context: ContextDep, session: SessionDep) -> RunOut:
    """Re-check the key at the exchange and lift the containment; refused (409) while it is still unsafe."""
    from keyguard.incidents.containment import key_recheck

    service = _service(context)
    try:
        outcome = service.release(key, reason=body.reason, actor=operator.actor,
                                  recheck=key_recheck(context.service.engine, service.store, service.inventory_path,
                                                      context.checks))
    except KeyguardError as exc:
        raise HTTPException(status_code=404 if "no key" in str(exc) else 409, detail=str(exc)) from None
    if outcome.result == "refused":
        operator.refused(outcome.detail)
        raise HTTPException(status_code=409, detail=f"release refused: {outcome.detail}")
    (operator.ok if outcome.result == "done" else operator.failed)(f"{outcome.result}: {body.reason}")
    return _runs(session, select(ContainmentRun).where(ContainmentRun.pk == outcome.run_pk))[0]
