"""Idempotent order placement: a client order id minted once and journaled before the request leaves.

A timeout, 5xx, reset or garbled body means the outcome is unknown. The order is then looked up by its
client id with bounded retries; only the exchange's definitive "Order does not exist" (-2013), seen after
the original request's recvWindow has passed (so it can no longer be accepted late), lets the worker send
again, under a new id linked to the old one in the journal. A network error during the look-up proves
nothing: the order stays UNKNOWN and is reported.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, Protocol, TypeVar

from keyguard.errors import ExchangeError
from keyguard.exchanges.binance_client import ORDER_DOES_NOT_EXIST, ExchangeRejected, OutcomeUnknown
from keyguard.exchanges.budget import RateLimitRefused
from keyguard.worker.journal import (
    JournalOrder,
    OrderJournal,
    OrderStatus,
    PendingInsert,
    new_journal_order,
    utcnow,
)
from keyguard.worker.retry import backoff_delays

log = logging.getLogger(__name__)
T = TypeVar("T")

_BINANCE_STATUS = {
    "NEW": OrderStatus.NEW,
    "PARTIALLY_FILLED": OrderStatus.PARTIALLY_FILLED,
    "FILLED": OrderStatus.FILLED,
    "CANCELED": OrderStatus.CANCELED,
    "PENDING_CANCEL": OrderStatus.NEW,
    "REJECTED": OrderStatus.REJECTED,
    "EXPIRED": OrderStatus.EXPIRED,
    "EXPIRED_IN_MATCH": OrderStatus.EXPIRED,
}


class OrderVenue(Protocol):
    """What the executor needs from an exchange: the sandbox/Binance client, or the paper venue."""

    recv_window_ms: int

    def new_order(self, params: Mapping[str, Any], deadline_s: float | None = None, *,
                  while_waiting: Callable[[], None] | None = None) -> dict[str, Any]:
        """Place an order. `while_waiting` (it never raises) runs once the request has left, before its answer is
        read; a call that never sent it need not run it."""

    def get_order(self, symbol: str, client_order_id: str) -> dict[str, Any]: ...


@dataclass(frozen=True)
class OrderIntent:
    """What the strategy wants. `reference_price` prices a MARKET order for the risk checks."""

    symbol: str
    base_asset: str
    side: str  # BUY | SELL
    quantity: float
    order_type: str = "MARKET"
    price: float | None = None
    reference_price: float | None = None
    time_in_force: str = "GTC"
    # 32 random hex digits, as uuid4().hex spells them, at a seventh of its cost (it is on every order's path).
    intent_id: str = field(default_factory=lambda: os.urandom(16).hex())
    # A bot's own request parameters (the gateway forwards them as sent, with only the client order id replaced).
    wire: tuple[tuple[str, str], ...] | None = None

    def params(self, client_order_id: str) -> dict[str, Any]:
        if self.wire is not None:
            return {**dict(self.wire), "newClientOrderId": client_order_id}
        params: dict[str, Any] = {"symbol": self.symbol, "side": self.side, "type": self.order_type,
                                  "quantity": f"{self.quantity:.8f}".rstrip("0").rstrip("."),
                                  "newClientOrderId": client_order_id, "newOrderRespType": "FULL"}
        if self.order_type == "LIMIT":
            params["price"] = f"{self.price:.8f}".rstrip("0").rstrip(".")
            params["timeInForce"] = self.time_in_force
        return params


@dataclass
class OrderResult:
    intent_id: str
    client_order_id: str
    status: OrderStatus
    quantity: float
    executed_qty: float = 0.0
    quote_qty: float = 0.0
    attempts: int = 1
    refusal_code: str | None = None
    detail: str = ""
    # The exchange's own answer for the order (new-order response or look-up), when there is one.
    report: dict[str, Any] | None = None
    # A rate-limit refusal's wait: when the shared budget has room again.
    retry_after_s: float | None = None
    # The journal row as last written (its exchange order id, executed quantity and status).
    journal_row: JournalOrder | None = None

    @property
    def fill_ratio(self) -> float:
        return self.executed_qty / self.quantity if self.quantity else 0.0

    @property
    def avg_price(self) -> float | None:
        return self.quote_qty / self.executed_qty if self.executed_qty else None

    def actionable(self, min_fill_ratio: float) -> bool:
        """Whether the strategy may act on this execution (e.g. hedge it): complete, or filled past the threshold."""
        if self.status in (OrderStatus.FILLED, OrderStatus.PAPER_FILLED):
            return True
        return self.executed_qty > 0 and self.fill_ratio >= min_fill_ratio


def mint_client_order_id(intent_id: str, attempt: int) -> str:
    """Binance allows [A-Za-z0-9-_]{1,36}; the attempt number makes a resend's id distinct and traceable."""
    return f"kg-{intent_id[:24]}-{attempt}"


