"""The worker's order journal (SQLModel): every intent is written here before its request leaves.

Kept beside the worker rather than in keyguard.store so the worker runs on its own SQLite file; the engine
factory takes any SQLAlchemy URL (PostgreSQL in production).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from sqlalchemy import bindparam, event
from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, SQLModel, create_engine, select

from keyguard.errors import StoreError


class OrderStatus(StrEnum):
    PENDING = "PENDING"  # journaled, request not yet sent
    SENT = "SENT"  # request on the wire, no answer yet
    UNKNOWN = "UNKNOWN"  # timeout/5xx/reset and the look-up could not settle it: the order may exist
    NEW = "NEW"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELED = "CANCELED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"
    NOT_FOUND = "NOT_FOUND"  # the exchange definitively said -2013; superseded by a new client id
    PAPER_FILLED = "PAPER_FILLED"


OPEN_STATUSES = frozenset({OrderStatus.PENDING, OrderStatus.SENT, OrderStatus.UNKNOWN, OrderStatus.NEW,
                           OrderStatus.PARTIALLY_FILLED})
FINAL_STATUSES = frozenset({OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.REJECTED, OrderStatus.EXPIRED,
                            OrderStatus.NOT_FOUND, OrderStatus.PAPER_FILLED})


def utcnow() -> datetime:
    return datetime.now(UTC)


class JournalOrder(SQLModel, table=True):
    """One attempt at an intent under one client order id; a resend after -2013 is a new row linked by ids."""

    __tablename__ = "worker_order"

    client_order_id: str = Field(primary_key=True, max_length=36)
    intent_id: str = Field(index=True)
    attempt: int = 1
    replaces: str | None = None
    replaced_by: str | None = None
    origin: str = "worker"  # worker | external (adopted by reconciliation)
    worker: str = "worker"
    symbol: str
    side: str
    order_type: str
    quantity: float
    price: float | None = None
    status: str = Field(default=OrderStatus.PENDING, index=True)
    exchange_order_id: str | None = None
    executed_qty: float = 0.0
    quote_qty: float = 0.0
    reduce_only: bool = False
    last_error: str | None = None
    sent_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class ReconciliationIssue(SQLModel, table=True):
    """A discrepancy between the journal and the exchange, kept so it is reported, never silently fixed."""

    __tablename__ = "worker_reconciliation_issue"

    id: int | None = Field(default=None, primary_key=True)
    kind: str
    subject: str
    detail: str
    found_at: datetime = Field(default_factory=utcnow)


def journal_engine(url: str = "sqlite:///keyguard-worker.db", *, autocheckpoint: bool = True) -> Engine:
    """Engine for the journal at `url`, tables created. SQLite gets WAL so readers never block the worker.
    `autocheckpoint=False` leaves WAL checkpoints to the owner (OrderJournal.checkpoint from a background round), so
    no order's commit pays for copying the log back into the database."""
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    try:
        engine = create_engine(url, connect_args={"check_same_thread": False} if url.startswith("sqlite") else {})
        if url.startswith("sqlite"):
            @event.listens_for(engine, "connect")
            def _pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
                dbapi_conn.execute("PRAGMA journal_mode=WAL")
                dbapi_conn.execute("PRAGMA busy_timeout=10000")
                # WAL + NORMAL survives a process crash (the journal's job); only power loss can drop the tail.
                dbapi_conn.execute("PRAGMA synchronous=NORMAL")
                if not autocheckpoint:
                    dbapi_conn.execute("PRAGMA wal_autocheckpoint=0")

        tables = [JournalOrder.__table__, ReconciliationIssue.__table__]  # type: ignore[attr-defined]
        SQLModel.metadata.create_all(engine, tables=tables)
    except Exception as exc:  # a bad URL or unreachable database is a clear error, not a traceback
        raise StoreError(f"worker journal {url.split('@')[-1]}: cannot open ({type(exc).__name__}: {exc})") from exc
    return engine


_JOURNAL = JournalOrder.__table__  # type: ignore[attr-defined]
_UPDATE = _JOURNAL.update().where(_JOURNAL.c.client_order_id == bindparam("_key"))


def _row_values(order: JournalOrder) -> dict[str, object]:
    return {column.name: getattr(order, column.name) for column in _JOURNAL.columns}


class OrderJournal:
    """Small repository over the journal tables; every write commits before the caller proceeds."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def record(self, order: JournalOrder) -> JournalOrder:
        order.updated_at = utcnow()
        with Session(self.engine, expire_on_commit=False) as session:
            merged = session.merge(order)
            session.commit()
            return merged

    def insert(self, order: JournalOrder, *companions: SQLModel) -> JournalOrder:
        """Write a new row (and rows that must exist exactly when it does) in one transaction. Core statements built
        once: on the order path the ORM's per-statement work cost more than SQLite's commit."""
        order.updated_at = utcnow()
        with self.engine.begin() as connection:
            connection.execute(_JOURNAL.insert(), _row_values(order))
            for companion in companions:
                table = type(companion).__table__  # type: ignore[attr-defined]
                values = {c.name: getattr(companion, c.name) for c in table.columns
                          if getattr(companion, c.name) is not None or not c.primary_key}
                connection.execute(table.insert(), values)
        return order

    def update(self, order: JournalOrder) -> JournalOrder:
        """Write an existing row's fields back with one UPDATE (no read first): the hot path after an answer."""
        order.updated_at = utcnow()
        with self.engine.begin() as connection:
            connection.execute(_UPDATE, {**_row_values(order), "_key": order.client_order_id})
        return order

    def checkpoint(self) -> None:
        """Copy SQLite's write-ahead log back into the database (PASSIVE: never waits for a writer)."""
        if self.engine.dialect.name == "sqlite":
            with self.engine.connect() as connection:
                connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")

    def get(self, client_order_id: str) -> JournalOrder | None:
        with Session(self.engine, expire_on_commit=False) as session:
            return session.get(JournalOrder, client_order_id)

    def orders(self, statuses: Iterable[str] | None = None, symbol: str | None = None) -> list[JournalOrder]:
        with Session(self.engine, expire_on_commit=False) as session:
            query = select(JournalOrder)
            if statuses is not None:
                query = query.where(JournalOrder.status.in_(list(statuses)))  # type: ignore[attr-defined]
            if symbol is not None:
                query = query.where(JournalOrder.symbol == symbol)
            return list(session.exec(query.order_by(JournalOrder.created_at)))  # type: ignore[arg-type]

    def open_orders(self) -> list[JournalOrder]:
        return self.orders(OPEN_STATUSES)

    def chain(self, intent_id: str) -> list[JournalOrder]:
        with Session(self.engine, expire_on_commit=False) as session:
            query = select(JournalOrder).where(JournalOrder.intent_id == intent_id).order_by(JournalOrder.attempt)  # type: ignore[arg-type]
            return list(session.exec(query))

    def report(self, kind: str, subject: str, detail: str) -> ReconciliationIssue:
        with Session(self.engine, expire_on_commit=False) as session:
            issue = ReconciliationIssue(kind=kind, subject=subject, detail=detail)
            session.add(issue)
            session.commit()
            session.refresh(issue)
            return issue

    def issues(self) -> list[ReconciliationIssue]:
        with Session(self.engine, expire_on_commit=False) as session:
            return list(session.exec(select(ReconciliationIssue).order_by(ReconciliationIssue.id)))  # type: ignore[arg-type]
