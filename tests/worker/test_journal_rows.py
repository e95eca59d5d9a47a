"""The journal's order path (rows built by the executor, written with their gateway mapping, updated after the answer)
reads back exactly as rows built and written the ORM's way, on SQLite and on PostgreSQL."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import bindparam
from sqlmodel import Session, select

from keyguard.gateway.desk import BotOrderRef, GatewayOrder, create_desk_tables
from keyguard.worker.journal import (
    _JOURNAL,
    JournalOrder,
    OrderJournal,
    OrderStatus,
    _bind_processor,
    _quick_bind,
    journal_engine,
)
from keyguard.worker.orders import OrderExecutor, OrderIntent, apply_report
from tests.servers import fresh_postgres_database

FILLED = {"symbol": "BTCUSDT", "orderId": 77, "status": "FILLED", "executedQty": "0.002",
          "cummulativeQuoteQty": "130.5", "fills": [{"qty": "0.002", "commission": "0.000002",
                                                     "commissionAsset": "BTC"}]}


@pytest.fixture(params=["sqlite", "postgresql"])
def journal(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OrderJournal]:
    if request.param == "sqlite":
        engine = journal_engine(f"sqlite:///{tmp_path / 'journal.db'}", autocheckpoint=False)
        create_desk_tables(engine)
        yield OrderJournal(engine)
        engine.dispose()
    else:
        with fresh_postgres_database(request.getfixturevalue("postgres_url")) as url:
            engine = journal_engine(url)
            create_desk_tables(engine)
            yield OrderJournal(engine)
            engine.dispose()


def _intent(intent_id: str) -> OrderIntent:
    return OrderIntent("BTCUSDT", "BTC", "BUY", 0.002, intent_id=intent_id)


def _by_constructor(intent: OrderIntent, like: JournalOrder) -> JournalOrder:
    """The row `_row` makes, made the ORM's way (the model's constructor) under another id."""
    return JournalOrder(client_order_id=f"kg-{intent.intent_id}-1", intent_id=intent.intent_id, attempt=1,
                        replaces=None, worker="bot-a", symbol=intent.symbol, side=intent.side,
                        order_type=intent.order_type, quantity=intent.quantity, price=intent.price,
                        status=OrderStatus.SENT, sent_at=like.sent_at, created_at=like.created_at,
                        updated_at=like.updated_at)


def _content(row: JournalOrder | None) -> dict[str, Any]:
    """Everything but the ids and the write time (record() stamps its own)."""
    assert row is not None
    return {k: v for k, v in row.model_dump().items() if k not in ("client_order_id", "intent_id", "updated_at")}


def test_order_path_rows_read_back_as_rows_written_the_orm_way(journal: OrderJournal) -> None:
    executor = OrderExecutor(None, journal, worker="gateway")  # type: ignore[arg-type]
    rows = {}
    for n in range(3):  # the first row of a shape is built both ways and compared; later ones are not
        intent = _intent(f"{'ab'[n % 2]}{n:023d}")
        ours = executor._row(intent, 1, None, "bot-a")
        theirs = _by_constructor(_intent(f"c{n:023d}"), ours)
        assert ours.model_dump() == {**theirs.model_dump(), "client_order_id": ours.client_order_id,
                                     "intent_id": ours.intent_id}
        assert ours.model_fields_set == theirs.model_fields_set
        rows[n] = (ours, theirs)

    sent = datetime.now(UTC)
    for n, (ours, theirs) in rows.items():
        for row in (ours, theirs):
            row.status, row.sent_at = OrderStatus.SENT, sent
        # The order path: one transaction with the gateway's mapping row; the ORM's way: a merge.
        journal.intend(ours, BotOrderRef("bot-a", f"o-{n}", ours.intent_id, "BTCUSDT").journal_row())
        journal.record(theirs)
        back = journal.get(ours.client_order_id)
        assert _content(back) == _content(journal.get(theirs.client_order_id)) == _content(ours)
        assert back is not None and back.updated_at == ours.updated_at

    ours, theirs = rows[0]
    for row in (ours, theirs):
        apply_report(row, FILLED)
    journal.update(ours)
    journal.record(theirs)
    back = journal.get(ours.client_order_id)
    assert _content(back) == _content(journal.get(theirs.client_order_id)) == _content(ours)
    assert back is not None and back.updated_at == ours.updated_at
    assert back is not None and back.status == OrderStatus.FILLED and back.exchange_order_id == "77"
    assert back.commissions == {"BTC": pytest.approx(0.000002)} and back.quote_qty == 130.5

    # A row from the order path is merged like any other (a refusal or an unknown outcome is recorded this way).
    ours = rows[1][0]
    ours.status, ours.last_error = OrderStatus.UNKNOWN, "timeout"
    merged = journal.record(ours)
    assert merged.status == OrderStatus.UNKNOWN
    back = journal.get(ours.client_order_id)
    assert back is not None and (back.status, back.last_error) == (OrderStatus.UNKNOWN, "timeout")
    assert [r.client_order_id for r in journal.chain(ours.intent_id)] == [ours.client_order_id]

    with Session(journal.engine) as session:
        mapped = {r.bot_client_order_id: r.intent_id for r in session.exec(select(GatewayOrder))}
    assert mapped == {f"o-{n}": rows[n][0].intent_id for n in rows}


def _fresh_reader(journal: OrderJournal) -> OrderJournal:
    """The journal as another process opens it: an engine and connections of its own."""
    return OrderJournal(journal_engine(journal.engine.url.render_as_string(hide_password=False)))


def test_an_order_path_write_is_committed_when_it_returns_and_a_failed_one_leaves_nothing(
    journal: OrderJournal,
) -> None:
    executor = OrderExecutor(None, journal, worker="gateway")  # type: ignore[arg-type]
    reader = _fresh_reader(journal)
    first = executor._row(_intent("d" * 24), 1, None, "bot-a")
    journal.intend(first, BotOrderRef("bot-a", "same-id", first.intent_id, "BTCUSDT").journal_row())
    back = reader.get(first.client_order_id)
    assert back is not None and back.status == OrderStatus.SENT

    # The mapping row breaks the (bot, bot client id) constraint: the journal row must not exist either.
    second = executor._row(_intent("e" * 24), 1, None, "bot-a")
    with pytest.raises(Exception, match="(?i)unique"):
        journal.intend(second, BotOrderRef("bot-a", "same-id", second.intent_id, "BTCUSDT").journal_row())
    assert reader.get(second.client_order_id) is None and journal.get(second.client_order_id) is None

    # The journal goes on writing after the failure, and an update is committed when it returns too.
    journal.intend(second, BotOrderRef("bot-a", "other-id", second.intent_id, "BTCUSDT").journal_row())
    apply_report(second, FILLED)
    journal.update(second)
    back = reader.get(second.client_order_id)
    assert back is not None and back.status == OrderStatus.FILLED and back.executed_qty == 0.002
    reader.engine.dispose()


def test_orders_written_from_many_threads_are_all_in_the_journal(journal: OrderJournal) -> None:
    executor = OrderExecutor(None, journal, worker="gateway")  # type: ignore[arg-type]

    def place(n: int) -> str:
        row = executor._row(_intent(f"t{n:023d}"), 1, None, f"bot-{n % 3}")
        journal.intend(row, BotOrderRef(row.worker, f"cid-{n}", row.intent_id, "BTCUSDT").journal_row())
        apply_report(row, FILLED)
        journal.update(row)
        return row.client_order_id

    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = list(pool.map(place, range(200)))
    reader = _fresh_reader(journal)
    assert sorted(r.client_order_id for r in reader.orders([OrderStatus.FILLED])) == sorted(ids)
    with Session(reader.engine) as session:
        assert len(list(session.exec(select(GatewayOrder)))) == 200
    reader.engine.dispose()


def _driver_bound(value: Any) -> Any:
    """What sqlite3 binds for a value: an adapter's result for a type it has one for (a datetime's isoformat)."""
    return sqlite3.adapt(value, sqlite3.PrepareProtocol, value)


def test_quick_binds_bind_what_the_processors_and_the_driver_bind(tmp_path: Path) -> None:
    engine = journal_engine(f"sqlite:///{tmp_path / 'journal.db'}")
    dialect = engine.dialect
    rng = random.Random(7)
    moments = [datetime(2001, 2, 3, 4, 5, 6, tzinfo=UTC), datetime(1, 1, 1, tzinfo=UTC),
               datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), datetime(999, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
               datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=timezone(timedelta(hours=2))),
               datetime.now(UTC)]
    for _ in range(3000):  # many in a few seconds, as the journal sees them, and some anywhere
        start = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC) if rng.random() < 0.9 else datetime(1990, 1, 1, tzinfo=UTC)
        moment = start + timedelta(microseconds=rng.randrange(5_000_000 if start.year > 2000 else 10**15))
        moments.append(moment.replace(microsecond=0) if rng.random() < 0.1 else moment)
    samples: dict[str, list[Any]] = {
        "created_at": moments,
        "commissions": [{}, {"BTC": 2e-06}, {"BTC": 0.1, "USDT": 1.5e-10}, {"\u00e9": 1.0}, {"A": 1}, {"A": True},
                        {"A": float("nan")}, {"A": float("inf")}, {1: 0.5}, {"A": {"B": 0.5}}, [0.5], "x", 0.5],
        "reduce_only": [False, True, 0, 1],
    }
    for name, values in samples.items():
        column_type = _JOURNAL.c[name].type
        processor = _bind_processor(column_type, dialect)
        quick = _quick_bind(column_type, processor, dialect)
        assert quick is not processor  # the quick bind is in use on SQLite
        for value in values:
            assert _driver_bound(quick(value)) == _driver_bound(processor(value) if processor else value), value
            assert type(_driver_bound(quick(value))) is type(_driver_bound(processor(value) if processor else value))
    engine.dispose()


def test_an_order_path_row_is_stored_as_the_processors_and_the_driver_store_it(tmp_path: Path) -> None:
    """Stored byte for byte as the column types' own bind processors and sqlite3's adapters store it, the way this
    path wrote before its quicker binds."""
    engine = journal_engine(f"sqlite:///{tmp_path / 'journal.db'}", autocheckpoint=False)
    create_desk_tables(engine)
    journal = OrderJournal(engine)
    executor = OrderExecutor(None, journal, worker="gateway")  # type: ignore[arg-type]
    reference = sqlite3.connect(tmp_path / "reference.db")
    for (sql,) in sqlite3.connect(tmp_path / "journal.db").execute(
            "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL"):
        reference.execute(sql)

    def by_processors(table: Any, values: dict[str, Any], update: bool = False) -> None:
        names = [name for name in values if not (update and name == "client_order_id")]
        bound = {"_key": values["client_order_id"]} if update else {}
        for name in names:
            processor = _bind_processor(table.c[name].type, engine.dialect)
            value = values[name]
            bound[name] = _driver_bound(processor(value) if processor and value is not None else value)
        statement = table.update().where(table.c.client_order_id == bindparam("_key")) if update else table.insert()
        compiled = statement.compile(dialect=engine.dialect, column_keys=names)
        reference.execute(str(compiled), [bound[name] for name in compiled.positiontup])
        reference.commit()

    for n, sent in enumerate([datetime.now(UTC), datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), None]):
        row = executor._row(_intent(f"g{n:023d}"), 1, None, "bot-a")
        row.status, row.sent_at = OrderStatus.SENT, sent
        if n == 1:
            row.created_at = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=timezone(timedelta(hours=-5)))
        companion = BotOrderRef("bot-a", f"g-{n}", row.intent_id, "BTCUSDT").journal_row()
        journal.intend(row, companion)
        by_processors(_JOURNAL, {name: getattr(row, name) for name in _JOURNAL.c.keys()})
        by_processors(companion[0], {"id": n + 1, **companion[1]})
        apply_report(row, FILLED)
        journal.update(row)
        by_processors(_JOURNAL, {name: getattr(row, name) for name in _JOURNAL.c.keys()}, update=True)
    for query in ("SELECT *, typeof(created_at), typeof(commissions) FROM worker_order ORDER BY rowid",
                  "SELECT *, typeof(created_at) FROM gateway_order ORDER BY rowid"):
        ours = sqlite3.connect(tmp_path / "journal.db").execute(query).fetchall()
        assert ours == reference.execute(query).fetchall() and len(ours) == 3
    engine.dispose()
