"""What handlers ask for: the store session, the check service, and the caller (`ViewerDep`, `OperatorDep`).

Any valid token may read. An operator action gets an `OperatorAction` that is audited however the request ends; a
viewer's attempt at one is refused with 403 and audited as refused. Tests may override `get_context`."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from keyguard.api.access import Principal, Role, TokenRegistry
from keyguard.api.audit_log import OperatorAction
from keyguard.api.quota import TokenQuota
from keyguard.checks.scheduler import CheckService
from keyguard.store.db import session_scope


@dataclass
class ApiContext:
    """Everything the routes share; one per app, kept on `app.state.context`."""

    service: CheckService
    tokens: TokenRegistry
    run_quota: TokenQuota
    rules: list[dict[str, str]] = field(default_factory=list)  # the rule catalogue, read once per policy bundle
    max_silence_s: float = 7 * 86400.0
    containment: Any = None  # the ContainmentService, when the service has an inventory
    checks: Any = None  # the ChecksSettings, for a release's re-check


def get_context(request: Request) -> ApiContext:
    context: ApiContext = request.app.state.context
    return context


ContextDep = Annotated[ApiContext, Depends(get_context)]


def get_check_service(context: ContextDep) -> CheckService:
    return context.service


CheckServiceDep = Annotated[CheckService, Depends(get_check_service)]


def get_session(context: ContextDep) -> Iterator[Session]:
    with session_scope(context.service.store) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status_code=401, detail=detail, headers={"WWW-Authenticate": "Bearer"})


def optional_principal(request: Request, context: ContextDep) -> Principal | None:
    """The caller, or None when no token was sent; a token that was sent must be valid."""
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        raise _unauthorized("missing or wrong bearer token (Authorization: Bearer ...)")
    try:
        principal = context.tokens.authenticate(presented.strip())
    except SQLAlchemyError:
        raise HTTPException(status_code=503, detail="the store is unreachable, so the token cannot be checked; "
                                                    "the environment token still works") from None
    if principal is None:
        raise _unauthorized("missing or wrong bearer token (Authorization: Bearer ...), or the token was revoked")
    return principal


OptionalPrincipalDep = Annotated[Principal | None, Depends(optional_principal)]


def current_principal(principal: OptionalPrincipalDep) -> Principal:
    if principal is None:
        raise _unauthorized("missing or wrong bearer token (Authorization: Bearer ...)")
    return principal


ViewerDep = Annotated[Principal, Depends(current_principal)]


def operator_action(request: Request, principal: ViewerDep, context: ContextDep) -> Iterator[OperatorAction]:
    """The route's name is the action (`checks.run`), its resource the target; a viewer is refused and audited."""
    route = request.scope["route"]
    target = ",".join(str(v) for v in request.path_params.values()) or (route.tags[0] if route.tags else route.path)
    action = OperatorAction(context.service.store, principal.name, principal.role.value, route.name, target)
    if not principal.may_operate:
        action.refused(f"role {principal.role.value} may not {route.name}; it needs role {Role.operator.value}")
        raise HTTPException(status_code=403, detail=f"token {principal.name!r} has role {principal.role.value}; "
                                                    f"{route.name} needs an {Role.operator.value} token")
    try:
        yield action
    except HTTPException as exc:
        action.failed(f"HTTP {exc.status_code}: {exc.detail}")
        raise
    except Exception as exc:
        action.failed(f"internal error ({exc.__class__.__name__})")
        raise
    action.ok()


# scope="function": the action is audited before the response leaves, so whoever reads the log next sees it.
OperatorDep = Annotated[OperatorAction, Depends(operator_action, scope="function")]


def charge_run_quota(operator: OperatorDep, context: ContextDep) -> None:
    """At most `service.run_rate_per_minute` full check runs per token; the excess is refused and audited."""
    wait_s = context.run_quota.charge(operator.actor, time.monotonic())
    if wait_s is not None:
        limit = context.run_quota.limit
        operator.refused(f"rate limit: {limit} runs per minute per token; retry in {wait_s} s")
        raise HTTPException(status_code=429, headers={"Retry-After": str(wait_s)},
                            detail=f"token {operator.actor!r} ran checks {limit} times in the last minute "
                                   f"(service.run_rate_per_minute); retry in {wait_s} s")
