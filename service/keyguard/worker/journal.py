"""The worker's order journal (SQLModel): every intent is written here before its request leaves.

Kept beside the worker rather than in keyguard.store so the worker runs on its own SQLite file; the engine
factory takes any SQLAlchemy URL (PostgreSQL in production).
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
import weakref
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from enum import StrEnum
from functools import partial
from json.encoder import encode_basestring_ascii
from math import isfinite
from operator import itemgetter
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, Boolean, Column, DateTime, bindparam, event, inspect
from sqlalchemy.engine import Engine
from sqlalchemy.orm.base import NO_VALUE
from sqlalchemy.orm.instrumentation import manager_of_class
from sqlalchemy.pool import QueuePool
from sqlmodel import Field, Session, SQLModel, create_engine, select

from keyguard.errors import StoreError
from keyguard.worker.intent_log import IntentLog

log = logging.getLogger(__name__)

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
    # Commission the exchange charged on the order's trades, by asset. Binance takes it out of what the order
    # receives (the base asset of a buy, the quote asset of a sell) unless the account pays in BNB, so a buy of 1 BTC
    # at 0.1% holds 0.999 BTC. `commission_qty` is the executed quantity whose trades these amounts cover: below
    # executed_qty, some trade's commission is still to be read (GET /api/v3/myTrades for the order).
    commissions: dict[str, float] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    commission_qty: float = 0.0
    reduce_only: bool = False
    last_error: str | None = None
    sent_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)

    @property
    def commission_pending(self) -> bool:
        """Executed, and some of its trades' commission not yet known."""
        return commission_pending_of(self.status, self.executed_qty, self.commission_qty)

    def base_change(self, base: str) -> float:
        return base_change_of(self.side, self.executed_qty, self.commissions, base)

    def quote_change(self, quote: str | None) -> float:
        return quote_change_of(self.side, self.executed_qty, self.quote_qty, self.price, self.commissions, quote)


# The arithmetic of a row's fields, also for readers that select the columns without building rows.
def commission_pending_of(status: str, executed_qty: float, commission_qty: float) -> bool:
    return status != OrderStatus.PAPER_FILLED and executed_qty > commission_qty + 1e-12


def base_change_of(side: str, executed_qty: float, commissions: dict[str, float] | None, base: str) -> float:
    """How much the order moved the base asset: what a buy received, less what a sell gave, net of any commission
    charged in the base asset (a buy's, on Binance)."""
    sign = 1.0 if side == "BUY" else -1.0
    return sign * executed_qty - (commissions or {}).get(base, 0.0)


def quote_change_of(side: str, executed_qty: float, quote_qty: float, price: float | None,
                    commissions: dict[str, float] | None, quote: str | None) -> float:
    """How much the order moved the quote asset: what a sell received, less what a buy paid, net of any commission
    charged in the quote asset (a sell's, on Binance)."""
    sign = 1.0 if side == "BUY" else -1.0
    spent = quote_qty or executed_qty * (price or 0.0)
    return -sign * spent - ((commissions or {}).get(quote, 0.0) if quote else 0.0)


