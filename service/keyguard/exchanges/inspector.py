"""Inspecting many keys at once: concurrently, within the host's shared rate budget, by a deadline.

Every request charges the budget of its egress IP that the execution worker charges too (one store per IP for
the whole host), under a share of each limit kept for inspections, so checking can never starve trading. A
429 or 418 stops every later request from that IP to that exchange until its Retry-After passes. Clients and
their HTTP connections are kept between cycles; the exchange clock is read once per exchange per cycle."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from datetime import UTC, datetime
from typing import Any

import requests

from keyguard.checks.activity import Journals, read_activity
from keyguard.config import BudgetSettings
from keyguard.errors import ConfigError, KeyguardError
from keyguard.exchanges.base import CcxtAdapter, ClientPool, ExchangeAdapter, KeyDeclaration
from keyguard.exchanges.binance import BinanceAdapter
from keyguard.exchanges.budget import SharedRateLimiter, pools_from_exchange_info
from keyguard.exchanges.budget_store import default_budget_path, open_budget_store
from keyguard.exchanges.errors import (
    Banned,
    ClockSkew,
    ExchangeTimeout,
    ExchangeUnavailable,
    MalformedResponse,
    RateLimited,
)
from keyguard.exchanges.inventory import Inventory, InventoryKey
from keyguard.exchanges.keystate import KeyState
from keyguard.exchanges.transport import bound_session
from keyguard.redact import redact_text

log = logging.getLogger(__name__)

# Failures that say nothing about the key itself: the exchange (or the way to it, or the budget) did not answer.
# A key that failed this way is unverified, and its alerts fold into one per exchange.
EXCHANGE_SIDE_ERRORS = frozenset({
    ExchangeTimeout.__name__, ExchangeUnavailable.__name__, MalformedResponse.__name__, RateLimited.__name__,
    Banned.__name__, ClockSkew.__name__, "RateLimitRefused", "DeadlineExceeded",
})

# How often the service re-reads an exchange's published limits (Binance exchangeInfo, weight 20).
LIMITS_REFRESH_S = 3600.0


def exchange_side(state: KeyState) -> bool:
    """Whether this key's inspection failed for a reason outside the key (exchange, network, budget, clock)."""
    if state.error_kind in EXCHANGE_SIDE_ERRORS:
        return True
    return state.inspection_error is None and state.probe is not None and state.probe.outcome == "unknown"


def unverified_reason(state: KeyState) -> str | None:
    """Why this key was not fully observed this cycle (None: it was)."""
    if state.inspection_error is not None:
        return f"{state.error_kind}: {state.inspection_error}"
    if state.probe is not None and state.probe.outcome == "unknown":
        return f"IP probe unverified: {state.probe.detail}"
    return None


