"""The gateway's order desk: every bot order passes the envelope, is journaled, placed idempotently and answered
in Binance's own shapes; a bot sees only its own orders, under its own client order ids.

Bot ids never reach the exchange: each order goes out under an id the executor mints (`kg-<intent>-<attempt>`),
so two bots that both use `order-1` never collide, and a retry of one bot id is answered from the journal."""

from __future__ import annotations

import logging
import math
import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from sqlalchemy import Index, UniqueConstraint, and_, exists, or_
from sqlalchemy import select as columns
from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, SQLModel, select

from keyguard.errors import ExchangeError
from keyguard.exchanges.binance_client import BinanceSpotClient, ExchangeRejected, OutcomeUnknown
from keyguard.exchanges.budget import RateLimitRefused
from keyguard.gateway.envelope import Envelope
from keyguard.gateway.let_go import LetGoIds
from keyguard.gateway.market import MarketData
from keyguard.worker.journal import (
    FINAL_STATUSES,
    OPEN_STATUSES,
    JournalOrder,
    OrderJournal,
    OrderStatus,
    commission_pending_of,
)
from keyguard.worker.orders import OrderExecutor, OrderIntent, OrderResult, apply_report
from keyguard.worker.portfolio import Book, effect, row_effect, utc_day_start
from keyguard.worker.risk import OrderCheck, Refusal

log = logging.getLogger(__name__)

CLIENT_ORDER_ID = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")
# Parameters the gateway owns on the way out: the bot's signature and timing are checked, then replaced.
SIGNING_PARAMS = frozenset({"timestamp", "recvWindow", "signature"})
NUMBER = re.compile(r"^([0-9]{1,20})(\.[0-9]{1,20})?$")

# Journal rows read at a time when the whole journal is read (the start-up fold and mappings).
BATCH = 1000
# Ids a look-up of let-go orders names at once (SQLite allows 32,766 bound values; PostgreSQL far more).
LOOKUP_BATCH = 500
UNVALUED_QUOTE = "UNVALUED_QUOTE"
REJECTED = -2010
UNKNOWN_ORDER = -2011
NO_SUCH_ORDER = -2013
# Statuses of an order the exchange may hold without the journal knowing what became of it.
UNSETTLED = frozenset({OrderStatus.PENDING, OrderStatus.SENT, OrderStatus.UNKNOWN})
OUTCOME_UNKNOWN_MSG = ("Timeout waiting for response from backend server. Send status unknown; execution status "
                       "unknown. KEYGUARD_OUTCOME_UNKNOWN: the gateway could not settle the order by look-up; retry "
                       "with the same newClientOrderId to get it")


class BinanceError(Exception):
    """An answer in Binance's error shape: HTTP status, {"code", "msg"} and headers (Retry-After)."""

    def __init__(self, status: int, code: int, msg: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"HTTP {status} {code}: {msg}")
        self.status, self.code, self.msg, self.headers = status, code, msg, headers or {}


def mandatory(name: str) -> BinanceError:
    return BinanceError(400, -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")


def refusal_error(refusal: Refusal) -> BinanceError:
    """How bots already hear a rejected order: 400, -2010, with Keyguard's code first."""
    return BinanceError(400, REJECTED, f"KEYGUARD_{refusal.code}: {refusal.message}")


def budget_error(message: str, retry_after_s: float | None) -> BinanceError:
    wait = max(1, math.ceil(retry_after_s or 1.0))
    return BinanceError(429, -1003, f"KEYGUARD_RATE_BUDGET: {message}; the IP's shared budget has room again in "
                                    f"{wait}s", {"Retry-After": str(wait)})


def exchange_answer(exc: ExchangeRejected) -> BinanceError:
    """The exchange's own refusal, passed back as it was (never the exchange key or its signature)."""
    if exc.status in (418, 429):
        return budget_error(f"the exchange refused with HTTP {exc.status}", getattr(exc, "retry_after", None))
    return BinanceError(exc.status, exc.code if isinstance(exc.code, int) else -1000, exc.exchange_message)


def unknown_answer(exc: OutcomeUnknown) -> BinanceError:
    return BinanceError(503, -1001, f"Internal error; unable to process your request. Please try again. "
                                    f"(KEYGUARD_EXCHANGE_UNAVAILABLE: {exc})")


@contextmanager
def answered_as_binance() -> Iterator[None]:
    """An exchange call's failure as the bot hears it: the budget's refusal as 429 with Retry-After, the exchange's
    own refusal as it was, an unknown outcome as 503."""
    try:
        yield
    except RateLimitRefused as exc:
        raise budget_error(str(exc), exc.retry_after_s) from None
    except ExchangeRejected as exc:
        raise exchange_answer(exc) from None
    except OutcomeUnknown as exc:
        raise unknown_answer(exc) from None


def number(params: dict[str, str], name: str) -> float | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    if not NUMBER.match(raw):
        raise BinanceError(400, -1100, f"Illegal characters found in parameter '{name}'; legal range is "
                                       f"'{NUMBER.pattern}'.")
    return float(raw)


def journal_report(row: JournalOrder) -> dict[str, Any]:
    """An order report in Binance's query shape, from what the journal knows of the order."""
    order_id = row.exchange_order_id or ""
    return {"symbol": row.symbol, "orderId": int(order_id) if order_id.isdigit()
            else -1, "clientOrderId": row.client_order_id, "price": f"{row.price or 0:f}",
            "origQty": f"{row.quantity:f}", "executedQty": f"{row.executed_qty:f}",
            "cummulativeQuoteQty": f"{row.quote_qty:f}", "status": str(row.status), "type": row.order_type,
            "side": row.side}


class GatewayOrder(SQLModel, table=True):
    """A bot's order as the bot named it, journaled before anything is sent; one row per (bot, client id)."""

    __tablename__ = "gateway_order"
    __table_args__ = (UniqueConstraint("bot", "bot_client_order_id"),)

    id: int | None = Field(default=None, primary_key=True)
    bot: str = Field(index=True)
    bot_client_order_id: str = Field(max_length=36)
    intent_id: str = Field(index=True)
    symbol: str
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))


