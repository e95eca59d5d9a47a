"""Persistence: SQLModel tables and the engine factory (SQLite embedded, PostgreSQL in production)."""

from keyguard.store.db import create_store_engine, init_store, session_scope
from keyguard.store.models import AlertRecord, CheckRun, FindingRecord

__all__ = ["AlertRecord", "CheckRun", "FindingRecord", "create_store_engine", "init_store", "session_scope"]
