"""Reconciliation: the journal (what the worker intended and believes) against the exchange (open orders,
order states, balances). Discrepancies are recorded in the journal and returned; orders the journal does
not know are adopted as external, never silently ignored."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

from keyguard.worker.journal import OPEN_STATUSES, JournalOrder, OrderJournal, OrderStatus
from keyguard.worker.orders import OrderExecutor, apply_report
from keyguard.worker.retry import retry_data_request

log = logging.getLogger(__name__)

EXTERNAL_ORDER = "EXTERNAL_ORDER"
ORDER_SETTLED = "ORDER_SETTLED"
ORDER_ABSENT = "ORDER_ABSENT"
ORDER_UNRESOLVED = "ORDER_UNRESOLVED"
BALANCE_MISMATCH = "BALANCE_MISMATCH"


class ExchangeView(Protocol):
    def open_orders(self, symbol: str | None = None) -> list[dict[str, Any]]: ...

    def account(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Discrepancy:
    kind: str
    subject: str
    detail: str


@dataclass
class ReconciliationReport:
    discrepancies: list[Discrepancy] = field(default_factory=list)

    def of_kind(self, kind: str) -> list[Discrepancy]:
        return [d for d in self.discrepancies if d.kind == kind]


def journal_positions(rows: Iterable[JournalOrder], base_of: Mapping[str, str]) -> dict[str, float]:
    """Net base-asset position implied by every execution the journal knows of (worker and adopted): what buys
    received less what sells gave, net of commission paid in the base asset, as the exchange's balance moves."""
    positions: dict[str, float] = {}
    for row in rows:
        if row.executed_qty and row.status != OrderStatus.PAPER_FILLED:
            asset = base_of.get(row.symbol, row.symbol)
            positions[asset] = positions.get(asset, 0.0) + row.base_change(asset)
    return positions


def compare_orders(journal_open: Sequence[JournalOrder], exchange_open: Sequence[Mapping[str, Any]],
                   known_ids: set[str]) -> tuple[list[Mapping[str, Any]], list[JournalOrder]]:
    """(exchange orders the journal has never seen, journal-open orders the exchange does not list as open)."""
    listed = {str(o.get("clientOrderId")) for o in exchange_open}
    external = [o for o in exchange_open if str(o.get("clientOrderId")) not in known_ids]
    missing = [row for row in journal_open if row.client_order_id not in listed]
    return external, missing


def compare_balances(expected: Mapping[str, float], actual: Mapping[str, float], tolerance: float = 1e-8
                     ) -> list[Discrepancy]:
    out = []
    for asset, want in expected.items():
        have = actual.get(asset, 0.0)
        if abs(have - want) > tolerance:
            out.append(Discrepancy(BALANCE_MISMATCH, asset, f"journal implies {want:.8f}, exchange holds {have:.8f}"))
    return out


def balances_of(account: Mapping[str, Any]) -> dict[str, float]:
    return {str(b["asset"]): float(b["free"]) + float(b["locked"]) for b in account.get("balances", [])}


class Reconciler:
    """Runs at start-up (recording the balance baseline) and periodically after that."""

    def __init__(self, view: ExchangeView, journal: OrderJournal, executor: OrderExecutor, *,
                 symbols: Mapping[str, str], worker: str = "worker") -> None:
        self.view = view
        self.journal = journal
        self.executor = executor
        self.base_of = dict(symbols)  # symbol -> base asset
        self.worker = worker
        # exchange balance minus journal position, per traded base asset, taken at the first run
        self.baseline: dict[str, float] | None = None

    def _report(self, report: ReconciliationReport, kind: str, subject: str, detail: str) -> None:
        report.discrepancies.append(Discrepancy(kind, subject, detail))
        self.journal.report(kind, subject, detail)
        log.warning("reconciliation: %s %s: %s", kind, subject, detail)

    def run(self) -> ReconciliationReport:
        report = ReconciliationReport()
        exchange_open: list[dict[str, Any]] = []
        for symbol in self.base_of:
            exchange_open += retry_data_request(partial(self.view.open_orders, symbol))
        known = {row.client_order_id for row in self.journal.orders()}
        journal_open = [r for r in self.journal.open_orders() if r.symbol in self.base_of]
        external, missing = compare_orders(journal_open, exchange_open, known)
        by_id = {row.client_order_id: row for row in journal_open}
        for listed in exchange_open:
            tracked = by_id.get(str(listed.get("clientOrderId")))
            if tracked is not None and float(listed.get("executedQty", 0) or 0) != tracked.executed_qty:
                # Fills on a resting order since we last looked: the journal follows the exchange.
                apply_report(tracked, listed)
                self.journal.record(tracked)
        for order in external:
            row = JournalOrder(
                client_order_id=str(order.get("clientOrderId")), intent_id=f"external-{order.get('orderId')}",
                origin="external", worker=self.worker, symbol=str(order["symbol"]), side=str(order["side"]),
                order_type=str(order.get("type", "LIMIT")), quantity=float(order.get("origQty", 0)),
                price=float(order["price"]) if order.get("price") else None,
            )
            apply_report(row, order)
            self.journal.record(row)
            self._report(report, EXTERNAL_ORDER, row.client_order_id,
                         f"{row.side} {row.quantity:g} {row.symbol} open at the exchange, unknown to the journal;"
                         " adopted as external")
        for row in missing:
            outcome = self.executor.resolve(row)
            if outcome.found:
                self._report(report, ORDER_SETTLED, row.client_order_id, f"journal had {row.status!s} open; "
                             f"exchange says {row.status} executed {row.executed_qty:g}")
            elif outcome.definitely_absent:
                row.status = OrderStatus.NOT_FOUND
                self.journal.record(row)
                self._report(report, ORDER_ABSENT, row.client_order_id, "exchange has no such order (-2013)")
            else:
                self._report(report, ORDER_UNRESOLVED, row.client_order_id, outcome.detail)
        for row in self.journal.commission_pending():
            if row.symbol in self.base_of and not self.executor.settle_commissions(row):
                log.info("reconciliation: commission of %s's trades not read yet; its position counts them in full",
                         row.client_order_id)
        actual = balances_of(retry_data_request(self.view.account))
        positions = journal_positions(self.journal.orders(), self.base_of)
        assets = set(self.base_of.values())
        if self.baseline is None:
            self.baseline = {a: actual.get(a, 0.0) - positions.get(a, 0.0) for a in assets}
        else:
            expected = {a: self.baseline[a] + positions.get(a, 0.0) for a in assets}
            for d in compare_balances(expected, actual):
                self._report(report, d.kind, d.subject, d.detail)
        still_open = [r for r in self.journal.orders(OPEN_STATUSES) if r.status == OrderStatus.UNKNOWN]
        for row in still_open:
            if row.client_order_id not in {d.subject for d in report.discrepancies}:
                self._report(report, ORDER_UNRESOLVED, row.client_order_id, row.last_error or "outcome unknown")
        return report