_GATEWAY_ORDER = GatewayOrder.__table__  # type: ignore[attr-defined]
_JOURNAL_ORDER = JournalOrder.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class BotOrderRef:
    """A bot's order id and the intent it names, as the desk keeps it in memory (a GatewayOrder row is the record;
    a plain object because building an ORM row on every order cost more than writing it)."""

    bot: str
    bot_client_order_id: str
    intent_id: str
    symbol: str

    def journal_row(self) -> tuple[Any, dict[str, object]]:
        """The GatewayOrder row to write beside the journal's first entry for this order."""
        return _GATEWAY_ORDER, {"bot": self.bot, "bot_client_order_id": self.bot_client_order_id,
                                "intent_id": self.intent_id, "symbol": self.symbol, "created_at": datetime.now(UTC)}


def _closed_at(status: str, executed_qty: float, commission_qty: float, updated_at: datetime) -> float | None:
    """When an order closed for good (final, every trade's commission known), from its row's columns; None while
    it is open."""
    if status not in FINAL_STATUSES or commission_pending_of(status, executed_qty, commission_qty):
        return None
    stamp = updated_at if updated_at.tzinfo is not None else updated_at.replace(tzinfo=UTC)
    return stamp.timestamp()


def _row_closed_at(row: JournalOrder) -> float | None:
    return _closed_at(row.status, row.executed_qty, row.commission_qty, row.updated_at)


# Orders the desk let go of are found by the exchange's order id (a bot's query by orderId, its trades).
_BY_EXCHANGE_ORDER_ID = Index("ix_worker_order_exchange_order_id",
                              JournalOrder.__table__.c.exchange_order_id)  # type: ignore[attr-defined]


def create_desk_tables(engine: Engine) -> None:
    SQLModel.metadata.create_all(engine, tables=[GatewayOrder.__table__])  # type: ignore[attr-defined]
    _BY_EXCHANGE_ORDER_ID.create(engine, checkfirst=True)


