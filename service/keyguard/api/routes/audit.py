"""Audit: every operator action and refused attempt, newest first; any token may read it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from keyguard.api.audit_log import AuditResult, audit_entries
from keyguard.api.deps import SessionDep, ViewerDep
from keyguard.api.schemas import AuditOut

router = APIRouter(prefix="/api/audit", tags=["audit"])


@router.get("")
def list_audit(
    _: ViewerDep,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    actor: str | None = None,
    action: str | None = None,
    result: AuditResult | None = None,
) -> list[AuditOut]:
    return [AuditOut.model_validate(e.model_dump()) for e in audit_entries(session, limit, actor, action, result)]
