"""Engine factory: one URL picks SQLite (embedded default) or PostgreSQL (production)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import event, inspect, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError
from sqlmodel import Session, create_engine

from keyguard.errors import StoreError
from keyguard.redact import redact_text

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
BASELINE_REVISION = "0001_baseline"
# Every replica takes this PostgreSQL advisory lock around the upgrade; any fixed bigint works ("kgschema").
SCHEMA_LOCK_KEY = 0x6B67736368656D61
# Alembic's `context` and `op` are module-level proxies, so one thread per process runs revisions at a time.
_alembic_in_use = threading.Lock()


def _normalise(url: str) -> str:
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def create_store_engine(url: str) -> Engine:
    url = _normalise(url)
    try:
        if url.startswith("sqlite"):
            path = url.split("///", 1)[-1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

            @event.listens_for(engine, "connect")
            def _sqlite_pragmas(conn, _record):  # type: ignore[no-untyped-def]
                cur = conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA busy_timeout=30000")
                cur.close()

            return engine
        return create_engine(url, pool_pre_ping=True)
    except (ArgumentError, ModuleNotFoundError) as exc:
        raise StoreError(
            f"store URL (store.url) is not usable ({exc.__class__.__name__}; the URL is not repeated: it may hold a "
            "password); expected sqlite:///path or postgresql://..."
        ) from None


def migration_config(connection: Connection) -> Config:
    """Alembic configuration for the store's revisions, bound to `connection`; no alembic.ini involved."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def _upgrade_to_head(connection: Connection) -> None:
    config = migration_config(connection)
    tables = set(inspect(connection).get_table_names())
    if "alembic_version" not in tables and "findings" in tables:
        # Made by create_all before the store had migrations: the baseline at least (0002 adds only what is missing).
        command.stamp(config, BASELINE_REVISION)
    known = {script.revision for script in ScriptDirectory.from_config(config).walk_revisions()}
    unknown = sorted(set(MigrationContext.configure(connection).get_current_heads()) - known)
    if unknown:
        raise StoreError(
            f"the store's schema is at revision {', '.join(unknown)}, which this Keyguard does not know: a newer "
            "release migrated it; run that release, or restore the store from a backup"
        )
    command.upgrade(config, "head")


def init_store(engine: Engine) -> None:
    """Bring the store's schema to the newest revision, one replica at a time; data is kept."""
    # Alembic's INFO lines ("Running upgrade ...") are not service output; warnings and errors still show.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        connection = engine.connect()
    except OperationalError as exc:
        raise StoreError(f"cannot reach the store: {redact_text(str(exc.orig))}") from None
    with connection:
        postgres = connection.dialect.name == "postgresql"
        try:
            if postgres:
                # Held until after the commit below, so a replica that waited sees the finished schema.
                connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": SCHEMA_LOCK_KEY})
                connection.commit()
            try:
                with connection.begin():
                    if connection.dialect.name == "sqlite":
                        # pysqlite would run the DDL outside any transaction; IMMEDIATE also takes the write lock.
                        connection.exec_driver_sql("BEGIN IMMEDIATE")
                    with _alembic_in_use:
                        _upgrade_to_head(connection)
            finally:
                if postgres and not connection.invalidated:
                    connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": SCHEMA_LOCK_KEY})
                    connection.commit()
        except DBAPIError as exc:
            if exc.connection_invalidated:
                raise StoreError(f"cannot reach the store: {redact_text(str(exc.orig))}") from None
            raise StoreError(f"cannot upgrade the store's schema: {redact_text(str(exc.orig))}") from None
        except CommandError as exc:
            raise StoreError(f"cannot upgrade the store's schema: {redact_text(str(exc))}") from None


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except Exception:
            session.rollback()
            raise
