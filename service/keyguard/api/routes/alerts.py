"""Alerts: the outbox of transitions, newest first, with their delivery state."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from keyguard.api import queries
from keyguard.api.deps import SessionDep, ViewerDep
from keyguard.api.schemas import AlertOut

router = APIRouter(prefix="/api/alerts", tags=["alerts"])


@router.get("")
def list_alerts(_: ViewerDep, session: SessionDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                undelivered: bool = False) -> list[AlertOut]:
    """Newest first, each with its per-route deliveries; `undelivered=true` lists what is still owed."""
    return queries.recent_alerts(session, limit, undelivered)
