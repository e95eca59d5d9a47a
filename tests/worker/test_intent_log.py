"""The journal's intent log: a new order is durable before its request leaves (in the log, or in the database when
this process does not own the log), its row is in the database once it is answered, a crash between the two is
written from the log at the next start, and a second process on the same journal never replays or empties the log
of a live owner."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select

from keyguard.gateway.desk import BotOrderRef, GatewayOrder, create_desk_tables
from keyguard.worker import intent_log
from keyguard.worker.journal import JournalOrder, OrderJournal, OrderStatus, journal_engine
from keyguard.worker.orders import OrderExecutor, OrderIntent


def open_journal(path: Path) -> OrderJournal:
    """The journal as a process opens it: an engine of its own."""
    engine = journal_engine(f"sqlite:///{path}", autocheckpoint=False)
    create_desk_tables(engine)
    return OrderJournal(engine)


class Venue:
    """An exchange that, at the instant each order arrives, asks what a process started now would find of it."""

    def __init__(self, database: Path) -> None:
        self.database = database
        self.seen_at_send: list[str] = []

    def new_order(self, params: Any, deadline_s: float | None = None, *, while_waiting: Any = None) -> dict[str, Any]:
        cid = params["newClientOrderId"]
        reader = OrderJournal(journal_engine(f"sqlite:///{self.database}"))
        in_database = reader.get(cid) is not None
        reader.engine.dispose()
        log = Path(f"{self.database}.intents")
        in_log = log.exists() and cid in log.read_text()
        self.seen_at_send.append("database" if in_database else "intent log" if in_log else "nowhere")
        if while_waiting is not None:
            while_waiting()
        return {"symbol": params["symbol"], "orderId": len(self.seen_at_send), "clientOrderId": cid,
                "status": "FILLED", "executedQty": str(params["quantity"]), "cummulativeQuoteQty": "120.0"}


def intent(n: int) -> OrderIntent:
    return OrderIntent("BTCUSDT", "BTC", "BUY", 0.002, intent_id=f"{n:08x}".ljust(32, "f"))


def mapping(order_intent: OrderIntent, bot_cid: str) -> tuple[Any, dict[str, object]]:
    return BotOrderRef("bot-a", bot_cid, order_intent.intent_id, "BTCUSDT").journal_row()


def test_an_order_is_durable_before_it_leaves_and_its_row_is_written_by_its_answer(tmp_path: Path) -> None:
    database = tmp_path / "journal.db"
    journal = open_journal(database)
    assert journal.keep_intents() == 0
    venue = Venue(database)
    executor = OrderExecutor(venue, journal, worker="bot-a")  # type: ignore[arg-type]
    results = [executor.place(intent(n), companion=mapping(intent(n), f"o-{n}")) for n in range(3)]
    assert venue.seen_at_send == ["intent log"] * 3
    reader = open_journal(database)
    for result in results:
        row = reader.get(result.client_order_id)
        assert row is not None and row.status == OrderStatus.FILLED and row.worker == "bot-a"
    with Session(reader.engine) as session:
        assert {r.bot_client_order_id for r in session.exec(select(GatewayOrder))} == {"o-0", "o-1", "o-2"}


def test_a_crash_between_the_log_and_the_database_is_written_at_the_next_start(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    database = tmp_path / "journal.db"
    journal = open_journal(database)
    journal.keep_intents()
    executor = OrderExecutor(Venue(database), journal, worker="bot-a")  # type: ignore[arg-type]
    executor.place(intent(1), companion=mapping(intent(1), "done"))
    # Sent with only its intent record written, then the process dies (its flock goes with it).
    lost = {"lost-a": intent(2), "lost-b": intent(3)}
    rows = [executor._row(order_intent, 1, None, "bot-a") for order_intent in lost.values()]
    for row, (bot_cid, order_intent) in zip(rows, lost.items(), strict=True):
        journal.intend(row, mapping(order_intent, bot_cid))
    journal.release_intents()
    with open(f"{database}.intents", "ab") as log:
        log.write(b'["kg-cut-short", "ab')  # an append cut short by the crash: its request never left

    restarted = open_journal(database)
    with caplog.at_level(logging.WARNING):
        assert restarted.keep_intents() == 2
    assert "line 4: not a whole record" in caplog.text
    for row in rows:
        back = restarted.get(row.client_order_id)
        assert back is not None and back.status == OrderStatus.SENT  # reconciliation looks these up
    with Session(restarted.engine) as session:
        assert {r.bot_client_order_id for r in session.exec(select(GatewayOrder))} == {"done", "lost-a", "lost-b"}
    assert Path(f"{database}.intents").stat().st_size == 0
    restarted.release_intents()
    assert open_journal(database).keep_intents() == 0


def test_a_second_process_never_takes_a_live_owners_log_and_journals_before_sending(tmp_path: Path) -> None:
    database = tmp_path / "journal.db"
    owner = open_journal(database)
    owner.keep_intents()
    row = OrderExecutor(None, owner, worker="bot-a")._row(intent(7), 1, None, "bot-a")  # type: ignore[arg-type]
    owner.intend(row)  # in flight at the owner: durable in its log only

    other = open_journal(database)
    assert other.keep_intents() is None
    assert row.client_order_id in Path(f"{database}.intents").read_text()  # not replayed, not emptied
    venue = Venue(database)
    OrderExecutor(venue, other, worker="cli").place(intent(8))  # type: ignore[arg-type]
    assert venue.seen_at_send == ["database"]


def test_the_log_stays_small_under_load_and_keeps_what_is_still_pending(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(intent_log, "COMPACT_AT", 4096)
    database = tmp_path / "journal.db"
    journal = open_journal(database)
    journal.keep_intents()
    executor = OrderExecutor(Venue(database), journal, worker="bot-a")  # type: ignore[arg-type]
    # One order stays in flight (durable in the log only) while many others come and go.
    stuck = executor._row(intent(1000), 1, None, "bot-a")
    journal.intend(stuck, mapping(intent(1000), "stuck"))
    for n in range(60):
        executor.place(intent(n), companion=mapping(intent(n), f"o-{n}"))
    log_file = Path(f"{database}.intents")
    assert log_file.stat().st_size < 4096 + 1024
    assert stuck.client_order_id in log_file.read_text()

    journal.release_intents()  # the process dies with that order still only in the log
    restarted = open_journal(database)
    assert restarted.keep_intents() == 1
    back = restarted.get(stuck.client_order_id)
    assert back is not None and back.status == OrderStatus.SENT
    assert len(restarted.orders()) == 61


def test_a_record_made_from_a_rows_values_replays_as_that_row(tmp_path: Path) -> None:
    database = tmp_path / "journal.db"
    journal = open_journal(database)
    journal.keep_intents()
    executor = OrderExecutor(None, journal, worker="bot-a")  # type: ignore[arg-type]
    executor._row(intent(1), 1, None, "bot-a")  # the first row of its shape is built (and checked) the slow way
    values = executor._row_values(intent(2), 1, None, "bot-a")
    pending = journal.intend_values(values, mapping(intent(2), "by-values"))
    assert pending.row is None  # not built yet: the object and the insert wait for the request to be out
    journal.release_intents()  # the process dies before the wait's work ran

    restarted = open_journal(database)
    assert restarted.keep_intents() == 1
    back = restarted.get(values["client_order_id"])
    expected = JournalOrder(**values)
    assert back is not None
    assert back.model_dump() == {**expected.model_dump(), "sent_at": back.sent_at, "created_at": back.created_at,
                                 "updated_at": back.updated_at}
    assert [getattr(back, t).replace(tzinfo=None) for t in ("sent_at", "created_at", "updated_at")] == \
        [values[t].replace(tzinfo=None) for t in ("sent_at", "created_at", "updated_at")]
