"""FastAPI app factory: assembles the routers, the shared context and the error handling; no endpoint lives here."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from keyguard.api.access import TokenRegistry
from keyguard.api.deps import ApiContext
from keyguard.api.quota import TokenQuota
from keyguard.api.routes import (
    alerts,
    audit,
    checks,
    containment,
    findings,
    health,
    incidents,
    observations,
    playbooks,
    policy,
    rules,
    silences,
)
from keyguard.checks.scheduler import CheckService
from keyguard.config import IncidentSettings, ServiceSettings
from keyguard.web import mount_dashboard

ROUTERS = (health, findings, checks, observations, alerts, incidents, silences, containment, rules, policy, playbooks,
           audit)


def create_app(service: CheckService, api_token: str, settings: ServiceSettings | None = None,
               incidents_settings: IncidentSettings | None = None, containment_service: Any = None,
               checks_settings: Any = None) -> FastAPI:
    """`api_token`: the environment token, an operator named `env`; other tokens live in the store."""
    if len(api_token) < 16:
        raise ValueError("the API token must be at least 16 characters")
    settings = settings or ServiceSettings()
    docs = settings.openapi  # the schema maps every endpoint and parameter: off unless asked for
    app = FastAPI(title="Keyguard", version="0.1.0", openapi_url="/openapi.json" if docs else None,
                  docs_url="/docs" if docs else None, redoc_url="/redoc" if docs else None)
    app.state.context = ApiContext(
        service=service,
        tokens=TokenRegistry(service.store, api_token, service.clock),
        run_quota=TokenQuota(limit=settings.run_rate_per_minute, window_s=60.0),
        max_silence_s=(incidents_settings or IncidentSettings()).max_silence_s,
        containment=containment_service, checks=checks_settings,
    )

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        # Never echo internals (which may hold secrets) to the caller.
        return JSONResponse(status_code=500, content={"detail": f"internal error ({exc.__class__.__name__})"})

    for module in ROUTERS:
        app.include_router(module.router)
    mount_dashboard(app)
    return app
