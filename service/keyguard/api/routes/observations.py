"""Observations: when each resource was last observed successfully, and why the last try failed."""

from __future__ import annotations

from fastapi import APIRouter

from keyguard.api import queries
from keyguard.api.deps import CheckServiceDep, SessionDep, ViewerDep
from keyguard.api.schemas import ObservationOut

router = APIRouter(prefix="/api/observations", tags=["observations"])


@router.get("")
def list_observations(_: ViewerDep, session: SessionDep, service: CheckServiceDep, scope: str | None = None,
                      unverified: bool | None = None) -> list[ObservationOut]:
    return queries.observations(session, service.clock(), scope, unverified)
