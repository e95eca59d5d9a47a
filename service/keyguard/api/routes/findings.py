"""Findings: what the rules found, per (scope, fingerprint)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from keyguard.api import queries
from keyguard.api.deps import SessionDep, ViewerDep
from keyguard.api.schemas import FindingOut
from keyguard.policy.models import Severity

router = APIRouter(prefix="/api/findings", tags=["findings"])


@router.get("")
def list_findings(
    _: ViewerDep,
    session: SessionDep,
    status: Annotated[str | None, Query(pattern="^(open|resolved|waived)$")] = "open",
    severity: Severity | None = None,
    scope: str | None = None,
) -> list[FindingOut]:
    return queries.findings(session, status, severity, scope)


@router.get("/{fingerprint}")
def get_finding(fingerprint: str, _: ViewerDep, session: SessionDep) -> list[FindingOut]:
    found = queries.findings_with_fingerprint(session, fingerprint)
    if not found:
        raise HTTPException(status_code=404, detail=f"no finding with fingerprint {fingerprint!r}")
    return found