class _RowBuilder:
    """Rows of a table model built as its constructor builds them, without the constructor's per-field work.

    SQLModel's constructor for a table model sets each field through `__setattr__` (SQLAlchemy's set event, then
    pydantic's), resolves every default (inspecting the default factory's signature each time) and then resets
    pydantic's fields-set: most of a quarter millisecond for a JournalOrder, more than writing it. What it leaves is
    plain: the values in `__dict__` (the fields passed, in the model's order, then the defaults), pydantic's
    fields-set naming the fields passed, and a transient InstanceState whose committed_state holds NO_VALUE for each
    field set, marked modified. This builds the same directly, after SQLAlchemy's init event as the constructor runs
    it. The first row of each shape is also built by the constructor and compared part by part (the values, their
    order, pydantic's and SQLAlchemy's state); if they differ (a library upgrade), that shape goes through the
    constructor from then on. A model or call this cannot mirror (aliases, relationships, post-init, extra fields,
    attribute events, a default factory taking data, unknown names) always goes through the constructor."""

    def __init__(self, model: type[SQLModel]) -> None:
        self.model = model
        # names passed (in call order) -> (passed in model order, defaults, committed_state) or None: constructor
        self._plans: dict[tuple[str, ...], tuple[tuple[str, ...], tuple[tuple[str, Any, Any], ...],
                                                 dict[str, Any]] | None] = {}

    def __call__(self, **values: Any) -> Any:
        names = tuple(values)
        if names not in self._plans:
            return self._first(names, values)
        plan = self._plans[names]
        if plan is None:
            return self.model(**values)
        return self._build(plan, values)

    def _build(self, plan: tuple[tuple[str, ...], tuple[tuple[str, Any, Any], ...], dict[str, Any]],
               values: dict[str, Any]) -> Any:
        passed, defaults, committed = plan
        model = self.model
        row = model.__new__(model)
        manager = manager_of_class(model)
        # What manager._new_state_if_none does for an instance that has no state yet (a new one never has).
        state = manager._state_constructor(row, manager)
        manager._state_setter(row, state)
        manager.dispatch.init(state, (), values)
        fields = row.__dict__
        for name in passed:
            fields[name] = values[name]
        for name, factory, constant in defaults:
            # `values` holds the defaults too when it is what `fields` returned
            fields[name] = values[name] if name in values else constant if factory is None else factory()
        state.committed_state.update(committed)
        state.modified = True
        object.__setattr__(row, "__pydantic_fields_set__", set(passed))
        return row

    def fields(self, **values: Any) -> dict[str, Any] | None:
        """What the row built from `values` would hold (the values passed, then the defaults), without building it
        (`from_fields` builds it later); None while rows of this shape are not built this way (the first of each
        shape, or one the constructor builds)."""
        plan = self._plans.get(tuple(values))
        if plan is None:
            return None
        passed, defaults, _ = plan
        out = {name: values[name] for name in passed}
        for name, factory, constant in defaults:
            out[name] = constant if factory is None else factory()
        return out

    def from_fields(self, names: tuple[str, ...], fields: dict[str, Any]) -> Any:
        """The row whose values `fields` returned for a call that passed `names`."""
        plan = self._plans[names]
        assert plan is not None  # `fields` returned them only for such a shape
        return self._build(plan, fields)

    def _first(self, names: tuple[str, ...], values: dict[str, Any]) -> Any:
        row = self.model(**values)  # also configures the mappers the plan reads
        plan = self._plan(names)
        if plan is not None:
            made = {name for name, factory, _ in plan[1] if factory is not None}
            if not _same_row(self._build(plan, dict(values)), row, made):
                log.warning("%s rows go through the model's constructor: a quicker build differs from it",
                            self.model.__name__)
                plan = None
        self._plans[names] = plan
        return row

    def _plan(self, names: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[tuple[str, Any, Any], ...],
                                                     dict[str, Any]] | None:
        model = self.model
        fields = model.model_fields
        manager = manager_of_class(model)
        if (set(names) - set(fields) or any(field.alias for field in fields.values())
                or model.__sqlmodel_relationships__ or model.__pydantic_post_init__
                or model.__pydantic_root_model__ or model.model_config.get("extra") == "allow"):
            return None
        passed = tuple(name for name in fields if name in names)
        defaults: list[tuple[str, Any, Any]] = []
        for name, field in fields.items():
            if name in names or field.is_required():
                continue
            if field.default_factory is not None:
                if getattr(field, "default_factory_takes_validated_data", False):
                    return None
                defaults.append((name, field.default_factory, None))
            else:
                constant = field.get_default(call_default_factory=False)
                # A default pydantic would copy for each instance is taken from pydantic each time too.
                defaults.append((name, None, constant) if constant is field.default else
                                (name, _default_of(field), None))
        committed: dict[str, Any] = {}
        for name in (*passed, *(name for name, _, _ in defaults)):
            if not manager.is_instrumented(name, search=True):
                continue
            impl = manager[name].impl
            if impl is None or impl.dispatch.set or impl.collection:
                return None
            if impl.send_modified_events:
                committed[name] = NO_VALUE
        return passed, tuple(defaults), committed


def _default_of(field: Any) -> Callable[[], Any]:
    return lambda: field.get_default(call_default_factory=True)


