"""Positions and today's PnL: the arithmetic of journal rows' executions, in one place."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from keyguard.worker.journal import JournalOrder, base_change_of, quote_asset, quote_change_of


@dataclass
class Book:
    """What a set of orders holds: base-asset positions, and today's cash flow and position change (for PnL).
    Positions and cash are net of commission: a buy holds what it received, a sell brings in what it received."""

    positions: dict[str, float] = field(default_factory=dict)
    cash_today: float = 0.0
    moved_today: dict[str, float] = field(default_factory=dict)
    largest_notional_today: float = 0.0

    def add(self, base: str, moved: float, cash: float, notional: float, today: bool) -> None:
        """An execution (or the part of one not yet in the book): `moved` base units in (+) or out (-), `cash`
        quote units in or out, both net of commission; `notional` is the order's traded value so far."""
        self.positions[base] = self.positions.get(base, 0.0) + moved
        if today:
            self.cash_today += cash
            self.moved_today[base] = self.moved_today.get(base, 0.0) + moved
            self.largest_notional_today = max(self.largest_notional_today, notional)

    def new_day(self) -> None:
        """The UTC day has turned: today's cash flow, moves and largest order start again; positions carry over."""
        self.cash_today, self.moved_today, self.largest_notional_today = 0.0, {}, 0.0

    def daily_pnl(self, prices: Mapping[str, float]) -> float | None:
        """Today's PnL: cash flow of today's executions plus what they moved, at `prices` (per base asset); None
        while a moved asset has no price (unknown is not zero)."""
        value = self.cash_today
        for base, moved in self.moved_today.items():
            if abs(moved) < 1e-12:
                continue
            if base not in prices:
                return None
            value += moved * prices[base]
        return value


def utc_day_start(now: float) -> float:
    return float(int(now // 86400) * 86400)


def row_effect(row: JournalOrder, base: str) -> tuple[float, float, float]:
    """(base moved, quote moved, notional) of a journal row, net of the commission it paid."""
    return effect(row.symbol, row.side, row.executed_qty, row.quote_qty, row.price, row.commissions, base)


def effect(symbol: str, side: str, executed_qty: float, quote_qty: float, price: float | None,
           commissions: dict[str, float] | None, base: str) -> tuple[float, float, float]:
    """`row_effect` from a row's columns."""
    notional = quote_qty or executed_qty * (price or 0.0)
    return (base_change_of(side, executed_qty, commissions, base),
            quote_change_of(side, executed_qty, quote_qty, price, commissions, quote_asset(symbol, base)), notional)