class KeyInspector:
    """Inspects an inventory's keys each cycle; keep one for the life of the service (it keeps clients)."""

    def __init__(self, budget: BudgetSettings | None = None, *, concurrency: int = 8, request_timeout_s: float = 5.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.budget = budget or BudgetSettings()
        self.concurrency = max(1, concurrency)
        self.request_timeout_ms = max(1, int(request_timeout_s * 1000))
        self.clock = clock
        self._lock = threading.Lock()
        self._adapters: dict[tuple[Any, ...], ExchangeAdapter[Any]] = {}
        self._used: set[tuple[Any, ...]] = set()  # adapters asked for this cycle; the others are dropped
        self._busy: set[int] = set()  # adapters still used by a thread left over from a cycle that timed out
        self._sessions: dict[str | None, requests.Session] = {}
        self._clients = ClientPool()
        # Kept for the inspector's life, so its threads (and the ccxt clients each keeps) serve every cycle.
        self._executor = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="keyguard-inspect")
        # Exchange clocks are read side by side on their own threads: one dead exchange must not hold the others.
        self._clock_executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="keyguard-clock")
        self._limiters: dict[tuple[str, str], SharedRateLimiter] = {}
        self._limits_read: dict[str, float] = {}
        self.journals = Journals()  # the workers' journals, for watched keys' activity

    def close(self) -> None:
        """Let the worker threads and the journals go (the service keeps one inspector for its life)."""
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._clock_executor.shutdown(wait=False, cancel_futures=True)
        self.journals.dispose()

    # -- shared parts ---------------------------------------------------------------------------------------
    def session(self, source_ip: str | None) -> requests.Session:
        """One HTTP session per source address, so every key reuses the same pooled connections."""
        with self._lock:
            session = self._sessions.get(source_ip)
            if session is None:
                session = self._sessions[source_ip] = bound_session(source_ip, pool_size=self.concurrency * 2)
            return session

    def limiter(self, exchange: str, ip: str) -> SharedRateLimiter:
        """The shared budget of `ip` for requests to `exchange`, under the inspections' share."""
        with self._lock:
            limiter = self._limiters.get((exchange, ip))
            if limiter is None:
                b = self.budget
                path = b.directory / f"{ip}.{b.backend}" if b.directory else default_budget_path(ip, b.backend)
                limiter = SharedRateLimiter(open_budget_store(b.backend, path), egress_ip=ip, exchange=exchange,
                                            headroom=b.headroom, share=b.share,
                                            default_deadline_s=self.request_timeout_ms / 1000)
                self._limiters[(exchange, ip)] = limiter
            return limiter

    def adapter(self, inventory: Inventory, key: InventoryKey) -> ExchangeAdapter[Any]:
        """The key's adapter, kept between cycles while its credentials and endpoints stay the same."""
        from keyguard.exchanges import ADAPTERS, adapter_for, sandbox_adapter_kwargs

        credentials = key.credentials.load()
        base = inventory.exchange_urls.get(key.exchange)
        source, other = inventory.probe.source_ip, inventory.probe.from_ip
        fingerprint = hashlib.sha256(credentials.secret.get_secret_value().encode()).hexdigest()
        cache_key = (key.id, key.exchange.lower(), credentials.api_key, fingerprint, base, source, other)
        with self._lock:
            self._used.add(cache_key)
            adapter = self._adapters.get(cache_key)
            if adapter is not None and id(adapter) not in self._busy:
                return adapter
        exchange = key.exchange.lower()
        kwargs = dict(sandbox_adapter_kwargs(exchange, base)) if base else {}
        if issubclass(ADAPTERS.get(exchange, CcxtAdapter), CcxtAdapter):  # Binance's client keeps its own connections
            kwargs.update(sessions=self.session, clients=self._clients)
        adapter = adapter_for(
            exchange, credentials, source_ip=source, timeout_ms=self.request_timeout_ms,
            limiter=self.limiter(exchange, self.budget.egress_ip or source or "127.0.0.1"),
            probe_limiter=self.limiter(exchange, other) if other else None, **kwargs,
        )
        with self._lock:
            self._adapters[cache_key] = adapter
        return adapter

    # -- one cycle --------------------------------------------------------------------------------------------
    def inspect(self, inventory: Inventory, deadline: float | None = None,
                on_key: Callable[[KeyState], None] | None = None) -> list[KeyState]:
        """Every key's state, in inventory order. `deadline` (time.time) bounds the whole cycle: a key not
        inspected by then is reported unverified (DeadlineExceeded), never skipped and never safe."""
        started = self.clock()
        deadline = deadline if deadline is not None else started + 10 * self.request_timeout_ms / 1000
        states: list[KeyState | None] = [None] * len(inventory.keys)
        self._used.clear()
        firsts: dict[str, ExchangeAdapter[Any]] = {}
        for key in inventory.keys:  # one key per exchange reads its clock (and limits) for all of them
            if key.exchange.lower() not in firsts:
                try:
                    firsts[key.exchange.lower()] = self.adapter(inventory, key)
                except ConfigError:
                    continue  # its own inspection reports why; another key of the exchange may serve
        offsets = self._clock_offsets(firsts.values(), deadline)
        # Credentials are loaded in the workers too: a Secrets Manager read per key must not run one by one.
        futures = {self._executor.submit(self._inspect_one, inventory, index, offsets, deadline): index
                   for index in range(len(inventory.keys))}
        pending = set(futures)
        while pending:
            left = deadline - self.clock()
            if left <= 0:
                break
            done, pending = wait(pending, timeout=left, return_when=FIRST_COMPLETED)
            for future in done:
                states[futures[future]] = future.result()
        for future in pending:  # not started by the deadline: never sent; started: its calls end by the deadline
            index = futures[future]
            future.cancel()
            states[index] = failed_state(
                inventory.keys[index], None, kind="DeadlineExceeded",
                message=f"not inspected by the check's deadline ({deadline - started:.1f}s after it started)")
        with self._lock:  # keys removed from the inventory, or whose credentials changed, let go of their clients
            dropped = [v for k, v in self._adapters.items() if k not in self._used and id(v) not in self._busy]
            self._adapters = {k: v for k, v in self._adapters.items() if k in self._used}
        for adapter in dropped:
            adapter.close()
        result = [s for s in states if s is not None]
        if on_key is not None:
            for state in result:
                on_key(state)
        return result

    def _inspect_one(self, inventory: Inventory, index: int, offsets: dict[str, int | None],
                     deadline: float) -> KeyState:
        key = inventory.keys[index]
        try:
            adapter = self.adapter(inventory, key)
        except ConfigError as exc:
            return failed_state(key, exc)
        with self._lock:
            self._busy.add(id(adapter))
        try:
            adapter.deadline = deadline
            state = adapter.inspect(key.declaration(), probe_from=inventory.probe.from_ip,
                                    time_offset_ms=offsets.get(adapter.exchange_id))
            if key.activity is not None:
                now = datetime.fromtimestamp(self.clock(), UTC)
                if state.inspection_error is None:
                    state.activity_raw = read_activity(adapter, key, self.journals, now)
                else:
                    state.activity_raw = {"error": "not read: the key itself could not be inspected",
                                          "since": None}
            return state
        except Exception as exc:  # an adapter bug is a blind spot on this key, never a crashed cycle
            return failed_state(key, None, kind=type(exc).__name__, message=redact_text(str(exc)))
        finally:
            self._release(adapter)

    def _release(self, adapter: ExchangeAdapter[Any]) -> None:
        with self._lock:
            self._busy.discard(id(adapter))

    def _clock_offsets(self, adapters: Iterable[ExchangeAdapter[Any]], deadline: float) -> dict[str, int | None]:
        """One time call (and, hourly, one limits read) per exchange per cycle, not one per key; an exchange whose
        clock is not read by the deadline is inspected without it (its keys' clock facts stay unknown)."""

        def read(adapter: ExchangeAdapter[Any]) -> int | None:
            adapter.deadline = deadline
            self._refresh_limits(adapter)
            try:
                return adapter.server_time_offset_ms()
            except KeyguardError as exc:
                log.warning("%s clock not read this cycle: %s", adapter.exchange_id, redact_text(str(exc)))
                return None

        futures = {adapter.exchange_id: self._clock_executor.submit(read, adapter) for adapter in adapters}
        wait(futures.values(), timeout=max(0.0, deadline - self.clock()))
        return {exchange: f.result() if f.done() else None for exchange, f in futures.items()}

    def _refresh_limits(self, adapter: ExchangeAdapter[Any]) -> None:
        """Binance publishes its limits (exchangeInfo rateLimits): the budget follows what the exchange serves."""
        if not isinstance(adapter, BinanceAdapter):
            return
        base = adapter.base_url
        if self.clock() - self._limits_read.get(base, -LIMITS_REFRESH_S) < LIMITS_REFRESH_S:
            return
        try:
            info = adapter.exchange_info()
            pools = pools_from_exchange_info(info["rateLimits"])
        except (KeyguardError, KeyError, TypeError, ValueError) as exc:
            log.warning("binance limits not read, keeping the documented defaults: %s", redact_text(str(exc)))
            return
        self._limits_read[base] = self.clock()
        with self._lock:
            for (exchange, _ip), limiter in self._limiters.items():
                if exchange == "binance":
                    limiter.pools = pools


def failed_state(key: InventoryKey, exc: KeyguardError | None, *, kind: str | None = None,
                 message: str | None = None) -> KeyState:
    """A key that could not be inspected at all: what the operator declared, and why it is unverified."""
    declared: KeyDeclaration = key.declaration()
    return KeyState(
        exchange=key.exchange.lower(), key_id=key.id, purpose=key.purpose, services=key.services,
        storage=declared.storage, permissions=key.permissions, created_at=declared.created_at,
        superseded_at=declared.superseded_at, active=declared.active,
        permissions_source="declared" if key.permissions else "unknown",
        inspection_error=message if message is not None else str(exc),
        error_kind=kind or (type(exc).__name__ if exc is not None else "Unknown"),
    )
