"""Alembic environment: migrates the connection `init_store` hands over and leaves logging alone."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from keyguard.errors import StoreError

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection) or context.is_offline_mode():
    raise StoreError("store migrations run through keyguard.store.db.init_store(engine), which passes a connection")

# The caller holds the transaction (and the PostgreSQL lock), so every revision commits or rolls back together.
context.configure(connection=connection, target_metadata=None)
with context.begin_transaction():
    context.run_migrations()