def apply_report(row: JournalOrder, report: Mapping[str, Any]) -> None:
    """Fold an exchange order report (new-order response or look-up) into the journal row."""
    if "status" in report:
        row.status = _BINANCE_STATUS.get(str(report["status"]), OrderStatus.UNKNOWN)
    elif report.get("orderId") is not None:
        row.status = OrderStatus.NEW  # an ACK response: accepted, nothing more said yet
    if report.get("orderId") is not None:
        row.exchange_order_id = str(report["orderId"])
    executed = float(report.get("executedQty", 0) or 0)
    # Reports can arrive out of order; executed quantity only grows.
    if executed >= row.executed_qty:
        row.executed_qty = executed
        quote = report.get("cummulativeQuoteQty")
        if quote is not None:
            row.quote_qty = float(quote)
    fills = report.get("fills")
    if isinstance(fills, list) and fills:
        # A FULL new-order answer lists every trade of the order so far, each with its commission.
        apply_trades(row, fills)


def apply_trades(row: JournalOrder, trades: list[Any]) -> None:
    """Fold the complete list of an order's trades so far (a FULL answer's fills, or myTrades for the order) into
    the row's commissions. A list covering less than the row already accounts for is an older view: ignored."""
    commissions: dict[str, float] = {}
    covered = 0.0
    for trade in trades:
        if not isinstance(trade, Mapping):
            continue
        covered += float(trade.get("qty", 0) or 0)
        asset = trade.get("commissionAsset")
        amount = float(trade.get("commission", 0) or 0)
        if asset and amount:
            commissions[str(asset)] = commissions.get(str(asset), 0.0) + amount
    if covered + 1e-12 >= row.commission_qty:
        row.commissions = commissions
        row.commission_qty = covered


def _timestamp(value: datetime) -> float:
    # SQLite hands datetimes back naive; they were written in UTC.
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


@dataclass(frozen=True)
class LookupOutcome:
    found: bool
    definitely_absent: bool
    detail: str
    report: dict[str, Any] | None = None


