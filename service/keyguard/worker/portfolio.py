"""Positions and today's PnL as one fold over journal rows (executions only), computed in one place."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from keyguard.worker.journal import JournalOrder


@dataclass
class Book:
    """What a set of orders holds: base-asset positions, and today's cash flow and position change (for PnL)."""

    positions: dict[str, float] = field(default_factory=dict)
    cash_today: float = 0.0
    moved_today: dict[str, float] = field(default_factory=dict)
    largest_notional_today: float = 0.0

    def add(self, base: str, side: str, qty: float, quote: float, today: bool) -> None:
        sign = 1.0 if side == "BUY" else -1.0
        self.positions[base] = self.positions.get(base, 0.0) + sign * qty
        if today:
            self.cash_today -= sign * quote
            self.moved_today[base] = self.moved_today.get(base, 0.0) + sign * qty
            self.largest_notional_today = max(self.largest_notional_today, quote)

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


def _ts(value: datetime | None) -> float:
    if value is None:
        return 0.0
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


def fold(rows: Iterable[JournalOrder], base_of: Mapping[str, str], now: float) -> Book:
    """The book of `rows`: every executed quantity, signed by side; today = updated since 00:00 UTC."""
    book = Book()
    day = utc_day_start(now)
    for row in rows:
        if row.executed_qty <= 0 or row.symbol not in base_of:
            continue
        quote = row.quote_qty or row.executed_qty * (row.price or 0.0)
        book.add(base_of[row.symbol], row.side, row.executed_qty, quote, _ts(row.updated_at) >= day)
    return book
