"""Health: anyone may ask whether the service is ok; only a token holder sees which checks and problems."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from keyguard.api.deps import CheckServiceDep, OptionalPrincipalDep

router = APIRouter(tags=["health"])


@router.get("/health")
def health(service: CheckServiceDep, principal: OptionalPrincipalDep) -> dict[str, Any]:
    report = service.health()
    # Without a token: no scopes, resources, errors or counts, nothing that maps the deployment for a stranger.
    return report if principal is not None else {"status": report["status"]}