class OrderDesk:
    def __init__(self, client: BinanceSpotClient, journal: OrderJournal, executor: OrderExecutor, envelope: Envelope,
                 market: MarketData, *, deadline_s: float, clock: Callable[[], float] = time.time,
                 defer: Callable[[Callable[[], object]], None],
                 quote_assets: Iterable[str], on_runaway: Callable[[str, str], None] | None = None,
                 keep_closed_s: float = 3600.0) -> None:
        self.client = client
        self.quote_assets = frozenset(quote_assets)
        self.journal = journal
        self.executor = executor
        self.envelope = envelope
        self.market = market
        self.deadline_s = deadline_s
        self.clock = clock
        self.on_runaway = on_runaway
        # Set while the fast lane serves: releases its unused verdicts, True when there were any (gateway/lane.py).
        self.reclaim: Callable[[], bool] | None = None
        # Work that may wait until the bot has its answer (the gateway's AfterAnswer.defer: at once outside a request).
        self.defer = defer
        create_desk_tables(journal.engine)
        self._guard = threading.Lock()
        # (bot, bot client id) -> [its lock, how many requests hold or wait for it]: dropped when none do, so the
        # map holds only the orders in progress, not every order ever placed.
        self._locks: dict[tuple[str, str], list[Any]] = {}
        # exchange client id -> (bot, bot client id); exchange order id -> exchange client id
        self._owner: dict[str, tuple[str, str]] = {}
        self._order_ids: dict[int, str] = {}
        # (bot, bot client id) -> its mapping row: the journal's index, kept in memory (the table is the record).
        self._mappings: dict[tuple[str, str], BotOrderRef] = {}
        self.books: dict[str, Book] = {}
        self.prices: dict[str, float] = {}  # by base asset, for today's PnL
        # The symbol each base asset's price is read from: the one its orders were last placed or booked in (its
        # quote is the books' cash), never whichever of the exchange's pairs for that asset comes last.
        self.price_symbols: dict[str, str] = {}
        self._book_lock = threading.RLock()
        # exchange client id -> (base moved, quote moved) of the order already in the books, net of commission
        self._seen: dict[str, tuple[float, float]] = {}
        self._day = 0
        # exchange client id -> the settle_open round that last looked the open order up
        self._looked: dict[str, int] = {}
        self._look_round = 0
        self.counters = {"orders_sent": 0, "orders_replayed": 0, "orders_unknown": 0, "orders_resent": 0}
        # intent id -> [bot, order, quantity the envelope counts for it]: every order let through that could still
        # add to a position beyond what the books hold. Its whole quantity while it is on the wire or its outcome
        # is unknown (as if filled: unknown is never safe), what it has not filled while it rests at the exchange,
        # nothing once it is closed (see _recount).
        self._counted: dict[str, list[Any]] = {}
        self._counted_lock = threading.Lock()
        # A closed order (final, its commission known) stays in the maps above for `keep_closed_s` after it closed,
        # then only in the journal: a gateway that runs for months holds its open and recent orders, not every order
        # it ever placed (about 1.2 kB each). `_closing` queues (closed at, intent id) in that order; `_retired`
        # knows hash((bot, bot client id)) of each order let go (about 2 bytes each, let_go.py), so a bot reusing an
        # old id still gets that order (read back from the journal) and never a second one.
        self.keep_closed_s = keep_closed_s
        self._closing: deque[tuple[float, str]] = deque()
        self._retired = LetGoIds()
        self._load()

    # -- ownership -------------------------------------------------------------------------------------------
    def _load(self) -> None:
        """The maps from the journal at start: the open orders and those closed within `keep_closed_s`; the others
        as hashes of their bot ids only. The database picks out the rows of open and recent orders (a long run's
        journal is mostly neither), and the rest is read in batches of the columns needed, without a row object
        for each."""
        cutoff = self.clock() - self.keep_closed_s
        j, g = _JOURNAL_ORDER.c, _GATEWAY_ORDER.c
        recent = datetime.fromtimestamp(cutoff, UTC)
        live = or_(j.status.not_in([str(s) for s in FINAL_STATUSES]),
                   and_(j.status != str(OrderStatus.PAPER_FILLED), j.executed_qty > j.commission_qty + 1e-12),
                   j.updated_at > recent)
        # intent id -> when it closed (None: open) for each order open or closed since `cutoff`: an order with any
        # such row stays in memory (closed when the last of them did); every other order closed before `cutoff`.
        kept: dict[str, float | None] = {}
        with self.journal.engine.connect() as db:
            for intent_id, status, executed, commission_qty, updated_at in db.execute(
                    columns(j.intent_id, j.status, j.executed_qty, j.commission_qty, j.updated_at).where(live)):
                at = _closed_at(status, executed, commission_qty, updated_at)
                before = kept.get(intent_id, at)
                kept[intent_id] = None if at is None or before is None else max(at, before)
            self._closing.extend(sorted((at, intent) for intent, at in kept.items() if at is not None))
            mapped: dict[str, tuple[str, str]] = {}
            journaled = exists().where(j.intent_id == g.intent_id)
            for bot, bot_cid, intent_id, symbol, in_journal in db.execute(
                    columns(g.bot, g.bot_client_order_id, g.intent_id, g.symbol, journaled.label("journaled"))
                    .execution_options(yield_per=BATCH)):
                if intent_id in kept or not in_journal:  # not in the journal: in the intent log only
                    self._mappings[(bot, bot_cid)] = BotOrderRef(bot, bot_cid, intent_id, symbol)
                    mapped[intent_id] = (bot, bot_cid)
                else:
                    self._retired.add(hash((bot, bot_cid)))
            intents = list(mapped)
            for at in range(0, len(intents), LOOKUP_BATCH):
                for cid, intent_id, order_id in db.execute(
                        columns(j.client_order_id, j.intent_id, j.exchange_order_id)
                        .where(j.intent_id.in_(intents[at:at + LOOKUP_BATCH]))):
                    self._remember(cid, order_id, mapped[intent_id])
        self.refold()
        for entry in self.journal.orders(OPEN_STATUSES):  # in order: a resend's row comes after the row it replaced
            owner = self._owner.get(entry.client_order_id)
            base = self.market.base_of.get(entry.symbol)
            if owner is not None and base is not None:
                check = OrderCheck(entry.symbol, base, entry.side, entry.quantity, entry.price or 0.0)
                with self._counted_lock:
                    self._counted.setdefault(entry.intent_id, [owner[0], check, 0.0])
                self._recount(entry.intent_id, entry)

    def _remember(self, exchange_cid: str, order_id: Any, owner: tuple[str, str]) -> None:
        self._owner[exchange_cid] = owner
        if order_id is not None and str(order_id).isdigit():
            self._order_ids[int(order_id)] = exchange_cid

    def _known_owner(self, report: dict[str, Any]) -> tuple[str, str, None] | None:
        """(bot, bot client id, None) of the order a report names, if memory holds it."""
        cid = report.get("clientOrderId") or report.get("origClientOrderId")
        if cid in self._owner:
            return (*self._owner[str(cid)], None)
        order_id = report.get("orderId")
        if isinstance(order_id, int) and order_id in self._order_ids:
            owner = self._owner.get(self._order_ids[order_id])
            return (*owner, None) if owner is not None else None
        return None

    def _as_bot_sees_it(self, report: dict[str, Any], bot_cid: str, exchange_cid: str | None = None) -> dict[str, Any]:
        out = dict(report)
        for name in ("clientOrderId", "origClientOrderId"):
            value = out.get(name)
            if value is not None and (value == exchange_cid or value in self._owner):
                out[name] = bot_cid
        return out

    def _lock_for(self, key: tuple[str, str]) -> threading.Lock:
        """The order's lock, counted as wanted until `_unlock` (acquire it after this)."""
        with self._guard:
            entry = self._locks.get(key)
            if entry is None:
                entry = self._locks[key] = [threading.Lock(), 0]
            entry[1] += 1
            return entry[0]

    def _unlock(self, key: tuple[str, str], lock: threading.Lock) -> None:
        lock.release()
        self._unlock_unheld(key)

    def _unlock_unheld(self, key: tuple[str, str]) -> None:
        """No longer wanted by this caller, who does not hold it (see `_lock_for`)."""
        with self._guard:
            entry = self._locks[key]
            entry[1] -= 1
            if not entry[1]:
                del self._locks[key]

    def _mapping(self, bot: str, bot_cid: str) -> BotOrderRef | None:
        key = (bot, bot_cid)
        found = self._mappings.get(key)
        if found is None and self._retired and hash(key) in self._retired:
            # Its order closed `keep_closed_s` ago: the mapping is in the journal only.
            with Session(self.journal.engine) as session:
                row = session.exec(select(GatewayOrder).where(GatewayOrder.bot == bot,
                                                              GatewayOrder.bot_client_order_id == bot_cid)).first()
            found = BotOrderRef(row.bot, row.bot_client_order_id, row.intent_id, row.symbol) if row else None
        return found

    def _stored_owner(self, exchange_cid: str | None = None,
                      order_id: int | None = None) -> tuple[str, str, str] | None:
        """(bot, bot client id, exchange client id) of one let-go order, by its exchange client id or order id."""
        if exchange_cid is not None:
            return self._stored_owners(exchange_cids=[exchange_cid]).get(exchange_cid)
        return self._stored_owners(order_ids=[order_id]).get(order_id) if order_id is not None else None

    def _stored_owners(self, exchange_cids: Iterable[str] = (),
                       order_ids: Iterable[int] = ()) -> dict[str | int, tuple[str, str, str]]:
        """(bot, bot client id, exchange client id) of let-go orders, keyed by the exchange client ids and order ids
        asked for: their rows joined to their mappings, a few hundred ids a query (a bot listing its orders or trades
        names many let-go ones at once)."""
        found: dict[str | int, tuple[str, str, str]] = {}
        if not self._retired:
            return found
        j, g = _JOURNAL_ORDER.c, _GATEWAY_ORDER.c
        wanted = ((j.client_order_id, sorted({c for c in exchange_cids if c.startswith("kg-")})),
                  (j.exchange_order_id, sorted({str(i) for i in order_ids})))
        with self.journal.engine.connect() as db:
            for column, values in wanted:
                for at in range(0, len(values), LOOKUP_BATCH):
                    for bot, bot_cid, cid, order_id in db.execute(
                            columns(g.bot, g.bot_client_order_id, j.client_order_id, j.exchange_order_id)
                            .select_from(_JOURNAL_ORDER.join(_GATEWAY_ORDER, g.intent_id == j.intent_id))
                            .where(column.in_(values[at:at + LOOKUP_BATCH]))):
                        if column is j.client_order_id:
                            found[cid] = (bot, bot_cid, cid)
                        elif order_id is not None and order_id.isdigit():
                            found[int(order_id)] = (bot, bot_cid, cid)
        return found

    def _latest_row(self, intent_id: str) -> JournalOrder | None:
        chain = self.journal.chain(intent_id)
        return chain[-1] if chain else None

    def _exchange_ref(self, bot: str, params: dict[str, str]) -> tuple[str, str]:
        """(exchange client id, bot client id) of the bot's order named by origClientOrderId or orderId."""
        cid, order_id = params.get("origClientOrderId"), params.get("orderId")
        if cid:
            mapping = self._mapping(bot, cid)
            row = self._latest_row(mapping.intent_id) if mapping is not None else None
            if row is not None:
                return row.client_order_id, cid
        elif order_id:
            if not order_id.isdigit():
                raise BinanceError(400, -1100, "Illegal characters found in parameter 'orderId'.")
            exchange_cid = self._order_ids.get(int(order_id))
            owner = self._owner.get(exchange_cid) if exchange_cid else None
            if exchange_cid and owner and owner[0] == bot:
                return exchange_cid, owner[1]
            stored = self._stored_owner(order_id=int(order_id)) if exchange_cid is None else None
            if stored is not None and stored[0] == bot:
                return stored[2], stored[1]
        else:
            raise BinanceError(400, -1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were "
                                           "empty/null!")
        raise BinanceError(400, NO_SUCH_ORDER, "Order does not exist.")

    # -- new orders ------------------------------------------------------------------------------------------
    def place(self, bot: str, params: list[tuple[str, str]], *, test: bool = False) -> dict[str, Any]:
        p = dict(params)
        for name in ("symbol", "side", "type"):
            if not p.get(name):
                raise mandatory(name)
        bot_cid = p.get("newClientOrderId") or f"gw{os.urandom(15).hex()}"
        if not CLIENT_ORDER_ID.match(bot_cid):
            raise BinanceError(400, -1100, "Illegal characters found in parameter 'newClientOrderId'; legal range "
                                           f"is '{CLIENT_ORDER_ID.pattern}'.")
        if test:
            self._admit(bot, p, test=True)
            self._call("POST", "/api/v3/order/test", self._wire(params))
            return {}
        # The order's lock is held until the journal has its final state (written once the bot has its answer): a
        # retry of the same id waits for it rather than reading the row half way.
        key = (bot, bot_cid)
        lock = self._lock_for(key)
        lock.acquire()
        admitted: OrderCheck | None = None
        counted: str | None = None  # the intent id under which `_counted` holds the order
        result: OrderResult | None = None
        try:
            mapping = self._mapping(bot, bot_cid)
            if mapping is not None:
                replayed = self._replay(bot, mapping)
                if replayed is not None:
                    return replayed
            check = admitted = self._admit(bot, p, test=False)  # its whole quantity counted from here (_recount)
            intent = OrderIntent(check.symbol, check.base_asset, check.side, check.quantity,
                                 order_type=p["type"].upper(), price=number(p, "price"),
                                 reference_price=check.price, wire=self._wire(params))
            counted = intent.intent_id
            mapping, result = self._execute(bot, bot_cid, check, intent)
            return self._settle(bot, mapping, check, result)
        finally:
            if counted is not None:
                # An answered order is recounted by `_settle`'s `_note` once its answer is in the books. Otherwise
                # (refused, outcome unknown) from its row: nothing when refused, all of it while unknown.
                if result is None:  # the executor failed: counted on unless nothing of it was written
                    self.defer(partial(self._recount_failed, counted))
                elif result.report is None:
                    self.defer(partial(self._recount, counted, result.journal_row))
            elif admitted is not None:
                self.envelope.count(bot, admitted, -admitted.quantity)  # let through, never made into an order
            self.defer(partial(self._unlock, key, lock))

    def _execute(self, bot: str, bot_cid: str, check: OrderCheck, intent: OrderIntent,
                 sent: Callable[[], dict[str, Any]] | None = None,
                 sent_at: float | None = None) -> tuple[BotOrderRef, OrderResult]:
        """An admitted order (its quantity counted in flight by the envelope) made into the bot's order: counted,
        mapped, journaled with its mapping, sent (or, with `sent`, already sent by the fast lane)."""
        with self._counted_lock:
            self._counted[intent.intent_id] = [bot, check, check.quantity]
        mapping = BotOrderRef(bot, bot_cid, intent.intent_id, check.symbol)
        self._mappings[(bot, bot_cid)] = mapping
        # The mapping is written in the same transaction as the journal row, before the request leaves.
        result = self.executor.place(intent, deadline_s=self.deadline_s, worker=bot, companion=mapping.journal_row(),
                                     defer=self.defer, sent=sent, sent_at=sent_at)
        return mapping, result

    def adopt(self, bot: str, bot_cid: str, check: OrderCheck, reserved: OrderCheck, intent: OrderIntent,
              sent: Callable[[], dict[str, Any]], sent_at: float) -> dict[str, Any]:
        """An order the fast lane sent on a verdict (gateway/lane.py), booked as if it had been placed here: the
        verdict's reservation (`reserved`, counted in flight when it was made) becomes the order's own count, its
        row and mapping are journaled, and its answer (`sent`) is settled as place() settles one: the bot's view of
        the report, or the BinanceError it is answered with (a look-up of an unknown outcome included)."""
        key = (bot, bot_cid)
        lock = self._lock_for(key)
        lock.acquire()
        result: OrderResult | None = None
        counted = False
        try:
            if key in self._mappings or (self._retired and hash(key) in self._retired and self._mapping(*key)):
                # The lane checks a bot's id is new before it sends; an old one here means a second order is out.
                log.error("gateway: the fast lane sent an order under bot %s's id %s, which names an earlier order",
                          bot, bot_cid)
            self.envelope.unreserve(bot, reserved, check)
            counted = True
            self.price_symbols[check.base_asset] = check.symbol
            mapping, result = self._execute(bot, bot_cid, check, intent, sent=sent, sent_at=sent_at)
            return self._settle(bot, mapping, check, result)
        finally:
            if counted:
                if result is None:
                    self.defer(partial(self._recount_failed, intent.intent_id))
                elif result.report is None:
                    self.defer(partial(self._recount, intent.intent_id, result.journal_row))
            self.defer(partial(self._unlock, key, lock))

    def take_over(self, row: JournalOrder, bot: str, bot_cid: str) -> None:
        """An order the fast lane sent and never reported (it stopped), journaled as sent: mapped, and counted in
        flight whole until housekeeping's look-up settles it, as a start-up finds an open order."""
        self._mappings[(bot, bot_cid)] = BotOrderRef(bot, bot_cid, row.intent_id, row.symbol)
        self._remember(row.client_order_id, None, (bot, bot_cid))
        base = self.market.base_of.get(row.symbol)
        if base is not None:
            check = OrderCheck(row.symbol, base, row.side, row.quantity, row.price or 0.0)
            with self._counted_lock:
                self._counted.setdefault(row.intent_id, [bot, check, 0.0])
            self._recount(row.intent_id, row)

    def _wire(self, params: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
        return tuple((k, v) for k, v in params if k not in SIGNING_PARAMS and k != "newClientOrderId")

    def _admit(self, bot: str, p: dict[str, str], *, test: bool) -> OrderCheck:
        """The envelope's verdict on an order (refusals counted, a runaway bot held)."""
        symbol, side = p["symbol"], p["side"].upper()
        # What the order itself says first: a malformed one costs no request to the exchange.
        limit_price, stop = number(p, "price"), number(p, "stopPrice")
        quantity, quote = number(p, "quantity"), number(p, "quoteOrderQty")
        if quantity is not None and quote is not None:
            # Binance's answer to both sizes; one judged here and the other executed by an exchange that reads it
            # would let an order past its caps.
            raise BinanceError(400, -1106, "Parameter 'quoteOrderQty' sent when not required.")
        if quantity is None and quote is None:
            raise mandatory("quantity")
        with answered_as_binance():
            base = self.market.base_asset(symbol)
        if base is None:
            raise BinanceError(400, -1121, "Invalid symbol.")
        cash_asset = self.market.quote_of.get(symbol)
        if cash_asset not in self.quote_assets:
            named = cash_asset or "an asset the exchange did not name"
            unvalued = Refusal(UNVALUED_QUOTE, f"{symbol} is quoted in {named}; the gateway counts cash in "
                                               f"{', '.join(sorted(self.quote_assets))} (quote_assets), so what this "
                                               "pair moves could not be valued against the caps")
            if not test:
                self._refused(bot, unvalued, self.clock())
            raise refusal_error(unvalued)
        with answered_as_binance():
            # A sell fills at its limit or better: a limit below the market (a fat finger, or a bot dumping past its
            # order cap) fills at the market. Its notional is at the higher of the two. A buy fills at its limit or
            # lower: the limit bounds it.
            market_price = self.market.price(symbol) if limit_price is None or side == "SELL" else None
        self.price_symbols[base] = symbol
        if market_price is None:
            price = limit_price if limit_price is not None else 0.0
            self.prices.setdefault(base, price)
        else:
            price = market_price if limit_price is None else max(limit_price, market_price)
            self.prices[base] = market_price
        if stop is not None and limit_price is None:
            # A stop or take-profit without a limit fills at the market once triggered, near its stop price: a buy
            # stopping in above the market pays about the stop.
            price = max(price, stop)
        if quantity is None and quote is not None and price > 0:
            quantity = quote / price
        if quantity is None:
            raise mandatory("quantity")
        check = OrderCheck(symbol, base, side, quantity, price)
        now = self.clock()
        refusal = self.envelope.check(bot, check, now, admit=not test)
        if refusal is not None and self.reclaim is not None and self.reclaim():
            # The fast lane's unused verdicts held some of the headroom: with them released, judged again.
            refusal = self.envelope.check(bot, check, self.clock(), admit=not test)
        if refusal is not None:
            if not test:
                self._refused(bot, refusal, now)
            raise refusal_error(refusal)
        return check

    def _refused(self, bot: str, refusal: Refusal, now: float) -> None:
        log.info("gateway refused an order of bot %s: %s %s", bot, refusal.code, refusal.message)
        if self.envelope.count_refusal(bot, refusal.code, now) and self.on_runaway is not None:
            self.on_runaway(bot, refusal.code)

    def _settle(self, bot: str, mapping: BotOrderRef, check: OrderCheck, result: OrderResult) -> dict[str, Any]:
        self.counters["orders_sent"] += 1
        self.counters["orders_resent"] += max(0, result.attempts - 1)
        row = result.journal_row
        report = result.report
        if result.client_order_id:
            # The exchange's id from its answer (the row takes it after the answer), else as the row last saw it.
            order_id = report.get("orderId") if report is not None else row.exchange_order_id if row else None
            self._remember(result.client_order_id, order_id, (bot, mapping.bot_client_order_id))
        if report is not None:
            # The books take the execution once the bot has its answer (after the executor's record of it); the
            # order counts as in flight in the envelope until then.
            self.defer(partial(self._note, row))
            return self._as_bot_sees_it(report, mapping.bot_client_order_id)
        if result.status is OrderStatus.REJECTED:
            # Definitely not placed: the bot may send the same id again, as it could at the exchange.
            self._forget(mapping)
            code = result.refusal_code or ""
            if code.startswith("RATE_"):
                raise budget_error(result.detail, result.retry_after_s)
            exchange_code = int(code.removeprefix("EXCHANGE_")) if code.removeprefix("EXCHANGE_").lstrip(
                "-").isdigit() else -1000
            status = 401 if exchange_code in (-2014, -2015) else 400
            raise BinanceError(status, exchange_code, result.detail)
        self.counters["orders_unknown"] += 1
        raise BinanceError(503, -1007, OUTCOME_UNKNOWN_MSG)

    def _forget(self, mapping: BotOrderRef) -> None:
        """A bot id whose order definitely was never placed: free for the bot to use again."""
        self._mappings.pop((mapping.bot, mapping.bot_client_order_id), None)
        self._closing.append((self.clock(), mapping.intent_id))  # its rows' ids leave memory in time
        with Session(self.journal.engine) as session:
            row = session.exec(select(GatewayOrder).where(GatewayOrder.intent_id == mapping.intent_id)).first()
            if row is not None:
                session.delete(row)
                session.commit()

    def _replay(self, bot: str, mapping: BotOrderRef) -> dict[str, Any] | None:
        """A retry of an id this bot already used: the order it made, never a second one. None when the first
        attempt definitely placed nothing (the retry then goes out as a new order)."""
        self.counters["orders_replayed"] += 1
        row = self._latest_row(mapping.intent_id)
        if row is None and self.journal.awaiting(mapping.intent_id):
            # Sent, durable in the intent log, its row not written (the database failed it): not known absent.
            raise BinanceError(503, -1007, OUTCOME_UNKNOWN_MSG)
        if row is None or row.status == OrderStatus.REJECTED:
            self._forget(mapping)
            return None
        if row.status not in UNSETTLED:
            # Known: the order as it stands now at the exchange, or as the journal last saw it.
            try:
                report = self.client.get_order(row.symbol, row.client_order_id)
                self._track(row.client_order_id, report)
            except ExchangeError:
                report = journal_report(row)
            return self._as_bot_sees_it(report, mapping.bot_client_order_id, row.client_order_id)
        outcome = self.executor.resolve(row)
        if outcome.found and outcome.report is not None:
            self._remember(row.client_order_id, row.exchange_order_id, (bot, mapping.bot_client_order_id))
            self._note(row)
            return self._as_bot_sees_it(outcome.report, mapping.bot_client_order_id, row.client_order_id)
        if outcome.definitely_absent:
            row.status = OrderStatus.NOT_FOUND
            self.journal.record(row)
            self._forget(mapping)
            self._recount(row.intent_id, row)
            return None
        raise BinanceError(503, -1007, OUTCOME_UNKNOWN_MSG)

    # -- queries and cancels ---------------------------------------------------------------------------------
    def _call(self, method: str, path: str, params: Iterable[tuple[str, str]]) -> Any:
        with answered_as_binance():
            return self.client.request(method, path, dict(params), signed=True, deadline_s=self.deadline_s)

    def _passthrough(self, params: list[tuple[str, str]], drop: Iterable[str] = ()) -> list[tuple[str, str]]:
        skip = SIGNING_PARAMS | set(drop)
        return [(k, v) for k, v in params if k not in skip]

    def query(self, bot: str, params: list[tuple[str, str]]) -> dict[str, Any]:
        p = dict(params)
        if not p.get("symbol"):
            raise mandatory("symbol")
        exchange_cid, bot_cid = self._exchange_ref(bot, p)
        report = self._call("GET", "/api/v3/order", [("symbol", p["symbol"]), ("origClientOrderId", exchange_cid)])
        self._track(exchange_cid, report)
        return self._as_bot_sees_it(report, bot_cid, exchange_cid)

    def cancel(self, bot: str, params: list[tuple[str, str]]) -> dict[str, Any]:
        p = dict(params)
        if not p.get("symbol"):
            raise mandatory("symbol")
        exchange_cid, bot_cid = self._exchange_ref(bot, p)
        extra = self._passthrough(params, ("symbol", "orderId", "origClientOrderId"))
        report = self._call("DELETE", "/api/v3/order",
                            [("symbol", p["symbol"]), ("origClientOrderId", exchange_cid), *extra])
        self._track(exchange_cid, report)
        return self._as_bot_sees_it(report, bot_cid, exchange_cid)

    def _track(self, exchange_cid: str, report: Any) -> None:
        row = self.journal.get(exchange_cid)
        if row is not None and isinstance(report, dict):
            apply_report(row, report)
            self._note(self.journal.record(row))

    def _mine(self, bot: str, reports: Any) -> list[dict[str, Any]]:
        """The reports of `bot`'s orders, as it named them: owners from memory, the let-go rest in one look-up."""
        listed = [r for r in reports if isinstance(r, dict)] if isinstance(reports, list) else []
        owners: list[tuple[str, str, str | None] | None] = [self._known_owner(r) for r in listed]
        unknown = [r.get("clientOrderId") or r.get("origClientOrderId") for r, o in zip(listed, owners, strict=True)
                   if o is None]
        stored = self._stored_owners(exchange_cids=[c for c in unknown if isinstance(c, str)])
        mine = []
        for report, owner in zip(listed, owners, strict=True):
            if owner is None:
                cid = report.get("clientOrderId") or report.get("origClientOrderId")
                owner = stored.get(cid) if isinstance(cid, str) else None
            if owner is not None and owner[0] == bot:
                mine.append(self._as_bot_sees_it(report, owner[1], owner[2]))
        return mine

    def open_orders(self, bot: str, params: list[tuple[str, str]]) -> list[dict[str, Any]]:
        return self._mine(bot, self._call("GET", "/api/v3/openOrders", self._passthrough(params)))

    def all_orders(self, bot: str, params: list[tuple[str, str]]) -> list[dict[str, Any]]:
        return self._mine(bot, self._call("GET", "/api/v3/allOrders", self._passthrough(params)))

    def my_trades(self, bot: str, params: list[tuple[str, str]]) -> list[dict[str, Any]]:
        trades = self._call("GET", "/api/v3/myTrades", self._passthrough(params))
        if not isinstance(trades, list):
            return []
        whose: dict[Any, bool] = {}
        let_go: set[int] = set()
        for trade in trades:
            order_id = trade.get("orderId") if isinstance(trade, dict) else None
            if isinstance(order_id, int) and order_id not in whose:
                cid = self._order_ids.get(order_id)
                if cid is not None:
                    whose[order_id] = self._owner.get(cid, ("",))[0] == bot
                else:  # an order closed long ago: the journal says whose (all of them in one look-up, below)
                    let_go.add(order_id)
        for order_id, owner in self._stored_owners(order_ids=let_go).items():
            whose[order_id] = owner[0] == bot
        return [t for t in trades if isinstance(t, dict) and whose.get(t.get("orderId"), False)]

    def cancel_open_orders(self, bot: str, params: list[tuple[str, str]]) -> list[dict[str, Any]]:
        """This bot's open orders on the symbol, one by one: the exchange's own call would cancel every bot's."""
        p = dict(params)
        if not p.get("symbol"):
            raise mandatory("symbol")
        mine = self._mine(bot, self._call("GET", "/api/v3/openOrders", [("symbol", p["symbol"])]))
        if not mine:
            raise BinanceError(400, UNKNOWN_ORDER, "Unknown order sent.")
        return [self.cancel(bot, [("symbol", p["symbol"]), ("origClientOrderId", o["clientOrderId"])])
                for o in mine]

    def cancel_everything(self, bot: str | None = None,
                          which: Callable[[str, JournalOrder], bool] | None = None) -> tuple[int, list[str]]:
        """Cancel every open order the journal holds for `bot` (None: every bot), or only those `which(bot, row)`
        names; (cancelled, failures)."""
        cancelled, failures = 0, []
        for row in self.journal.orders([OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED]):
            owner = self._owner.get(row.client_order_id)
            if owner is None or (bot is not None and owner[0] != bot):
                continue
            if which is not None and not which(owner[0], row):
                continue
            try:
                report = self.client.request("DELETE", "/api/v3/order", {"symbol": row.symbol,
                                             "origClientOrderId": row.client_order_id}, signed=True,
                                             deadline_s=self.deadline_s)
                self._track(row.client_order_id, report)
                cancelled += 1
            except ExchangeRejected as exc:
                if exc.code in (UNKNOWN_ORDER, NO_SUCH_ORDER):
                    continue  # already closed at the exchange
                failures.append(f"{row.client_order_id}: {exc}")
            except Exception as exc:  # noqa: BLE001 - a failed cancel is reported, the others still go out
                failures.append(f"{row.client_order_id}: {exc}")
        return cancelled, failures

    def retire(self) -> int:
        """Let go of the orders closed more than `keep_closed_s` ago (their ids, mapping and books entry stay in the
        journal, read back when a bot names one); how many. An order that changed since it was queued waits for its
        new turn; one a request holds right now, for the next round."""
        cutoff = self.clock() - self.keep_closed_s
        retired = 0
        later: list[tuple[float, str]] = []
        while self._closing and self._closing[0][0] <= cutoff:
            queued_at, intent_id = self._closing.popleft()
            chain = self.journal.chain(intent_id)
            closed_at = _row_closed_at(chain[-1]) if chain else queued_at
            if closed_at is None or intent_id in self._counted:
                continue  # open again (a look-up found it live): queued anew when it closes
            if closed_at > cutoff:
                later.append((closed_at, intent_id))
                continue
            owners = {self._owner[row.client_order_id] for row in chain if row.client_order_id in self._owner}
            locks = [(key, self._lock_for(key)) for key in owners]
            held: list[threading.Lock] = []
            try:
                for _, lock in locks:
                    if lock.acquire(blocking=False):
                        held.append(lock)
                if len(held) < len(locks):
                    later.append((self.clock(), intent_id))
                    continue
                with self._book_lock:
                    for row in chain:
                        self._owner.pop(row.client_order_id, None)
                        self._seen.pop(row.client_order_id, None)
                        if row.exchange_order_id is not None and row.exchange_order_id.isdigit():
                            self._order_ids.pop(int(row.exchange_order_id), None)
                    for key in owners:
                        mapping = self._mappings.get(key)
                        if mapping is not None and mapping.intent_id == intent_id:
                            del self._mappings[key]
                            self._retired.add(hash(key))
                retired += 1
            finally:
                for key, lock in locks:
                    if lock in held:
                        self._unlock(key, lock)
                    else:
                        self._unlock_unheld(key)
        for entry in sorted(later):
            self._closing.append(entry)
        return retired

    # -- the book --------------------------------------------------------------------------------------------
    def refold(self) -> None:
        """Positions and today's PnL of every bot from the whole journal, at start, pushed into the envelope; from
        then on each execution is added as it is seen (`_note`). The journal is read in batches of the columns
        needed, each row's bot from the mapping table, so orders let go from memory count all the same."""
        with self._book_lock:
            now = self.clock()
            day = utc_day_start(now)
            books: dict[str, Book] = {}
            seen: dict[str, tuple[float, float]] = {}
            asked = False
            j, g = _JOURNAL_ORDER.c, _GATEWAY_ORDER.c
            today_started = datetime.fromtimestamp(day, UTC)
            query = (columns(j.client_order_id, j.symbol, j.side, j.executed_qty, j.quote_qty, j.price, j.commissions,
                             (j.updated_at >= today_started).label("today"), g.bot)
                     .select_from(_JOURNAL_ORDER.outerjoin(_GATEWAY_ORDER, g.intent_id == j.intent_id))
                     .order_by(j.created_at).execution_options(yield_per=BATCH))
            with self.journal.engine.connect() as db:
                for cid, symbol, side, executed, quote_qty, price, commissions, today, stored_bot in db.execute(
                        query):
                    owner = self._owner.get(cid)
                    bot = stored_bot or (owner[0] if owner is not None else None)
                    if bot is None:
                        continue
                    book = books.setdefault(bot, Book())
                    if symbol not in self.market.base_of and not asked:
                        asked = True
                        self.market.exchange_info()
                    base = self.market.base_of.get(symbol)
                    if executed <= 0 or base is None:
                        continue
                    if self.market.quote_of.get(symbol) in self.quote_assets:  # oldest first: the latest stays
                        self.price_symbols[base] = symbol
                    moved, cash, notional = effect(symbol, side, executed, quote_qty, price, commissions, base)
                    book.add(base, moved, cash, notional, bool(today))
                    if owner is not None:
                        seen[cid] = (moved, cash)
            self.books, self._seen = books, seen
            self._day = int(now // 86400)
            self.envelope.set_books(self.books, self.prices)

    def _note(self, row: JournalOrder | None) -> None:
        """Add what `row` executed (or paid in commission) since it was last seen to its bot's book; an order whose
        outcome was unknown and now is known no longer counts as in flight. The exchange's order id it now has names
        it in the bot's queries (an order a look-up found after a restart was known by client id alone)."""
        with self._book_lock:  # one step as against retire(): an order let go meanwhile is neither known again nor
            # booked a second time
            owner = self._owner.get(row.client_order_id) if row is not None else None
            if row is not None and owner is not None and row.exchange_order_id is not None:
                self._remember(row.client_order_id, row.exchange_order_id, owner)
            self._book(row)
        if row is not None:
            self._recount(row.intent_id, row)
            if owner is not None and _row_closed_at(row) is not None:
                self._closing.append((self.clock(), row.intent_id))

    def _recount_failed(self, intent_id: str) -> None:
        row = self._latest_row(intent_id)
        if row is None and not self.journal.awaiting(intent_id):
            self._recount(intent_id, None, gone=True)
        elif row is not None:
            self._recount(intent_id, row)  # unsettled rows stay whole until a look-up (settle_open) settles them

    def _recount(self, intent_id: str, row: JournalOrder | None, *, gone: bool = False) -> None:
        """What the envelope counts for an order let through, from its journal row as it now stands (its executions
        already in the books): all of it while its outcome is unknown, what it has not filled while it is open at the
        exchange, nothing once it is closed, refused, proven never placed, or `gone` (it never left)."""
        with self._counted_lock:
            entry = self._counted.get(intent_id)
            if entry is None:
                return
            bot, check, counted = entry
            if gone or row is None or row.status in FINAL_STATUSES:
                left = 0.0
            elif row.status in UNSETTLED:
                left = check.quantity
            else:  # NEW or PARTIALLY_FILLED: resting, each fill already booked
                left = max(0.0, check.quantity - row.executed_qty)
            if left <= 1e-12:
                del self._counted[intent_id]
                left = 0.0
            else:
                entry[2] = left
            if left != counted:
                self.envelope.count(bot, check, left - counted)

    def _book(self, row: JournalOrder | None) -> None:
        if row is None or row.client_order_id not in self._owner:
            return
        self._turn_day()
        bot = self._owner[row.client_order_id][0]
        base = self.market.base_of.get(row.symbol)
        if base is None or row.executed_qty <= 0:
            return
        with self._book_lock:
            seen_moved, seen_cash = self._seen.get(row.client_order_id, (0.0, 0.0))
            moved, cash, notional = row_effect(row, base)
            if abs(moved - seen_moved) <= 1e-15 and abs(cash - seen_cash) <= 1e-9:
                return
            book = self.books.setdefault(bot, Book())
            book.add(base, moved - seen_moved, cash - seen_cash, notional, today=True)
            self._seen[row.client_order_id] = (moved, cash)
            self.envelope.set_books(self.books, self.prices)

    def reprice(self, price_of: Callable[[str], float]) -> None:
        """Every asset the books hold or moved today, and every one an order has priced, at its pair's price now
        (`price_of(symbol)`): a restarted gateway knows today's PnL, and holds a bot past its daily loss, before any
        bot's next order."""
        held = {base for book in list(self.books.values())
                for base, qty in (*book.positions.items(), *book.moved_today.items()) if abs(qty) > 1e-12}
        for base in sorted(held | set(self.prices)):
            symbol = self.price_symbols.get(base)
            if symbol is not None:
                self.prices[base] = price_of(symbol)

    def mark(self) -> None:
        """Today's PnL at the latest prices (from nothing again when the UTC day has turned)."""
        self._turn_day()
        with self._book_lock:
            self.envelope.set_books(self.books, self.prices)

    def _turn_day(self) -> None:
        """At the UTC day's turn, today's PnL of every book starts again from nothing; positions carry over. No
        journal read: the fold at start is the only one, so the turn costs the same however long the journal is.
        (Today counts what executed since the turn; a start-up fold counts an order updated today whole.)"""
        day = int(self.clock() // 86400)
        if day == self._day:
            return
        with self._book_lock:
            if day != self._day:
                for book in self.books.values():
                    book.new_day()
                self._day = day
                self.envelope.set_books(self.books, self.prices)

    def settle_open(self, most: int = 20) -> int:
        """Bring the journal's open and unknown rows up to date (fills of resting orders, outcomes a crash left
        unknown); returns how many changed. Resting orders cost one openOrders call per symbol, however many there
        are: one that list no longer holds has closed (filled, cancelled, expired) and is looked up for its final
        state. Those and the unknown ones are looked up one by one, at most `most` a round, in turn."""
        changed = 0
        # Read before the exchange is asked: a row open here and missing from its list has closed since.
        rows = [row for row in self.journal.orders(OPEN_STATUSES) if row.client_order_id in self._owner]
        to_look: list[JournalOrder] = []
        resting: dict[str, list[JournalOrder]] = {}
        for row in rows:
            if row.status in UNSETTLED:
                to_look.append(row)
            else:
                resting.setdefault(row.symbol, []).append(row)
        for symbol, group in resting.items():
            try:
                listed = self.client.open_orders(symbol)
            except Exception as exc:  # noqa: BLE001 - one failed read waits for the next round
                log.warning("gateway: the open orders on %s could not be read: %s", symbol, exc)
                continue
            still = {str(report.get("clientOrderId")): report for report in listed
                     if isinstance(report, dict)} if isinstance(listed, list) else {}
            for row in group:
                report = still.get(row.client_order_id)
                if report is None:
                    to_look.append(row)
                    continue
                before = (row.status, row.executed_qty)
                apply_report(row, report)
                if (row.status, row.executed_qty) != before:
                    changed += 1
                    self._note(self.journal.record(row))
        # In turn, the least recently looked up first: past `most` of them every one is still looked at every few
        # rounds. One first seen here queues behind those looked at before this round (oldest first among equals).
        looked = self._looked
        waiting = {row.client_order_id for row in to_look}
        for cid in [cid for cid in looked if cid not in waiting]:
            looked.pop(cid, None)
        for row in to_look:
            looked.setdefault(row.client_order_id, self._look_round)
        to_look.sort(key=lambda row: looked[row.client_order_id])
        self._look_round += 1
        for row in to_look[:most]:
            looked[row.client_order_id] = self._look_round
            before = (row.status, row.executed_qty)
            if row.status in UNSETTLED:
                if self.executor.resolve(row).definitely_absent:
                    self._recount(row.intent_id, row, gone=True)  # proven never placed: nothing of it can fill
            else:
                try:
                    report = self.client.get_order(row.symbol, row.client_order_id)
                except Exception as exc:  # noqa: BLE001 - one failed look-up waits for the next round
                    log.warning("gateway: look-up of %s failed: %s", row.client_order_id, exc)
                    continue
                apply_report(row, report)
                self.journal.record(row)
            if (row.status, row.executed_qty) != before:
                changed += 1
                self._note(row)
        # Executions whose trades' commission no answer carried (look-ups, fills of resting orders): read from
        # the order's trades, so each bot's position is what it received.
        for row in self.journal.commission_pending(most):
            if row.client_order_id in self._owner and self.executor.settle_commissions(row):
                self._note(row)
        return changed