class OrderExecutor:
    """Sends intents through a venue with the journal as the source of truth for what was attempted."""

    def __init__(
        self,
        venue: OrderVenue,
        journal: OrderJournal,
        *,
        worker: str = "worker",
        lookup_attempts: int = 5,
        lookup_base_s: float = 0.05,
        lookup_cap_s: float = 1.0,
        max_resends: int = 2,
        max_send_delay_s: float = 30.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.venue = venue
        self.journal = journal
        self.worker = worker
        self.lookup_attempts = lookup_attempts
        self.lookup_base_s = lookup_base_s
        self.lookup_cap_s = lookup_cap_s
        self.max_resends = max_resends
        # Longest a request can sit between its journal write and its signature (the limiter's deadline).
        self.max_send_delay_s = max_send_delay_s
        self.clock = clock
        self.sleep = sleep
        self.rng = rng or random.Random()

    def _row(self, intent: OrderIntent, attempt: int, replaces: str | None, worker: str | None = None) -> JournalOrder:
        """The journal row of one attempt, as it is written before the request leaves (SENT, sent now)."""
        # Built as JournalOrder(...) builds it, without the constructor's per-field events (journal._RowBuilder).
        return new_journal_order(**self._row_values(intent, attempt, replaces, worker))

    def _row_values(self, intent: OrderIntent, attempt: int, replaces: str | None,
                    worker: str | None = None, sent_at: float | None = None) -> dict[str, Any]:
        now = utcnow()  # given, not defaulted: the model's default factories cost more than the row's insert
        return dict(
            client_order_id=mint_client_order_id(intent.intent_id, attempt), intent_id=intent.intent_id,
            attempt=attempt, replaces=replaces, worker=worker or self.worker, symbol=intent.symbol, side=intent.side,
            order_type=intent.order_type, quantity=intent.quantity, price=intent.price, status=OrderStatus.SENT,
            sent_at=datetime.fromtimestamp(self.clock() if sent_at is None else sent_at, UTC), created_at=now,
            updated_at=now,
        )

    # place() mints one client order id per attempt of an intent and journals it before sending (class-wide).
    mints_client_order_ids = True

    @property
    def status_lookup(self) -> bool:
        """Whether an unknown outcome is looked up by client id (0 look-ups: it stays unknown)."""
        return self.lookup_attempts > 0

    def _result(self, row: JournalOrder, detail: str = "", refusal_code: str | None = None,
                report: dict[str, Any] | None = None) -> OrderResult:
        return OrderResult(row.intent_id, row.client_order_id, OrderStatus(row.status), row.quantity,
                           row.executed_qty, row.quote_qty, row.attempt, refusal_code, detail, report,
                           journal_row=row)

    def place(self, intent: OrderIntent, deadline_s: float | None = None, *, worker: str | None = None,
              companion: tuple[Any, dict[str, object]] | None = None,
              defer: Callable[[Callable[[], object]], None] | None = None,
              sent: Callable[[], dict[str, Any]] | None = None, sent_at: float | None = None) -> OrderResult:
        """Journal, send, and settle any unknown outcome by look-up; `worker` names who placed it (a gateway's bot),
        `companion` is a (table, values) row written in the same transaction as the first journal entry (the
        gateway's mapping). `defer` takes the journal's record of an answered order (the row takes the exchange's
        report and is written) to run once the caller has answered (the gateway's bot) from the result's `report`;
        until then the result's status is SENT and its row as sent. The row written before sending already makes a
        crash in between an order that reconciliation settles by look-up, as one during the request does.

        `sent`: the first attempt was already sent by someone else (the gateway's fast lane, at `sent_at`, durable in
        its own intent log): called in place of the request, it returns the exchange's answer or raises as the
        venue's new_order would. The row is journaled as sent then, and every outcome is settled as for an order
        sent here (a resend, if it comes to one, is sent here)."""
        successor: JournalOrder | None = None
        companions = [companion] if companion is not None else []
        while True:
            # Journaled (SENT) before the request leaves: a crash from here on is resolved by reconciliation. With an
            # intent log the row is durable there now and its database insert (and the first row's object) is made
            # while the request is out.
            pending = (self.journal.intend_values(self._row_values(intent, 1, None, worker, sent_at), *companions)
                       if successor is None else self.journal.intend(successor, *companions))
            companions = []
            try:
                try:
                    if sent is not None:
                        answer_of_sent, sent = sent, None
                        pending()
                        report = answer_of_sent()
                    else:
                        report = self.venue.new_order(intent.params(pending.client_order_id), deadline_s=deadline_s,
                                                      while_waiting=pending)
                finally:
                    row = pending.finish()  # the row, in the database however the call ended (once written: as is)
            except RateLimitRefused as exc:
                row.status, row.last_error = OrderStatus.REJECTED, exc.code
                refused = self._result(self.journal.record(row), str(exc), exc.code)
                refused.retry_after_s = exc.retry_after_s
                return refused
            except ExchangeRejected as exc:
                if exc.code == -2010 and "duplicate" in exc.exchange_message.lower():
                    # Our own id is already live at the exchange: find it rather than call it rejected.
                    outcome = self.resolve(row, self.clock())
                    return self._result(row, outcome.detail, report=outcome.report)
                row.status, row.last_error = OrderStatus.REJECTED, str(exc)
                return self._result(self.journal.record(row), exc.exchange_message, f"EXCHANGE_{exc.code}")
            except OutcomeUnknown as exc:
                # The request was signed no later than now, so it cannot be accepted after now + recvWindow.
                unknown_at = self.clock()
                row.status, row.last_error = OrderStatus.UNKNOWN, str(exc)
                row = self.journal.record(row)
                outcome = self.resolve(row, unknown_at)
                if outcome.found or not outcome.definitely_absent:
                    return self._result(row, outcome.detail, report=outcome.report)
                if row.attempt > self.max_resends:
                    return self._result(row, f"not found after {row.attempt} attempts; giving up")
                successor = self._row(intent, row.attempt + 1, row.client_order_id, row.worker)
                row.status, row.replaced_by = OrderStatus.NOT_FOUND, successor.client_order_id
                self.journal.record(row)
                log.warning("order %s definitively absent; resending as %s", row.client_order_id,
                            successor.client_order_id)
                successor.sent_at = datetime.fromtimestamp(self.clock(), UTC)
                continue
            if defer is None:
                self._record_answer(row, report, pending)
                return self._result(row, report=report)
            # The caller answers from `report`; the row takes it, and is written, once that answer is out.
            defer(partial(self._record_answer, row, report, pending))
            return OrderResult(row.intent_id, row.client_order_id, OrderStatus.SENT, row.quantity,
                               attempts=row.attempt, report=report, journal_row=row)

    def _record_answer(self, row: JournalOrder, report: dict[str, Any], pending: PendingInsert) -> None:
        apply_report(row, report)
        if pending.done:
            self.journal.update(row)
        else:
            self.journal.record(row)  # its insert failed so far: written whole (the intent log keeps it meanwhile)

    def settle_commissions(self, row: JournalOrder) -> bool:
        """Read the commission of an executed order's trades that no answer carried (a look-up, an ACK or RESULT
        answer, a fill of a resting order) from the order's trade list; True when the row is now complete. A venue
        without trade lists (a `my_trades(symbol, order_id)` method: Binance's GET /api/v3/myTrades with orderId),
        or a failed read, leaves it for the next round."""
        if not row.commission_pending or row.exchange_order_id is None or not row.exchange_order_id.isdigit():
            return not row.commission_pending
        my_trades = getattr(self.venue, "my_trades", None)
        if my_trades is None:
            return False
        try:
            trades = my_trades(row.symbol, int(row.exchange_order_id))
        except ExchangeError as exc:
            log.warning("order %s: reading its trades' commission failed: %s", row.client_order_id, exc)
            return False
        if isinstance(trades, list):
            apply_trades(row, trades)
            self.journal.record(row)
        return not row.commission_pending

    def resolve(self, row: JournalOrder, signed_by: float | None = None) -> LookupOutcome:
        """Settle an unknown outcome by client id. Only -2013 after the recvWindow counts as absent.

        `signed_by` is a time by which the request had certainly been signed. Without it (a row found by
        reconciliation), an UNKNOWN row was signed before its last journal write, and a SENT row (crash
        mid-flight) no later than its journal time plus the longest the limiter may have held it.
        """
        if signed_by is None:
            if row.status == OrderStatus.UNKNOWN:
                signed_by = _timestamp(row.updated_at)
            elif row.sent_at is not None:
                signed_by = _timestamp(row.sent_at) + self.max_send_delay_s
            else:
                signed_by = self.clock()
        # After this instant the exchange refuses the original request as too old, so absence is final.
        final_after = signed_by + self.venue.recv_window_ms / 1000.0 + 0.05
        if not self.status_lookup:
            row.status, row.last_error = OrderStatus.UNKNOWN, "outcome unknown; status look-up is switched off"
            self.journal.record(row)
            return LookupOutcome(False, False, row.last_error)
        errors = []
        delays = [0.0, *backoff_delays(self.lookup_attempts - 1, self.lookup_base_s, self.lookup_cap_s, self.rng)]
        for delay in delays:
            if delay:
                self.sleep(delay)
            try:
                report = self.venue.get_order(row.symbol, row.client_order_id)
            except ExchangeRejected as exc:
                if exc.code == ORDER_DOES_NOT_EXIST:
                    now = self.clock()
                    if now >= final_after:
                        row.last_error = "exchange: order does not exist (-2013)"
                        self.journal.record(row)
                        return LookupOutcome(False, True, row.last_error)
                    self.sleep(final_after - now)
                    try:
                        report = self.venue.get_order(row.symbol, row.client_order_id)
                    except ExchangeRejected as again:
                        if again.code == ORDER_DOES_NOT_EXIST:
                            row.last_error = "exchange: order does not exist (-2013) after recvWindow"
                            self.journal.record(row)
                            return LookupOutcome(False, True, row.last_error)
                        errors.append(str(again))
                        continue
                    except ExchangeError as again:
                        errors.append(str(again))
                        continue
                else:
                    errors.append(str(exc))
                    continue
            except ExchangeError as exc:  # network error, 5xx, limiter refusal: proves nothing
                errors.append(str(exc))
                continue
            apply_report(row, report)
            row.last_error = None
            self.journal.record(row)
            # A look-up says how much executed, not what its trades cost.
            self.settle_commissions(row)
            return LookupOutcome(True, False, f"found by client id: {row.status}", report)
        row.status = OrderStatus.UNKNOWN
        row.last_error = f"look-up unresolved after {len(delays)} attempts: {errors[-1] if errors else ''}"[:500]
        self.journal.record(row)
        log.error("order %s outcome UNKNOWN: %s", row.client_order_id, row.last_error)
        return LookupOutcome(False, False, row.last_error)
