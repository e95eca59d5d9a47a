"""Check runs: the recent ones, and an operator's "run every check now" (rate limited per token)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from keyguard.api import queries
from keyguard.api.deps import CheckServiceDep, OperatorDep, SessionDep, ViewerDep, charge_run_quota
from keyguard.api.schemas import CheckOut, CheckRunOut

router = APIRouter(prefix="/api/checks", tags=["checks"])


@router.get("")
def list_checks(_: ViewerDep, session: SessionDep,
                limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> list[CheckOut]:
    return queries.recent_checks(session, limit)


@router.post("/run", name="checks.run", dependencies=[Depends(charge_run_quota)])
def run_checks(operator: OperatorDep, service: CheckServiceDep) -> list[CheckRunOut]:
    results = service.run_once()
    failed = [r.scope for r in results if not r.ok]
    operator.ok(f"ran {', '.join(r.scope for r in results)}" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return [CheckRunOut(scope=r.scope, ok=r.ok, findings=len(r.findings), transitions=r.transitions,
                        unverified=r.unverified, error=r.error) for r in results]
