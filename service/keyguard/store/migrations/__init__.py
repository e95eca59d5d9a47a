"""Alembic revisions for the store's schema; `keyguard.store.db.init_store` applies them, no alembic.ini needed."""
