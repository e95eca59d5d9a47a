"""FastAPI app factory. Routers stay thin: validate, call one service function, return a model."""

from __future__ import annotations

import hmac
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlmodel import select

from keyguard.checks.scheduler import CheckService, as_utc
from keyguard.errors import ConfigError, PolicyError
from keyguard.incidents.playbooks import Playbook, playbook_for
from keyguard.policy.catalogue import load_rules
from keyguard.policy.models import Severity
from keyguard.redact import redact_value
from keyguard.store.db import session_scope
from keyguard.store.models import AlertRecord, CheckRun, FindingRecord, ObservationRecord


class FindingOut(BaseModel):
    fingerprint: str
    scope: str
    rule_id: str
    severity: str
    resource: str
    message: str
    remediation: str
    evidence: dict[str, Any]
    status: str
    first_seen: datetime
    last_seen: datetime
    resolved_at: datetime | None


class CheckOut(BaseModel):
    scope: str
    ok: bool
    findings: int
    error: str | None
    started_at: datetime
    finished_at: datetime | None
    runner: str | None


class ObservationOut(BaseModel):
    """When a resource (a key, a document) was last observed successfully; unverified while last_error is set."""

    scope: str
    resource: str
    last_ok_at: datetime | None
    last_attempt_at: datetime
    age_s: float | None = Field(description="seconds since the last successful observation; null: never observed")
    unverified: bool
    last_error: str | None


class AlertOut(BaseModel):
    transition: str
    rule_id: str
    severity: str
    resource: str
    title: str
    created_at: datetime
    delivered_at: datetime | None
    attempts: int
    last_error: str | None


def create_app(service: CheckService, api_token: str) -> FastAPI:
    if len(api_token) < 16:
        raise ValueError("the API token must be at least 16 characters")
    app = FastAPI(title="Keyguard", version="0.1.0")
    rules_cache: list[dict[str, str]] = []

    def require_token(request: Request) -> None:
        header = request.headers.get("authorization", "")
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(presented.encode(), api_token.encode()):
            raise HTTPException(status_code=401, detail="missing or wrong bearer token (Authorization: Bearer ...)")

    auth = [Depends(require_token)]

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        # Never echo internals (which may hold secrets) to the caller.
        return JSONResponse(status_code=500, content={"detail": f"internal error ({exc.__class__.__name__})"})

    @app.get("/health")
    def health() -> dict[str, Any]:
        return service.health()

    @app.get("/api/findings", dependencies=auth)
    def list_findings(
        status: Annotated[str | None, Query(pattern="^(open|resolved|waived)$")] = "open",
        severity: Severity | None = None,
        scope: str | None = None,
    ) -> list[FindingOut]:
        with session_scope(service.store) as session:
            query = select(FindingRecord)
            if status:
                query = query.where(FindingRecord.status == status)
            if scope:
                query = query.where(FindingRecord.scope == scope)
            rows = session.exec(query).all()
        if severity is not None:
            rows = [r for r in rows if Severity(r.severity).rank >= severity.rank]
        rows = sorted(rows, key=lambda r: (-Severity(r.severity).rank, r.rule_id, r.resource))
        return [FindingOut.model_validate(redact_value(r.model_dump())) for r in rows]

    @app.get("/api/findings/{fingerprint}", dependencies=auth)
    def get_finding(fingerprint: str) -> list[FindingOut]:
        with session_scope(service.store) as session:
            rows = session.exec(select(FindingRecord).where(FindingRecord.fingerprint == fingerprint)).all()
        if not rows:
            raise HTTPException(status_code=404, detail=f"no finding with fingerprint {fingerprint!r}")
        return [FindingOut.model_validate(redact_value(r.model_dump())) for r in rows]

    @app.get("/api/checks", dependencies=auth)
    def list_checks(limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> list[CheckOut]:
        with session_scope(service.store) as session:
            rows = session.exec(select(CheckRun).order_by(CheckRun.pk.desc()).limit(limit)).all()  # type: ignore[union-attr]
        return [CheckOut.model_validate(r.model_dump()) for r in rows]

    @app.get("/api/observations", dependencies=auth)
    def list_observations(scope: str | None = None, unverified: bool | None = None) -> list[ObservationOut]:
        now = service.clock()
        with session_scope(service.store) as session:
            query = select(ObservationRecord)
            if scope:
                query = query.where(ObservationRecord.scope == scope)
            rows = session.exec(query.order_by(ObservationRecord.scope, ObservationRecord.resource)).all()  # type: ignore[arg-type]
        out = []
        for r in rows:
            last_ok = as_utc(r.last_ok_at) if r.last_ok_at else None
            item = ObservationOut(
                scope=r.scope, resource=r.resource, last_ok_at=last_ok, last_attempt_at=as_utc(r.last_attempt_at),
                age_s=round((now - last_ok).total_seconds(), 1) if last_ok else None,
                unverified=r.last_error is not None, last_error=r.last_error)
            if unverified is None or item.unverified == unverified:
                out.append(item)
        return out

    @app.post("/api/checks/run", dependencies=auth)
    def run_checks() -> list[dict[str, Any]]:
        return [
            {"scope": r.scope, "ok": r.ok, "findings": len(r.findings), "transitions": r.transitions,
             "unverified": r.unverified, "error": r.error}
            for r in service.run_once()
        ]

    @app.get("/api/alerts", dependencies=auth)
    def list_alerts(limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[AlertOut]:
        with session_scope(service.store) as session:
            rows = session.exec(select(AlertRecord).order_by(AlertRecord.pk.desc()).limit(limit)).all()  # type: ignore[union-attr]
        return [AlertOut.model_validate(r.model_dump()) for r in rows]

    @app.get("/api/rules", dependencies=auth)
    def list_rules() -> list[dict[str, str]]:
        if not rules_cache:
            rules_cache.extend(load_rules(service.engine.policy_root))
        return rules_cache

    @app.post("/api/policy/reload", dependencies=auth)
    def reload_policies() -> JSONResponse:
        """Load the policy directory again; a broken bundle is refused and the last good one keeps serving."""
        try:
            bundle = service.engine.reload()
        except PolicyError as exc:
            return JSONResponse(status_code=422, content={"reloaded": False, "error": str(exc)})
        rules_cache.clear()
        return JSONResponse({"reloaded": True, "modules": len(bundle.modules)})

    @app.get("/api/playbooks/{rule_id}", dependencies=auth)
    def get_playbook(rule_id: str) -> Playbook:
        try:
            return playbook_for(rule_id)
        except ConfigError:
            raise HTTPException(status_code=404, detail=f"no playbook for rule {rule_id!r}") from None

    return app
