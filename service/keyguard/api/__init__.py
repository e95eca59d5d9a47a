"""HTTP API (FastAPI): findings, checks, alerts, rules; bearer-token auth on everything but /health."""

from keyguard.api.app import create_app

__all__ = ["create_app"]