def _same_row(quick: Any, built: Any, made: set[str]) -> bool:
    """Whether two rows are the same in every part the ORM and pydantic read (`made`: fields from a default factory,
    equal in type only)."""
    if type(quick) is not type(built) or list(quick.__dict__) != list(built.__dict__):
        return False
    for name, value in quick.__dict__.items():
        other = built.__dict__[name]
        if name == "_sa_instance_state":
            continue
        if type(value) is not type(other) or (name not in made and value != other):
            return False
    if (quick.__pydantic_fields_set__ != built.__pydantic_fields_set__
            or quick.__pydantic_extra__ != built.__pydantic_extra__
            or quick.__pydantic_private__ != built.__pydantic_private__):
        return False
    ours, theirs = inspect(quick), inspect(built)
    return (list(ours.committed_state.items()) == list(theirs.committed_state.items())
            and vars(ours) == vars(theirs) and ours.expired_attributes == theirs.expired_attributes
            and ours.class_ is theirs.class_ and ours.manager is theirs.manager and ours.key == theirs.key)


_journal_rows = _RowBuilder(JournalOrder)
new_journal_order: Callable[..., JournalOrder] = _journal_rows


def quote_asset(symbol: str, base: str) -> str | None:
    """The quote asset of a Binance symbol whose base is known (BTCUSDT, BTC -> USDT)."""
    if not symbol.startswith(base) or symbol == base:
        return None
    return symbol[len(base):]


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
        _add_commission_columns(engine)
    except Exception as exc:  # a bad URL or unreachable database is a clear error, not a traceback
        raise StoreError(f"worker journal {url.split('@')[-1]}: cannot open ({type(exc).__name__}: {exc})") from exc
    return engine


def _add_commission_columns(engine: Engine) -> None:
    """A journal written before commissions were kept gains their columns (no commission known: every executed
    row is read again from the exchange's trades)."""
    present = {column["name"] for column in inspect(engine).get_columns("worker_order")}
    added = {"commissions": "JSON NOT NULL DEFAULT '{}'", "commission_qty": "FLOAT NOT NULL DEFAULT 0"}
    with engine.begin() as connection:
        for name, ddl in added.items():
            if name not in present:
                connection.exec_driver_sql(f"ALTER TABLE worker_order ADD COLUMN {name} {ddl}")


_JOURNAL = JournalOrder.__table__  # type: ignore[attr-defined]
_UPDATE = _JOURNAL.update().where(_JOURNAL.c.client_order_id == bindparam("_key"))
_COLUMNS = tuple(column.name for column in _JOURNAL.columns)
# An UPDATE sets every column but the key it finds the row by: setting that to itself changes nothing, and cost SQLite
# a delete and insert in the key's index (5 us of 55).
_UPDATED = tuple(name for name in _COLUMNS if name != "client_order_id")


def _bind_processor(type_: Any, dialect: Any) -> Any:
    """How a value of `type_` is handed to the driver. PostgreSQL needs its dialect's own processors, as Core applies
    them (psycopg takes a JSON value only wrapped as JSON); SQLite keeps the generic type's, which this path always
    used: its datetimes are stored as the driver writes an aware datetime ("... +00:00") and read back the same."""
    return type_.bind_processor(dialect) if dialect.name == "sqlite" else type_.dialect_impl(dialect).bind_processor(
        dialect)


def _utc_text(processor: Callable[[Any], Any] | None) -> Callable[[Any], Any]:
    """A datetime bound for SQLite: what the processor and then sqlite3's datetime adapter make of it (isoformat with
    a space: "2026-01-02 03:04:05.123456+00:00"), made at once for a datetime in UTC, which the processor hands on
    unchanged; any other value goes the processor's way and the driver adapts what it returns. isoformat costs 3 us
    (most of a row's binding), so the text up to the second is kept for the few seconds a journal's rows are in."""
    seconds: dict[tuple[int, ...], str] = {}

    def bind(value: Any) -> Any:
        if value.__class__ is not datetime or value.tzinfo is not UTC:
            return value if processor is None else processor(value)
        second = (value.second, value.minute, value.hour, value.day, value.month, value.year)
        head = seconds.get(second)
        if head is None:
            if len(seconds) > 64:
                seconds.clear()
            head = seconds[second] = value.replace(microsecond=0).isoformat(" ").removesuffix("+00:00")
        micro = value.microsecond
        return f"{head}.{micro:06d}+00:00" if micro else f"{head}+00:00"

    return bind


