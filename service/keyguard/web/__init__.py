"""The on-call dashboard: server-rendered pages under /ui, in the service itself, behind the API's roles."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from keyguard.web.routes import router

STATIC_DIR = Path(__file__).with_name("static")


def mount_dashboard(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/ui/static", StaticFiles(directory=STATIC_DIR), name="ui-static")

    @app.get("/ui", include_in_schema=False)
    def _ui_root() -> RedirectResponse:
        return RedirectResponse("/ui/", status_code=307)
