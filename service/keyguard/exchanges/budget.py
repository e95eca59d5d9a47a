"""The exchange request budget: linked weight pools, one budget per egress IP shared by every process on the host
(the worker, the gateway, the service's inspections and containments), and `SharedRateLimiter`, the one limiter every
exchange call is charged to.

The arithmetic (`BudgetState`, `try_charge`, `correct_from_headers`) is pure and takes `now`; the stores
that make one budget visible to several processes are at the edge (see `budget_store.py`).

Binance counts REQUEST_WEIGHT and RAW_REQUESTS per IP and ORDERS per account in fixed windows aligned to
the clock (the weight resets at each minute boundary), so pools here are fixed windows too: a request fits
if every pool it charges stays under `headroom * limit` in the current window.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol, TypeVar

from keyguard.exchanges.endpoint_costs import (
    ORDERS,
    RAW_REQUESTS,
    REQUEST_WEIGHT,
    SAPI_WEIGHT,
    EndpointCost,
    endpoint_cost,
)
from keyguard.exchanges.errors import RateLimitRefused

T = TypeVar("T")

# Refusal codes a caller can act on (and that tests and logs can match).
RATE_DEADLINE = "RATE_DEADLINE"  # waiting for budget would pass the caller's deadline
RATE_BANNED = "RATE_BANNED"  # the IP is under a 429/418 back-off that outlasts the deadline
RATE_COST_EXCEEDS_BUDGET = "RATE_COST_EXCEEDS_BUDGET"  # one call costs more than a whole window allows

# Binance's minimum automatic ban is 2 minutes; used when a 418 comes without Retry-After.
DEFAULT_BAN_S = 120.0


@dataclass(frozen=True)
class PoolSpec:
    """One rate-limit pool: `scope` is "ip" (REQUEST_WEIGHT, RAW_REQUESTS) or "account" (ORDERS)."""

    kind: str
    interval_s: float
    limit: int
    scope: str = "ip"


BINANCE_SPOT_POOLS: tuple[PoolSpec, ...] = (
    PoolSpec(REQUEST_WEIGHT, 60, 6000, "ip"),
    PoolSpec(RAW_REQUESTS, 300, 61000, "ip"),
    PoolSpec(ORDERS, 10, 100, "account"),
    PoolSpec(ORDERS, 86400, 200000, "account"),
    PoolSpec(SAPI_WEIGHT, 60, 12000, "ip"),
)

# Other exchanges publish no weights for their key-introspection calls: every request costs 1 against one
# per-IP pool at (or under) the exchange's documented request rate. Conservative: their own 429 still stops us.
OTHER_EXCHANGE_POOLS: dict[str, tuple[PoolSpec, ...]] = {
    "bybit": (PoolSpec(REQUEST_WEIGHT, 5, 600),),  # 600 requests / 5 s per IP
    "okx": (PoolSpec(REQUEST_WEIGHT, 2, 10),),  # private account endpoints: 5-20 / 2 s per user
    "kucoin": (PoolSpec(REQUEST_WEIGHT, 30, 2000),),
    "kraken": (PoolSpec(REQUEST_WEIGHT, 20, 15),),  # private call counter: 15, decaying
    "coinbase": (PoolSpec(REQUEST_WEIGHT, 1, 30),),
    "bitget": (PoolSpec(REQUEST_WEIGHT, 1, 10),),
    "gate": (PoolSpec(REQUEST_WEIGHT, 10, 200),),
    "blofin": (PoolSpec(REQUEST_WEIGHT, 60, 500),),
}
GENERIC_POOLS: tuple[PoolSpec, ...] = (PoolSpec(REQUEST_WEIGHT, 1, 5),)


def exchange_pools(exchange: str) -> tuple[PoolSpec, ...]:
    """The rate-limit pools Keyguard keeps for requests to `exchange` from one IP (Binance: its published ones)."""
    if exchange == "binance":
        return BINANCE_SPOT_POOLS
    return OTHER_EXCHANGE_POOLS.get(exchange, GENERIC_POOLS)


_INTERVAL_S = {"SECOND": 1, "MINUTE": 60, "HOUR": 3600, "DAY": 86400, "S": 1, "M": 60, "H": 3600, "D": 86400}


def pools_from_exchange_info(rate_limits: Iterable[Mapping[str, Any]]) -> tuple[PoolSpec, ...]:
    """Build pools from exchangeInfo `rateLimits`, so shortened sandbox windows are honoured as served."""
    specs = []
    for entry in rate_limits:
        kind = str(entry["rateLimitType"])
        interval = _INTERVAL_S[str(entry["interval"]).upper()] * int(entry.get("intervalNum", 1))
        scope = "account" if kind == ORDERS else "ip"
        specs.append(PoolSpec(kind, float(interval), int(entry["limit"]), scope))
    specs.append(PoolSpec(SAPI_WEIGHT, 60, 12000, "ip"))
    return tuple(specs)


def window_start(now: float, interval_s: float) -> float:
    return math.floor(now / interval_s) * interval_s


def interval_label(interval_s: float) -> str:
    """Binance's header suffix for an interval: 60 -> '1M', 10 -> '10S', 86400 -> '1D'."""
    seconds = int(interval_s)
    for unit, size in (("D", 86400), ("H", 3600), ("M", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}S"


@dataclass
class BudgetState:
    """Everything shared across processes: per-pool (window start, used) and per-IP back-off deadlines."""

    pools: dict[str, list[float]] = field(default_factory=dict)
    banned_until: dict[str, float] = field(default_factory=dict)

    def used(self, key: str, interval_s: float, now: float) -> float:
        entry = self.pools.get(key)
        if entry is None or entry[0] != window_start(now, interval_s):
            return 0.0
        return entry[1]

    def to_json(self) -> dict[str, Any]:
        return {"p": self.pools, "b": self.banned_until}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BudgetState:
        return cls(pools={k: list(v) for k, v in data.get("p", {}).items()},
                   banned_until=dict(data.get("b", {})))


@dataclass(frozen=True)
class Charge:
    key: str
    spec: PoolSpec
    amount: float
    # A caller's own share of the pool (the service's inspections: 0.2), below the shared headroom.
    share: float | None = None


@dataclass(frozen=True)
class ChargeDecision:
    """`wait_s == 0` means charged; otherwise nothing was charged and `reason` names the blocking pool."""

    wait_s: float
    reason: str = ""
    banned: bool = False
    impossible: bool = False

    @property
    def granted(self) -> bool:
        return self.wait_s == 0 and not self.impossible


# What try_charge answers for every granted call (frozen: one answer serves them all).
_GRANTED = ChargeDecision(0.0)


def budget_cap(spec: PoolSpec, headroom: float) -> float:
    return math.floor(spec.limit * headroom)


def try_charge(state: BudgetState, charges: Sequence[Charge], ip: str, now: float, headroom: float) -> ChargeDecision:
    """Charge every pool at once if all fit under the headroom (or the charge's own share); otherwise charge none
    and say how long to wait. `ip` is the back-off key: the egress IP, per exchange."""
    until = state.banned_until.get(ip, 0.0)
    if until > now:
        return ChargeDecision(until - now, f"IP {ip} backing off after 429/418", banned=True)
    wait = 0.0
    reason = ""
    for charge in charges:
        cap = budget_cap(charge.spec, headroom if charge.share is None else min(headroom, charge.share))
        if charge.amount > cap:
            return ChargeDecision(math.inf, f"{charge.key} costs {charge.amount} > budget {cap}", impossible=True)
        if state.used(charge.key, charge.spec.interval_s, now) + charge.amount > cap:
            until_roll = window_start(now, charge.spec.interval_s) + charge.spec.interval_s - now
            if until_roll > wait:
                wait, reason = until_roll, f"{charge.key} at {cap} of {charge.spec.limit}"
    if wait > 0:
        return ChargeDecision(wait, reason)
    for charge in charges:
        start = window_start(now, charge.spec.interval_s)
        entry = state.pools.get(charge.key)
        if entry is None or entry[0] != start:
            state.pools[charge.key] = [start, charge.amount]
        else:
            entry[1] += charge.amount
    return _GRANTED


def correct_usage(state: BudgetState, key: str, interval_s: float, reported: float, sent_at: float, now: float) -> None:
    """Raise our count to what the exchange reports (it also sees callers we do not), never lower it.

    A header belongs to the window in which the request was counted; once that window has rolled it says
    nothing about the current one, so a late response is ignored.
    """
    start = window_start(now, interval_s)
    if window_start(sent_at, interval_s) != start:
        return
    entry = state.pools.get(key)
    if entry is None or entry[0] != start:
        state.pools[key] = [start, float(reported)]
    elif reported > entry[1]:
        entry[1] = float(reported)


def record_backoff(state: BudgetState, ip: str, until: float) -> None:
    if until > state.banned_until.get(ip, 0.0):
        state.banned_until[ip] = until


_USAGE_HEADER = re.compile(r"^x-(mbx-used-weight|mbx-order-count|sapi-used-ip-weight)-(\d+)([smhd])$", re.I)
_HEADER_KIND = {"mbx-used-weight": REQUEST_WEIGHT, "mbx-order-count": ORDERS, "sapi-used-ip-weight": SAPI_WEIGHT}


# Header name -> (pool kind, interval seconds), or None for any other header: a response carries the same few
# names every time, so each is matched once (up to a bound, past which names are matched each time).
_HEADER_MEANING: dict[str, tuple[str, float] | None] = {}
_HEADER_MEANING_MAX = 4096


def _usage_header(name: str) -> tuple[str, float] | None:
    try:
        return _HEADER_MEANING[name]
    except KeyError:
        pass
    match = _USAGE_HEADER.match(name)
    meaning = None if not match else (
        _HEADER_KIND[match.group(1).lower()], float(int(match.group(2)) * _INTERVAL_S[match.group(3).upper()]))
    if len(_HEADER_MEANING) < _HEADER_MEANING_MAX:
        _HEADER_MEANING[name] = meaning
    return meaning


def parse_usage_headers(headers: Mapping[str, str]) -> list[tuple[str, float, float]]:
    """(pool kind, interval seconds, reported usage) for every usage header in a response."""
    out = []
    for name, value in headers.items():
        meaning = _usage_header(name)
        if meaning is None:
            continue
        try:
            reported = float(value)
        except ValueError:
            continue
        out.append((meaning[0], meaning[1], reported))
    return out


def retry_after_s(headers: Mapping[str, str]) -> float | None:
    for name, value in headers.items():
        if name.lower() == "retry-after":
            try:
                return max(0.0, float(value))
            except ValueError:
                return None
    return None


class BudgetStore(Protocol):
    """Atomic read-modify-write of the shared BudgetState. A Redis backend fills this with WATCH/MULTI."""

    def update(self, fn: Callable[[BudgetState], T]) -> T: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Permit:
    """Proof a request was charged; `sent_at` places its response headers in the right window."""

    method: str
    path: str
    sent_at: float
    weight: int


SAPI_IP_LIMIT = 12_000


def _int(value: object) -> int:
    try:
        return int(str(value))
    except ValueError:
        return 0


@dataclass(frozen=True)
class _Made:
    """A limiter's pools and names (`setup`), its pools by (kind, interval) with their keys, and the charges of each
    kind of call so far, by (weight pool, counts as an order, weight)."""

    setup: tuple[Any, ...]
    pools: dict[tuple[str, float], tuple[PoolSpec, str]]
    charges: dict[tuple[str, bool, int], tuple[tuple[Charge, ...], int]]


class SharedRateLimiter:
    """Charges linked pools from a shared budget; refuses with a code rather than waiting past a deadline."""

    def __init__(
        self,
        store: BudgetStore,
        *,
        egress_ip: str = "127.0.0.1",
        account: str = "default",
        exchange: str = "binance",
        pools: Sequence[PoolSpec] | None = None,
        headroom: float = 0.9,
        share: float | None = None,
        share_tag: str = "inspect",
        costs: Mapping[tuple[str, str], EndpointCost] | None = None,
        default_deadline_s: float = 30.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not 0 < headroom <= 1:
            raise ValueError(f"headroom must be in (0, 1], got {headroom}")
        if share is not None and not 0 < share <= 1:
            raise ValueError(f"share must be in (0, 1], got {share}")
        self.store = store
        self.egress_ip = egress_ip
        self.account = account
        self.exchange = exchange
        self.pools = tuple(pools if pools is not None else exchange_pools(exchange))
        self.headroom = headroom
        # With a share, this caller also keeps its own count per IP pool and stays under share * limit there,
        # while still charging (and being held by) the pool every process on the IP shares.
        self.share = share
        self.share_tag = share_tag
        self.costs = costs if costs is not None or exchange == "binance" else {}
        self.default_deadline_s = default_deadline_s
        self.clock = clock
        self.sleep = sleep
        # What the pools and names above make of each kind of call, worked out once (see _setup).
        self._made: _Made | None = None

    @property
    def backoff_key(self) -> str:
        """A 429/418 stops every request from this IP to this exchange, whichever process sends it."""
        return f"{self.exchange}:{self.egress_ip}"

    def pool_key(self, spec: PoolSpec) -> str:
        owner = f"ip:{self.egress_ip}" if spec.scope == "ip" else f"acct:{self.account}"
        return f"{self.exchange}:{owner}:{spec.kind}:{interval_label(spec.interval_s)}"

    def _setup(self) -> _Made:
        """The pools by (kind, interval) with their keys, and the charges made so far, for the pools, names and share
        as they are now: worked out again whenever one of them has changed (the pools are replaced when the exchange's
        own limits are read)."""
        setup = (tuple(self.pools), self.exchange, self.egress_ip, self.account, self.share, self.share_tag)
        made = self._made
        if made is None or made.setup != setup:
            pools = {(spec.kind, spec.interval_s): (spec, self.pool_key(spec)) for spec in setup[0]}
            made = self._made = _Made(setup, pools, {})
        return made

    def _charges(self, cost: EndpointCost, weight: int) -> tuple[tuple[Charge, ...], int]:
        """The charges of a call of this cost and weight, and the request weight among them."""
        made = self._setup()
        key = (cost.weight_pool, cost.counts_as_order, weight)
        found = made.charges.get(key)
        if found is None:
            charges = []
            for spec in made.setup[0]:
                if spec.kind == cost.weight_pool:
                    amount: float = weight
                elif spec.kind == RAW_REQUESTS:
                    amount = 1
                elif spec.kind == ORDERS and cost.counts_as_order:
                    amount = 1
                else:
                    continue
                pool = self.pool_key(spec)
                charges.append(Charge(pool, spec, amount))
                if self.share is not None and spec.scope == "ip":
                    charges.append(Charge(f"{pool}:{self.share_tag}", spec, amount, self.share))
            total = int(sum(c.amount for c in charges if c.spec.kind in (REQUEST_WEIGHT, SAPI_WEIGHT)))
            found = made.charges[key] = (tuple(charges), total)
        return found

    def charges_for(self, method: str, path: str, params: Mapping[str, Any] | None = None) -> list[Charge]:
        cost = endpoint_cost(method, path, self.costs)
        return list(self._charges(cost, cost.weight_for(params or {}))[0])

    def acquire(
        self, method: str, path: str, params: Mapping[str, Any] | None = None, *, deadline_s: float | None = None
    ) -> Permit:
        """Block until the call fits the shared budget, or raise RateLimitRefused if it cannot by the deadline."""
        cost = endpoint_cost(method, path, self.costs)
        charges, weight = self._charges(cost, cost.weight_for(params or {}))
        deadline = self.clock() + (self.default_deadline_s if deadline_s is None else deadline_s)
        while True:
            now = self.clock()
            decision = self.store.update(partial(try_charge, charges=charges, ip=self.backoff_key, now=now,
                                                 headroom=self.headroom))
            if decision.granted:
                return Permit(method.upper(), path, now, weight)
            if decision.impossible:
                raise RateLimitRefused(RATE_COST_EXCEEDS_BUDGET, f"{method} {path}: {decision.reason}")
            if now + decision.wait_s > deadline:
                code = RATE_BANNED if decision.banned else RATE_DEADLINE
                raise RateLimitRefused(
                    code, f"{method} {path} would wait {decision.wait_s:.3f}s ({decision.reason})", decision.wait_s
                )
            # Nothing frees budget inside a fixed window, so sleep to the roll (plus a hair past the boundary).
            self.sleep(decision.wait_s + 0.001)

    def charged_until(self, permit: Permit, params: Mapping[str, Any] | None = None) -> float:
        """When the first of the windows `permit` was charged in rolls: a request sent after it would be counted by
        the exchange in a window the permit did not charge."""
        cost = endpoint_cost(permit.method, permit.path, self.costs)
        charges, _ = self._charges(cost, cost.weight_for(params or {}))
        return min((window_start(permit.sent_at, c.spec.interval_s) + c.spec.interval_s for c in charges),
                   default=math.inf)

    def release(self, permit: Permit, params: Mapping[str, Any] | None = None) -> None:
        """Give back what `permit` charged, for a request that was never sent (a fast-lane verdict revoked unused):
        in each pool whose window it was charged in and which has not rolled since. A rolled window needs nothing."""
        cost = endpoint_cost(permit.method, permit.path, self.costs)
        charges, _ = self._charges(cost, cost.weight_for(params or {}))
        now = self.clock()

        def apply(state: BudgetState) -> None:
            for charge in charges:
                start = window_start(now, charge.spec.interval_s)
                entry = state.pools.get(charge.key)
                if start == window_start(permit.sent_at, charge.spec.interval_s) and entry is not None and \
                        entry[0] == start:
                    entry[1] = max(0.0, entry[1] - charge.amount)

        self.store.update(apply)

    def observe(self, permit: Permit | None, status: int, headers: Mapping[str, str]) -> None:
        """Correct the shared view from the response's usage headers; on 429/418 stop the whole IP.

        A 429 for the account's order count (-1015, its X-MBX-ORDER-COUNT over the limit) is not an IP
        matter: the corrected order pools hold further orders until they roll, other requests go on.
        """
        now = self.clock()
        sent_at = permit.sent_at if permit is not None else now
        reports = parse_usage_headers(headers)
        by_kind = self._setup().pools
        order_limit_hit = status == 429 and any(
            kind == ORDERS and (kind, interval_s) in by_kind and reported > by_kind[(kind, interval_s)][0].limit
            for kind, interval_s, reported in reports
        )
        uid_limit_hit = False
        if status == 429:
            # A SAPI endpoint's UID limit is the account's (Binance: 180,000 per minute per endpoint): a 429 that
            # reports the account's UID weight and not an IP weight over its limit is no reason to stop the IP's other
            # requests.
            lowered = {name.lower(): value for name, value in headers.items()}
            uid_limit_hit = any(n.startswith("x-sapi-used-uid-weight") for n in lowered) and not any(
                n.startswith("x-sapi-used-ip-weight") and _int(v) > SAPI_IP_LIMIT for n, v in lowered.items())
        backoff = None
        if status == 418 or (status == 429 and not order_limit_hit and not uid_limit_hit):
            delay = retry_after_s(headers)
            if delay is None:
                weight_pool = next((s for s in self.pools if s.kind == REQUEST_WEIGHT), None)
                delay = DEFAULT_BAN_S if status == 418 else (
                    window_start(now, weight_pool.interval_s) + weight_pool.interval_s - now if weight_pool else 1.0
                )
            backoff = now + delay
        if not reports and backoff is None:
            return

        backoff_key = self.backoff_key

        def apply(state: BudgetState) -> None:
            for kind, interval_s, reported in reports:
                pool = by_kind.get((kind, interval_s))
                if pool is not None:
                    correct_usage(state, pool[1], interval_s, reported, sent_at, now)
            if backoff is not None:
                record_backoff(state, backoff_key, backoff)

        self.store.update(apply)

    def usage(self) -> dict[str, dict[str, float]]:
        """Current used/limit per pool, for the live state and the dashboard."""
        now = self.clock()
        state = self.store.update(lambda s: BudgetState.from_json(s.to_json()))
        return {
            self.pool_key(spec): {"used": state.used(self.pool_key(spec), spec.interval_s, now), "limit": spec.limit,
                                  "interval_s": spec.interval_s}
            for spec in self.pools
        }

    def banned_until(self) -> float:
        return self.store.update(lambda s: s.banned_until.get(self.backoff_key, 0.0))
