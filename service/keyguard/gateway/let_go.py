"""Which orders a long-running gateway has let go from memory, in about two bytes each.

The desk keeps an order in memory until `keep_closed_orders_s` after it closed; then only the journal holds it. A bot
that sends a client order id again must still get its old order, never a second one, so a new order's id is first
looked for among the ids let go. Asking the journal for every new order would put a database read on each order's
path; a set of the ids' hashes costs 69 bytes an id (`bench/gateway.py --parts memory`), 360 MB a year for a bot
placing ten orders a minute. This is a Bloom filter instead: "no" is always right (the order path goes on without a
read), "maybe" is wrong for at most about 1 in 100 new ids, and then costs only the journal read that finds nothing.

It grows in levels, each four times the capacity of the last and with half its false-"maybe" rate, so the total rate
stays under twice the first level's however many orders are let go."""

from __future__ import annotations

import math

MASK_32 = 0xFFFFFFFF
MIN_BITS = 1 << 16


class _Level:
    __slots__ = ("bits", "size", "probes", "capacity", "count")

    def __init__(self, capacity: int, error: float) -> None:
        # The optimal probe count for `error`, over bits enough for `capacity` at it; never fewer than MIN_BITS,
        # since a probe pattern (low, step) modulo a few bits repeats often enough to make "maybe" common.
        self.probes = max(1, math.ceil(-math.log2(error)))
        self.size = max(MIN_BITS, math.ceil(capacity * self.probes / math.log(2)))
        self.bits = bytearray((self.size + 7) // 8)
        self.capacity = capacity
        self.count = 0

    def add(self, low: int, step: int) -> None:
        bits, size = self.bits, self.size
        for i in range(self.probes):
            at = (low + i * step) % size
            bits[at >> 3] |= 1 << (at & 7)
        self.count += 1

    def has(self, low: int, step: int) -> bool:
        bits, size = self.bits, self.size
        for i in range(self.probes):
            at = (low + i * step) % size
            if not bits[at >> 3] & (1 << (at & 7)):
                return False
        return True


class LetGoIds:
    """Hashes of (bot, client order id) let go: `add` one; `in` is False only for a hash never added."""

    def __init__(self, first_capacity: int = 1 << 16, error: float = 0.005, growth: int = 4) -> None:
        if first_capacity < 1 or not 0 < error < 1 or growth < 2:
            raise ValueError("first_capacity >= 1, 0 < error < 1 and growth >= 2")
        self._first, self._error, self._growth = first_capacity, error, growth
        self._levels: list[_Level] = []
        self._count = 0

    @staticmethod
    def _split(key_hash: int) -> tuple[int, int]:
        """Two 32-bit halves of the 64-bit hash: the probes are low + i * step (double hashing; step odd)."""
        key_hash &= (1 << 64) - 1
        return key_hash & MASK_32, (key_hash >> 32) | 1

    def add(self, key_hash: int) -> None:
        level = self._levels[-1] if self._levels else None
        if level is None or level.count >= level.capacity:
            depth = len(self._levels)
            level = _Level(self._first * self._growth ** depth, self._error / 2 ** depth)
            self._levels.append(level)
        level.add(*self._split(key_hash))
        self._count += 1

    def __contains__(self, key_hash: object) -> bool:
        if not isinstance(key_hash, int) or not self._count:
            return False
        low, step = self._split(key_hash)
        return any(level.has(low, step) for level in self._levels)

    def __len__(self) -> int:
        return self._count

    def __bool__(self) -> bool:
        return self._count > 0

    @property
    def nbytes(self) -> int:
        """The filter's bit arrays, in bytes."""
        return sum(len(level.bits) for level in self._levels)