def _json_text(processor: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A JSON value bound for SQLite: json.dumps' text for a dict of names to finite floats (a row's commissions),
    written at once; json.dumps makes an encoder for every call (~4 us, four times that on the order path's cold
    cache). Any other value goes the processor's way."""

    def bind(value: Any) -> Any:
        if value.__class__ is not dict:
            return processor(value)
        items = []
        for key, amount in value.items():
            if key.__class__ is not str or amount.__class__ is not float or not isfinite(amount):
                return processor(value)
            items.append(f"{encode_basestring_ascii(key)}: {float.__repr__(amount)}")
        return "{" + ", ".join(items) + "}"

    return bind


def _bool_int(processor: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A bool bound for SQLite: the processor's 0 or 1 (it checks the value is a bool first)."""

    def bind(value: Any) -> Any:
        if value is False:
            return 0
        if value is True:
            return 1
        return processor(value)

    return bind


def _quick_bind(type_: Any, processor: Callable[[Any], Any] | None, dialect: Any) -> Callable[[Any], Any] | None:
    """A quicker stand-in, on SQLite, for `processor` and the driver's own adaptation of what it returns, where one is
    known: datetimes (a journal row has three, a gateway mapping one: ~1.5 us each in the processor and the driver's
    adapter, and 3 us in isoformat), JSON (json.dumps) and bools. It is used only if it binds just what they bind on
    sample values, checked when a write is first compiled; else `processor` is."""
    dbapi = dialect.dbapi
    if dialect.name != "sqlite" or not hasattr(dbapi, "adapt") or not hasattr(dbapi, "PrepareProtocol"):
        return processor
    impl = getattr(type_, "impl_instance", type_)
    if isinstance(impl, DateTime):
        quick = _utc_text(processor)
        sample = datetime(2001, 2, 3, 4, 5, 6, 789012, tzinfo=UTC)
        samples: list[Any] = [sample, sample.replace(microsecond=0), utcnow()]
    elif isinstance(impl, JSON) and processor is not None:
        quick = _json_text(processor)
        samples = [{}, {"BTC": 2e-06}, {"USDT": 0.1, "BNB": 1.5e-10, "\u00e9\"": 1e300, "E": 3.0, "Z": -0.0}]
    elif isinstance(impl, Boolean) and processor is not None:
        quick, samples = _bool_int(processor), [False, True]
    else:
        return processor
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # Python 3.12's, for sqlite3's default datetime adapter
        for sample in samples:
            expected = sample if processor is None else processor(sample)
            with contextlib.suppress(Exception):
                expected = dbapi.adapt(expected, dbapi.PrepareProtocol, expected)
            got = quick(sample)
            if type(got) is not type(expected) or got != expected:
                log.warning("%r values are bound SQLAlchemy's way: a quicker bind differs from it", type_)
                return processor
    return quick


class _CompiledWrite:
    """One INSERT or UPDATE compiled once for the engine's dialect and run on the driver's cursor: on the order path
    SQLAlchemy's per-execution work cost more than SQLite's commit. The bind processors still apply (or a checked
    quicker equivalent, see _quick_bind), so rows read back through the ORM as if Core had written them."""

    def __init__(self, engine: Engine, statement: Any, keys: Iterable[str]) -> None:
        compiled = statement.compile(dialect=engine.dialect, column_keys=list(keys))
        self.sql = str(compiled)
        self.names: tuple[str, ...] | None = tuple(compiled.positiontup) if compiled.positional else None
        self.processors = {name: processor for name, bind in compiled.binds.items()
                           if (processor := _bind_processor(bind.type, engine.dialect)) is not None}
        # Each bound name's value (for a journal row, an UPDATE's key is the row's id), and the ones converted.
        self._bound = self.names if self.names is not None else tuple(compiled.binds)
        self._fields = tuple("client_order_id" if name == "_key" else name for name in self._bound)
        self._take = itemgetter(*self._fields) if len(self._fields) > 1 else _one(self._fields[0])
        self._convert = tuple((n, convert) for n, name in enumerate(self._bound)
                              if (convert := _quick_bind(compiled.binds[name].type, self.processors.get(name),
                                                         engine.dialect)) is not None)

    def parameters(self, values: dict[str, Any]) -> Any:
        """The parameters for a row of values by bound name (a companion row: column names)."""
        return self._converted(list(self._take(values)))

    def row_parameters(self, row: JournalOrder) -> Any:
        """The parameters for a journal row, taken from its __dict__ at once (where the ORM keeps every loaded value)
        rather than through each instrumented attribute; a row missing one there is read the ORM's way."""
        try:
            values = list(self._take(row.__dict__))
        except KeyError:
            values = [getattr(row, field) for field in self._fields]
        return self._converted(values)

    def _converted(self, values: list[Any]) -> Any:
        for n, convert in self._convert:
            value = values[n]
            if value is not None:
                values[n] = convert(value)
        return tuple(values) if self.names is not None else dict(zip(self._bound, values, strict=True))


def _one(name: str) -> Callable[[Any], tuple[Any]]:
    return lambda values: (values[name],)


def _run(connection: Any, writes: list[tuple[str, Any]]) -> None:
    """The writes in one transaction on a driver connection, committed; any failure rolls all back."""
    try:
        cursor = connection.cursor()
        for sql, parameters in writes:
            cursor.execute(sql, parameters)
        connection.commit()
    except BaseException:
        connection.rollback()
        raise


def _run_kept(kept: tuple[Any, Any], writes: list[tuple[str, Any]]) -> None:
    """`_run` on a kept SQLite connection: it is in autocommit mode and its transaction is begun and committed by
    statements on its own cursor (prepared once, in the driver's statement cache) rather than by the driver's implicit
    BEGIN and its commit(), which prepare theirs on every transaction."""
    connection, cursor = kept
    try:
        cursor.execute("BEGIN")
        for sql, parameters in writes:
            cursor.execute(sql, parameters)
        cursor.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.rollback()
        raise


def _close_all(connections: list[Any], pid: int) -> None:
    if os.getpid() == pid:
        while connections:
            with contextlib.suppress(Exception):
                connections.pop()[0].close()


class PendingInsert:
    """A new row durable in the intent log, its database insert still to run (OrderJournal.intend). Calling it builds
    the row object if it was given as values (`row` from then on) and runs the insert once; a failure is logged, never
    raised (the order may be out by then), and leaves it not `done`: the caller writes the row another way later
    (OrderJournal.record), and a restart replays it from the log."""

    __slots__ = ("_journal", "client_order_id", "_writes", "_build", "row", "done")

    def __init__(self, journal: OrderJournal, cid: str, writes: list[tuple[str, Any]],
                 row: JournalOrder | None = None, build: Callable[[], JournalOrder] | None = None) -> None:
        self._journal, self.client_order_id, self._writes, self._build = journal, cid, writes, build
        self.row: JournalOrder | None = row
        self.done = False

    def finish(self) -> JournalOrder:
        """Run it (a no-op once done) and return the row."""
        self()
        assert self.row is not None  # given, or built by the call
        return self.row

    def __call__(self) -> None:
        if self.row is None and self._build is not None:
            self.row = self._build()
        if self.done:
            return
        journal = self._journal
        try:
            journal._commit(self._writes)
        except Exception as exc:
            log.error("journal: order %s is in the intent log but its row could not be written yet: %s",
                      self.client_order_id, exc)
            return
        self.done = True
        if journal._intents is not None:
            journal._intents.settled(self.client_order_id)


class OrderJournal:
    """Small repository over the journal tables; every write commits before the caller proceeds, but a new order's
    first row where this process keeps the intent log (`intend`: durable in the log at once, committed while the
    order is out)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._writes: dict[tuple[Any, tuple[str, ...]], _CompiledWrite] = {}
        self._row_writes: dict[str, _CompiledWrite] = {}
        # SQLite file: driver connections of the journal's own for its writes, each with its cursor (see _commit);
        # None: the engine's pool.
        self._idle: list[tuple[Any, Any]] | None = None
        self._pid = os.getpid()
        if engine.dialect.name == "sqlite" and isinstance(engine.pool, QueuePool):
            self._keep_connections()
        # The intent log, once this process has claimed it (keep_intents): new rows are durable there before their
        # request leaves and inserted while it is out. None: each is inserted before it leaves.
        self._intents: IntentLog | None = None

    def _write(self, table: Any, values: dict[str, Any]) -> tuple[str, Any]:
        """A (table, values) row's INSERT and its parameters."""
        key = (table, tuple(values))
        write = self._writes.get(key)
        if write is None:
            write = self._writes[key] = _CompiledWrite(self.engine, table.insert(), key[1])
        return write.sql, write.parameters(values)

    def _row_write(self, kind: str) -> _CompiledWrite:
        """The journal row's own INSERT (every column) or UPDATE (every column but its key)."""
        write = self._row_writes.get(kind)
        if write is None:
            statement, keys = (_JOURNAL.insert(), _COLUMNS) if kind == "insert" else (_UPDATE, _UPDATED)
            write = self._row_writes[kind] = _CompiledWrite(self.engine, statement, keys)
        return write

    def _commit(self, writes: list[tuple[str, Any]]) -> None:
        """Run the writes in one transaction and commit before returning; any failure rolls all back.

        On a SQLite file the transaction runs on a connection the journal keeps between writes: the pool's checkout
        and return (with its reset) cost 23 us of an order's 0.28 ms insert. Each is the engine's own connection
        (made by its pool, so its connect events ran: WAL, busy timeout, synchronous), detached from the pool when
        first needed and put in autocommit mode (see _run_kept); one is used by one thread at a time, and one that
        failed is closed, never reused. Elsewhere (PostgreSQL, SQLite in memory) each transaction checks a connection
        out of the engine's pool."""
        if self._idle is None:
            connection = self.engine.raw_connection()
            try:
                _run(connection, writes)
            finally:
                connection.close()
            return
        if self._pid != os.getpid():  # a forked child opens its own; the parent's stay the parent's
            self._keep_connections()
        idle = self._idle
        try:
            kept = idle.pop()  # list.pop and append are atomic: no lock needed between threads
        except IndexError:
            kept = self._connect()
        try:
            _run_kept(kept, writes)
        except BaseException:
            with contextlib.suppress(Exception):
                kept[0].close()
            raise
        idle.append(kept)

    def _keep_connections(self) -> None:
        self._idle, self._pid = [], os.getpid()
        # Closed when the journal goes (or at exit), by the process that opened them.
        weakref.finalize(self, _close_all, self._idle, self._pid)

    def _connect(self) -> tuple[Any, Any]:
        pooled = self.engine.raw_connection()
        try:
            pooled.detach()
            connection: Any = pooled.dbapi_connection
            connection.isolation_level = None
            return connection, connection.cursor()
        except BaseException:
            pooled.close()
            raise

    def record(self, order: JournalOrder) -> JournalOrder:
        order.updated_at = utcnow()
        with Session(self.engine, expire_on_commit=False) as session:
            merged = session.merge(order)
            session.commit()
        if self._intents is not None:
            self._intents.settled(order.client_order_id)
        return merged

    def keep_intents(self) -> int | None:
        """Claim this journal's intent log (beside a SQLite file: `<database>.intents`) for this process, after
        writing every order it holds that the database lacks (a crash came between the two); from now on `intend`
        makes new rows durable there. Returns how many orders the replay wrote; None when no log is kept here (not a
        SQLite file, or another process holds the log: rows are then inserted before their requests leave)."""
        database = self.engine.url.database
        if self.engine.dialect.name != "sqlite" or not database or database == ":memory:" or self._idle is None:
            return None
        claimed = IntentLog.claim(Path(f"{database}.intents"))
        if claimed is None:
            return None
        replayed = 0
        try:
            for cid, _intent_id, writes in claimed.records():
                if self.get(cid) is None:
                    try:
                        self._commit(writes)
                    except Exception as exc:  # an order that may be at the exchange is never dropped quietly
                        raise StoreError(f"intent log {claimed.path}: order {cid} could not be written to the "
                                         f"journal ({type(exc).__name__}: {exc}); the log is kept as it is") from exc
                    replayed += 1
            claimed.clear()
        except BaseException:
            claimed.close()
            raise
        self._intents = claimed
        weakref.finalize(self, claimed.close)
        if replayed:
            log.warning("journal: %d order(s) were sent before their rows were written (a crash between the two); "
                        "written now from the intent log as sent, for reconciliation to look up", replayed)
        return replayed

    def intend(self, order: JournalOrder, *companions: tuple[Any, dict[str, object]]) -> PendingInsert:
        """Write a new row, and (table, values) rows that must exist exactly when it does, for a request that leaves
        next: they are durable, all or none, when this returns. With an intent log the returned PendingInsert commits
        them to the database, to run while the request is out; without one they are committed here (a failure raised)
        and it is already done. The row is written as built (its `updated_at` is when it was made)."""
        write = self._row_writes.get("insert") or self._row_write("insert")
        return self._intend(PendingInsert(self, order.client_order_id, [(write.sql, write.row_parameters(order))],
                                          row=order), order.intent_id, companions)

    def intend_values(self, values: dict[str, Any], *companions: tuple[Any, dict[str, object]]) -> PendingInsert:
        """`intend` for the row `new_journal_order(**values)` builds, built only when the PendingInsert runs (while
        the request is out): its record needs the row's values, not the object."""
        fields = _journal_rows.fields(**values)
        if fields is None:  # the first row of its shape is built (and checked) now
            return self.intend(new_journal_order(**values), *companions)
        write = self._row_writes.get("insert") or self._row_write("insert")
        build = partial(_journal_rows.from_fields, tuple(values), fields)
        return self._intend(PendingInsert(self, fields["client_order_id"], [(write.sql, write.parameters(fields))],
                                          build=build), fields["intent_id"], companions)

    def _intend(self, pending: PendingInsert, intent_id: str,
                companions: tuple[tuple[Any, dict[str, object]], ...]) -> PendingInsert:
        writes = pending._writes
        for table, values in companions:
            writes.append(self._write(table, values))
        if self._intents is not None:
            try:
                self._intents.append(pending.client_order_id, intent_id, writes)
                return pending
            except (OSError, TypeError, ValueError) as exc:
                log.warning("journal: intent log append failed (%s); the row is inserted before sending", exc)
        self._commit(writes)  # no log: committed before the request leaves, a failure raised as it is
        pending.done = True
        pending.finish()  # the row object, if it was given as values
        return pending

    def write(self, order: JournalOrder, *companions: tuple[Any, dict[str, object]]) -> None:
        """Insert a row and its companions in one transaction, now (a row for an order already sent elsewhere)."""
        write = self._row_writes.get("insert") or self._row_write("insert")
        writes = [(write.sql, write.row_parameters(order))]
        writes.extend(self._write(table, values) for table, values in companions)
        self._commit(writes)

    def release_intents(self) -> None:
        """Give the intent log up (a stopping owner): rows not yet written stay in it for the next owner's replay."""
        intents, self._intents = self._intents, None
        if intents is not None:
            intents.close()

    def awaiting(self, intent_id: str) -> bool:
        """Whether an order of this intent is durable in the intent log but not yet in the database."""
        return self._intents is not None and self._intents.holds(intent_id)

    def update(self, order: JournalOrder) -> JournalOrder:
        """Write an existing row's fields back with one UPDATE (no read first): the hot path after an answer."""
        order.updated_at = utcnow()
        write = self._row_writes.get("update") or self._row_write("update")
        self._commit([(write.sql, write.row_parameters(order))])
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

    def commission_pending(self, most: int | None = None) -> list[JournalOrder]:
        """Rows that executed more than the trades whose commission they hold (see JournalOrder.commissions), oldest
        first; at most `most` of them."""
        with Session(self.engine, expire_on_commit=False) as session:
            query = select(JournalOrder).where(
                JournalOrder.executed_qty > JournalOrder.commission_qty + 1e-12,
                JournalOrder.status != OrderStatus.PAPER_FILLED,
            )
            return list(session.exec(query.order_by(JournalOrder.created_at).limit(most)))  # type: ignore[arg-type]

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
