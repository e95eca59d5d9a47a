"""The emulated exchange's in-memory state: keys, accounts, balances, prices, orders, faults, clock.

Every public method takes the lock, so tests may change state from their own thread while uvicorn serves.
"""

from __future__ import annotations

import base64
import ipaddress
import math
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field

from keyguard.sandbox.config import SandboxConfig, SymbolSpec, interval_of
from keyguard.sandbox.limits import BanLadder, CallLog, UnfilledOrderCount, WindowCounter
from keyguard.sandbox.signing import ASYMMETRIC_KEY_TYPES, HMAC_SHA256, KEY_TYPES, parse_public_key

# Binance's apiRestrictions flag set, in the order the exchange returns it.
BINANCE_FLAGS = (
    "enableReading",
    "enableSpotAndMarginTrading",
    "enableMargin",
    "enableFutures",
    "enableVanillaOptions",
    "enablePortfolioMarginTrading",
    "enableFixApiTrade",
    "enableFixReadOnly",
    "enableInternalTransfer",
    "permitsUniversalTransfer",
    "enableWithdrawals",
)

# The flags that let a key change something (everything but reading): what a read-only key lacks.
WRITE_FLAGS = tuple(name for name in BINANCE_FLAGS if name not in ("enableReading", "enableFixReadOnly"))

# Exchanges whose keys come with a passphrase chosen at creation.
PASSPHRASE_EXCHANGES = ("okx", "kucoin", "bitget", "blofin")

Exchange = Literal["binance", "okx", "bybit", "kucoin", "kraken", "bitget", "coinbase", "blofin", "gate"]


class KeySpec(BaseModel):
    """What the admin API accepts to create or alter a key (any field left None keeps its value)."""

    exchange: Exchange = "binance"
    account: str = "main"
    label: str = ""
    flags: dict[str, bool] = Field(default_factory=dict)
    ip_restrict: bool | None = None
    ips: list[str] | None = None
    create_time_ms: int | None = None
    # Bybit reports an expiry only for keys without an IP binding.
    expire_time_ms: int | None = None
    # A chosen secret (creation only; default: generated). Lets a test plant a recognisable canary value.
    secret: str | None = None
    # Binance's API key types (creation only): HMAC_SHA256 (default; the sandbox mints the secret), or ED25519 / RSA,
    # for which the client sends its PEM public key and keeps the private key: the sandbox never holds one.
    key_type: str | None = None
    public_key: str | None = None
    # Create (or change) a Binance key so it may withdraw from any IP, which Binance itself refuses: for a test that
    # needs exactly such a key (a leaked wide-open key, a detector's finding), and says so.
    unsafe_unrestricted_withdraw: bool | None = None


class KeySpecError(ValueError):
    """A key spec the admin API refuses: `field` names what is wrong, the message says what would be right."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


# Binance's GET /sapi/v1/account/apiRestrictions docs, on enableWithdrawals: "This option allows you to withdraw via
# API. You must apply the IP Access Restriction filter in order to enable withdrawals".
UNRESTRICTED_WITHDRAW = "You must apply the IP Access Restriction filter in order to enable withdrawals"


@dataclass
class SandboxKey:
    api_key: str
    secret: str
    exchange: str
    account: str
    label: str
    flags: dict[str, bool]
    ip_restrict: bool
    ips: list[str]
    create_time_ms: int
    expire_time_ms: int | None = None
    passphrase: str | None = None
    revoked: bool = False
    # When the key's settings (IP list, permissions) were last changed through the exchange's API.
    update_time_ms: int | None = None
    key_type: str = HMAC_SHA256
    # ED25519 and RSA keys: the client's public key (PEM); their `secret` is empty.
    public_key: str | None = None
    # Asked for explicitly: the key may withdraw without an IP restriction, which Binance refuses.
    unsafe_unrestricted_withdraw: bool = False

    def public_view(self) -> dict[str, Any]:
        """Everything but the secret and passphrase: what the admin API may show after creation."""
        return {
            "api_key": self.api_key,
            "key_type": self.key_type,
            "public_key": self.public_key,
            "exchange": self.exchange,
            "account": self.account,
            "label": self.label,
            "flags": dict(self.flags),
            "ip_restrict": self.ip_restrict,
            "ips": list(self.ips),
            "create_time_ms": self.create_time_ms,
            "expire_time_ms": self.expire_time_ms,
            "revoked": self.revoked,
            "unsafe_unrestricted_withdraw": self.unsafe_unrestricted_withdraw,
        }

    def allows_ip(self, ip: str) -> bool:
        return not self.ip_restrict or ip in self.ips

    def withdraws_unrestricted(self, flags: dict[str, bool] | None = None, ip_restrict: bool | None = None) -> bool:
        """Whether this Binance key (with `flags` / `ip_restrict` changed as given) could withdraw from any IP."""
        withdraw = (flags if flags is not None else self.flags).get("enableWithdrawals", False)
        restricted = ip_restrict if ip_restrict is not None else self.ip_restrict
        return self.exchange == "binance" and withdraw and not restricted


@dataclass
class SubAccount:
    """An account that belongs to a master account: the master's keys manage the sub-account's keys, and Binance
    names the sub-account by its email."""

    account: str
    master: str
    email: str
    create_time_ms: int

    def public_view(self) -> dict[str, Any]:
        return {"account": self.account, "master": self.master, "email": self.email,
                "create_time_ms": self.create_time_ms}


def parse_ip_list(raw: str) -> list[str]:
    """A comma-separated IP list as exchanges take it ("1.2.3.4,5.6.7.8"), blanks dropped, duplicates folded;
    ValueError naming the first entry that is not an IP address."""
    out: list[str] = []
    for part in raw.split(","):
        ip = part.strip()
        if not ip:
            continue
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise ValueError(ip) from None
        if ip not in out:
            out.append(ip)
    return out


@dataclass
class Order:
    order_id: int
    account: str
    symbol: str
    client_order_id: str
    side: str
    type: str
    time_in_force: str | None
    price: float
    orig_qty: float
    executed_qty: float = 0.0
    cumulative_quote_qty: float = 0.0
    status: str = "NEW"
    time_ms: int = 0
    update_time_ms: int = 0
    fills: list[dict[str, Any]] = field(default_factory=list)
    # True once the unfilled rest sits in the book with its funds locked.
    resting: bool = False

    @property
    def is_open(self) -> bool:
        return self.status in ("NEW", "PARTIALLY_FILLED")


@dataclass
class Trade:
    trade_id: int
    order_id: int
    account: str
    symbol: str
    side: str
    price: float
    qty: float
    quote_qty: float
    time_ms: int
    # What the fill cost, in the asset it was charged in (the asset received: base for a buy, quote for a sell).
    commission: float = 0.0
    commission_asset: str = ""
    # The maker is the order that was resting in the book; the taker executed on arrival.
    is_maker: bool = False


class Fault(BaseModel):
    """A fault injected on one endpoint ("POST /api/v3/order", or "*" for every exchange endpoint).

    kind: latency (delay only), status (an HTTP error such as 503), reset (the connection is cut mid-response),
    malformed (a 200 with an unparseable body), drop (the connection is held, then cut: the client times out).
    when: before = the request is not executed; after = it is executed, then the client sees the fault.
    """

    endpoint: str
    kind: Literal["latency", "status", "reset", "malformed", "drop"]
    latency_ms: int = 0
    status: int = 503
    when: Literal["before", "after"] | None = None
    times: int | None = None  # None = until cleared
    hold_s: float | None = None
    # Only requests from this source address (None = any): lets a test fault the second address of a probe.
    client_ip: str | None = None

    def effective_when(self) -> str:
        if self.when:
            return self.when
        return "after" if self.kind in ("drop", "malformed") else "before"


StateListener = Callable[[str, dict[str, Any]], None]


class SandboxRejection(Exception):
    """A protocol error the exchange returns: HTTP status plus the exchange's own code and message."""

    def __init__(self, status: int, code: int | str, msg: str, headers: dict[str, str] | None = None):
        super().__init__(msg)
        self.status = status
        self.code = code
        self.msg = msg
        self.headers = headers or {}


def _key_material(spec: KeySpec) -> tuple[str, str | None]:
    """The key type and, for ED25519 and RSA, the checked public key; KeySpecError names the field at fault."""
    key_type = (spec.key_type or HMAC_SHA256).upper()
    if key_type not in KEY_TYPES:
        raise KeySpecError("key_type", f"{spec.key_type!r} is not a Binance API key type; one of {list(KEY_TYPES)}")
    if key_type == HMAC_SHA256:
        if spec.public_key is not None:
            raise KeySpecError("public_key", f"an {HMAC_SHA256} key has no public key (the sandbox mints its "
                                             f"secret); for a public-key key set key_type to one of "
                                             f"{list(ASYMMETRIC_KEY_TYPES)}")
        return key_type, None
    if spec.exchange != "binance":
        raise KeySpecError("key_type", f"{key_type} keys exist on the sandbox's Binance face only; "
                                       f"a {spec.exchange} key is {HMAC_SHA256}")
    if spec.secret is not None:
        raise KeySpecError("secret", f"an {key_type} key has no secret: the client signs with its private key and "
                                     "the sandbox holds only the public key")
    if not spec.public_key:
        raise KeySpecError("public_key", f"an {key_type} key needs the client's public key (PEM); the private key "
                                         "stays with the client")
    try:
        return key_type, parse_public_key(key_type, spec.public_key)
    except ValueError as exc:
        raise KeySpecError("public_key", str(exc)) from None


def _unrestricted_withdraw_refusal() -> KeySpecError:
    return KeySpecError("flags.enableWithdrawals", f"{UNRESTRICTED_WITHDRAW} (Binance): set ip_restrict true with "
                                                   "the trusted ips, or, for a test that needs a key that can "
                                                   "withdraw from anywhere, unsafe_unrestricted_withdraw true")


def _unrestricted_withdraw_rejection() -> SandboxRejection:
    # Binance documents the rule, not the error its key-management API returns for it: the sandbox answers
    # INVALID_PARAMETER with the documented sentence, and changes nothing.
    return SandboxRejection(400, -1130, f"{UNRESTRICTED_WITHDRAW}.")


def missing(name: str) -> SandboxRejection:
    return SandboxRejection(400, -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")


def _fmt(value: float) -> str:
    return f"{value:.8f}"


def _over_limit(counter: WindowCounter, label: str, now: float, headers: dict[str, str]) -> SandboxRejection:
    """Binance's -1003 for a request over a weight or request-count limit, with the seconds to the window's roll."""
    name, num, _ = interval_of(int(counter.window_s))
    return SandboxRejection(
        429,
        -1003,
        f"Too much request weight used; current limit is {counter.limit} {label} per {num} {name}. "
        "Please use WebSocket Streams for live updates to avoid polling the API.",
        {**headers, "Retry-After": str(counter.seconds_to_reset(now))},
    )


# Binance charges commission to the asset's commission precision (exchangeInfo: baseCommissionPrecision and
# quoteCommissionPrecision, 8 for every sandbox symbol).
COMMISSION_DECIMALS = 8


def commission_of(received: float, rate: float) -> float:
    """Commission on `received` at `rate`, to Binance's 8 decimals."""
    return round(received * rate, COMMISSION_DECIMALS)


class SandboxExchange:
    """State shared by the Binance, OKX and Bybit faces of the sandbox."""

    def __init__(self, config: SandboxConfig | None = None, clock: Callable[[], float] = time.time):
        self.config = config or SandboxConfig()
        self._clock = clock
        self.lock = threading.RLock()
        self.skew_ms = self.config.clock_skew_ms
        self.keys: dict[str, SandboxKey] = {}
        self.balances: dict[str, dict[str, float]] = {}
        self.locked: dict[str, dict[str, float]] = {}
        self.funding: dict[str, dict[str, float]] = {}
        self.symbols: dict[str, SymbolSpec] = {s.symbol: s for s in self.config.symbols}
        self.prices: dict[str, float] = {s.symbol: s.price for s in self.config.symbols}
        self.orders: dict[int, Order] = {}
        self.trades: list[Trade] = []
        self.withdrawals: list[dict[str, Any]] = []
        self.transfers: list[dict[str, Any]] = []
        # account -> its withdrawal address book (what GET /sapi/v1/capital/withdraw/address/list shows).
        self.address_book: dict[str, list[dict[str, Any]]] = {}
        # sub-account name -> its relation to its master.
        self.sub_accounts: dict[str, SubAccount] = {}
        self.faults: list[Fault] = []
        # Kraken refuses a nonce not above the last one seen for the key.
        self.kraken_nonces: dict[str, int] = {}
        self._next_order_id = 1000
        self._next_trade_id = 1
        c = self.config
        origin = self.now() if c.align_windows_to_start else 0.0
        self.weight = WindowCounter(c.weight_limit, c.weight_window_s, origin)
        self.raw_requests = WindowCounter(c.raw_request_limit, c.raw_request_window_s, origin)
        # Keyed "<ip> <METHOD path>": each SAPI endpoint has its own pool per IP (and per account, below).
        self.sapi_ip_weight = WindowCounter(c.sapi_weight_limit, c.sapi_weight_window_s, origin)
        self.sapi_uid_weight = WindowCounter(c.sapi_uid_weight_limit, c.sapi_uid_weight_window_s, origin)
        self.orders_short = WindowCounter(c.orders_short_limit, c.orders_short_window_s, origin)
        self.orders_long = WindowCounter(c.orders_long_limit, c.orders_long_window_s, origin)
        self.unfilled_orders = UnfilledOrderCount([self.orders_short, self.orders_long], c.order_count_taker_credit,
                                                  c.order_count_maker_credit)
        self.bans = BanLadder(c.ban_base_s, c.ban_max_s, c.ban_grace_s, c.ban_after_violations)
        # Per-endpoint, per-account limits of the faces that count them over a sliding window (OKX).
        self.calls = CallLog()
        # Set when the server stops, so held ("drop") connections let go at once.
        self.stopping = threading.Event()
        # Who hears about state changes (the WebSocket face), and each symbol's order book update id.
        self._listeners: list[StateListener] = []
        self.book_update_ids: dict[str, int] = {s.symbol: 1 for s in self.config.symbols}

    # -- change events ----------------------------------------------------------------------------------
    def subscribe(self, listener: StateListener) -> Callable[[], None]:
        """Call `listener(kind, data)` on every change, under the state lock and in order, from whichever thread
        made the change: it must only copy what it needs and hand it on, and never raise. Kinds and data: order
        (order, execution), fill (order, trade, maker), balance (account), book (symbol, before and after as
        (bids, asks)). Returns the call that unsubscribes."""
        with self.lock:
            self._listeners.append(listener)
        return lambda: self._unsubscribe(listener)

    def _unsubscribe(self, listener: StateListener) -> None:
        with self.lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def _emit(self, kind: str, **data: Any) -> None:
        for listener in list(self._listeners):
            listener(kind, data)

    # -- clock ------------------------------------------------------------------------------------------
    def now(self) -> float:
        """Sandbox time in seconds (host clock plus skew)."""
        return self._clock() + self.skew_ms / 1000.0

    def now_ms(self) -> int:
        return int(self.now() * 1000)

    def set_skew(self, skew_ms: int) -> None:
        with self.lock:
            self.skew_ms = skew_ms

    # -- keys -------------------------------------------------------------------------------------------
    def create_key(self, spec: KeySpec) -> SandboxKey:
        """Mint a key. Binance keys are 64 alphanumerics like the real ones; OKX keys also get a passphrase."""
        with self.lock:
            flags = {name: False for name in BINANCE_FLAGS}
            flags["enableReading"] = True
            unknown = set(spec.flags) - set(BINANCE_FLAGS)
            if unknown:
                raise ValueError(f"unknown permission flags {sorted(unknown)}; known: {list(BINANCE_FLAGS)}")
            flags.update(spec.flags)
            key_type, public_key = _key_material(spec)
            if (spec.exchange == "binance" and flags["enableWithdrawals"] and not spec.ip_restrict
                    and not spec.unsafe_unrestricted_withdraw):
                raise _unrestricted_withdraw_refusal()
            if spec.exchange == "okx":
                api_key = f"{secrets.token_hex(4)}-{secrets.token_hex(2)}-{secrets.token_hex(2)}-{secrets.token_hex(6)}"
                secret = secrets.token_hex(16).upper()
            elif spec.exchange == "coinbase":
                from keyguard.sandbox.coinbase import new_cdp_key

                api_key, secret = new_cdp_key()
            elif spec.exchange == "gate":
                api_key = secrets.token_hex(16)
                secret = secrets.token_hex(32)
            elif spec.exchange == "bitget":
                api_key = "bg_" + secrets.token_hex(16)
                secret = secrets.token_hex(32)
            elif spec.exchange == "kucoin":
                api_key = secrets.token_hex(12)
                secret = str(uuid.uuid4())
            elif spec.exchange == "kraken":
                api_key = base64.b64encode(secrets.token_bytes(42)).decode()
                secret = base64.b64encode(secrets.token_bytes(64)).decode()
            elif spec.exchange == "bybit":
                api_key = secrets.token_urlsafe(14).replace("-", "A").replace("_", "B")[:18]
                secret = secrets.token_urlsafe(27).replace("-", "C").replace("_", "D")[:36]
            else:
                api_key = secrets.token_hex(32)
                secret = secrets.token_hex(32)
            if key_type in ASYMMETRIC_KEY_TYPES:
                secret = ""
            key = SandboxKey(
                api_key=api_key,
                secret=spec.secret or secret,
                exchange=spec.exchange,
                account=spec.account,
                label=spec.label,
                flags=flags,
                ip_restrict=bool(spec.ip_restrict),
                ips=list(spec.ips or []),
                create_time_ms=spec.create_time_ms if spec.create_time_ms is not None else self.now_ms(),
                expire_time_ms=spec.expire_time_ms,
                passphrase=secrets.token_urlsafe(12) if spec.exchange in PASSPHRASE_EXCHANGES else None,
                key_type=key_type,
                public_key=public_key,
                unsafe_unrestricted_withdraw=bool(spec.unsafe_unrestricted_withdraw),
            )
            self.keys[api_key] = key
            self._ensure_account(spec.account)
            return key

    def alter_key(self, api_key: str, spec: KeySpec) -> SandboxKey:
        """Change what the spec sets, checked whole before anything changes. A key's type, material and exchange
        are fixed at creation, as on the exchange: a different one is a new key."""
        with self.lock:
            key = self.keys[api_key]
            unknown = set(spec.flags) - set(BINANCE_FLAGS)
            if unknown:
                raise ValueError(f"unknown permission flags {sorted(unknown)}; known: {list(BINANCE_FLAGS)}")
            for name in ("key_type", "public_key", "secret"):
                if getattr(spec, name) is not None:
                    raise KeySpecError(name, "is fixed when the key is created; create a new key instead")
            unsafe = spec.unsafe_unrestricted_withdraw
            if unsafe is None:
                unsafe = key.unsafe_unrestricted_withdraw
            if key.withdraws_unrestricted({**key.flags, **spec.flags}, spec.ip_restrict) and not unsafe:
                raise _unrestricted_withdraw_refusal()
            key.unsafe_unrestricted_withdraw = unsafe
            key.flags.update(spec.flags)
            if spec.ip_restrict is not None:
                key.ip_restrict = spec.ip_restrict
            if spec.ips is not None:
                key.ips = list(spec.ips)
            if spec.create_time_ms is not None:
                key.create_time_ms = spec.create_time_ms
            if spec.expire_time_ms is not None:
                key.expire_time_ms = spec.expire_time_ms
            if spec.label:
                key.label = spec.label
            return key

    def revoke_key(self, api_key: str) -> None:
        with self.lock:
            self.keys[api_key].revoked = True
            self.keys[api_key].update_time_ms = self.now_ms()

    def set_ip_restriction(self, api_key: str, restrict: bool, ips: list[str]) -> SandboxKey:
        """Replace a key's IP restriction and list, as an exchange's key-management API does; the key is refused
        from any other address on its next request."""
        with self.lock:
            key = self.keys[api_key]
            if key.withdraws_unrestricted(ip_restrict=restrict) and not key.unsafe_unrestricted_withdraw:
                raise _unrestricted_withdraw_rejection()
            key.ip_restrict = restrict
            key.ips = list(ips)
            key.update_time_ms = self.now_ms()
            return key

    def remove_ips(self, api_key: str, ips: list[str]) -> SandboxKey:
        """Drop addresses from a key's IP list; the restriction itself stays as it was."""
        with self.lock:
            key = self.keys[api_key]
            key.ips = [ip for ip in key.ips if ip not in ips]
            key.update_time_ms = self.now_ms()
            return key

    def set_label(self, api_key: str, label: str) -> SandboxKey:
        """Rename a key through an exchange's key-management API."""
        with self.lock:
            key = self.keys[api_key]
            key.label = label
            key.update_time_ms = self.now_ms()
            return key

    def set_flags(self, api_key: str, flags: dict[str, bool]) -> SandboxKey:
        """Change some of a key's permission flags through an exchange's key-management API."""
        with self.lock:
            unknown = set(flags) - set(BINANCE_FLAGS)
            if unknown:
                raise ValueError(f"unknown permission flags {sorted(unknown)}; known: {list(BINANCE_FLAGS)}")
            key = self.keys[api_key]
            if key.withdraws_unrestricted({**key.flags, **flags}) and not key.unsafe_unrestricted_withdraw:
                raise _unrestricted_withdraw_rejection()
            key.flags.update(flags)
            key.update_time_ms = self.now_ms()
            return key

    # -- accounts ---------------------------------------------------------------------------------------
    def _ensure_account(self, account: str) -> None:
        if account not in self.balances:
            self.balances[account] = dict(self.config.starting_balances)
            self.locked[account] = {}
            self.funding[account] = {}

    def add_sub_account(self, master: str, account: str, email: str) -> SubAccount:
        """Make `account` a sub-account of `master` under `email`. One level only, as on Binance and Bybit: a master
        cannot itself be a sub-account, nor a sub-account have sub-accounts. ValueError says what conflicts."""
        with self.lock:
            if "@" not in email.strip("@"):
                raise ValueError(f"{email!r} is not an email address")
            if account == master:
                raise ValueError("an account cannot be its own sub-account")
            if account in self.sub_accounts:
                raise ValueError(f"{account!r} is already a sub-account of {self.sub_accounts[account].master!r}")
            if master in self.sub_accounts:
                raise ValueError(f"{master!r} is a sub-account, so it cannot have sub-accounts")
            if any(s.master == account for s in self.sub_accounts.values()):
                raise ValueError(f"{account!r} is a master account, so it cannot become a sub-account")
            if self.sub_account_by_email(email) is not None:
                raise ValueError(f"the email {email!r} is already taken")
            self._ensure_account(master)
            self._ensure_account(account)
            sub = SubAccount(account=account, master=master, email=email, create_time_ms=self.now_ms())
            self.sub_accounts[account] = sub
            return sub

    def sub_account_by_email(self, email: str) -> SubAccount | None:
        with self.lock:
            wanted = email.lower()
            return next((s for s in self.sub_accounts.values() if s.email.lower() == wanted), None)

    def master_of(self, account: str) -> str | None:
        """The master of a sub-account; None for an account that is not one."""
        with self.lock:
            sub = self.sub_accounts.get(account)
            return sub.master if sub else None

    def set_balance(self, account: str, asset: str, free: float) -> None:
        with self.lock:
            self._ensure_account(account)
            self.balances[account][asset] = free
            self._emit("balance", account=account)

    def set_price(self, symbol: str, price: float) -> None:
        """Move the market; resting limit orders the new price crosses fill in full, at their own price, as the
        maker (they were in the book; the market came to them)."""
        with self.lock:
            if symbol not in self.symbols:
                raise KeyError(symbol)
            before = self.book(symbol)
            self.prices[symbol] = price
            self.book_update_ids[symbol] += 1
            self._emit("book", symbol=symbol, before=before, after=self.book(symbol))
            for order in list(self.orders.values()):
                if order.symbol == symbol and order.is_open and order.resting:
                    crosses = price <= order.price if order.side == "BUY" else price >= order.price
                    if crosses:
                        self._fill(order, order.orig_qty - order.executed_qty, order.price, maker=True)
                        self._emit("fill", order=order, trade=self.trades[-1], maker=True)
                        self._emit("balance", account=order.account)

    # -- faults -----------------------------------------------------------------------------------------
    def set_faults(self, faults: list[Fault]) -> None:
        with self.lock:
            self.faults = list(faults)

    def take_faults(self, endpoint: str, client_ip: str | None = None) -> list[Fault]:
        """The faults that apply to this request, consuming one use of each counted fault."""
        with self.lock:
            hits = [f for f in self.faults if f.endpoint in (endpoint, "*")
                    and (f.client_ip is None or f.client_ip == client_ip)]
            for f in hits:
                if f.times is not None:
                    f.times -= 1
            self.faults = [f for f in self.faults if f.times is None or f.times > 0]
            return hits

    # -- rate limits ------------------------------------------------------------------------------------
    def charge_ip(self, ip: str, weight: float) -> dict[str, str]:
        """Charge one /api request to its IP; return usage headers, or raise 418 (banned) / 429 (over the limit)."""
        with self.lock:
            now = self.now()
            self._refuse_if_banned(ip, now, judge=True)
            raw = self.raw_requests.add(ip, 1, now)
            used = self.weight.add(ip, weight, now)
            suffix = interval_of(int(self.weight.window_s))[2]
            headers = {f"X-MBX-USED-WEIGHT-{suffix}": str(int(used)), "X-MBX-USED-WEIGHT": str(int(used))}
            for counter, value, label in ((self.weight, used, "request weight"), (self.raw_requests, raw,
                                                                                  "raw requests")):
                if value > counter.limit:
                    # "When a 429 is received, it's your obligation as an API to back off": until the window rolls.
                    self.bans.back_off(ip, counter.window_start(now) + counter.window_s, now)
                    raise _over_limit(counter, label, now, headers)
            return headers

    def charge_sapi_ip(self, ip: str, endpoint: str, weight: float) -> dict[str, str]:
        """Charge a "Weight(IP)" SAPI call to its IP's pool for that endpoint (Binance: "Each endpoint with IP limits
        has an independent 12000 per minute limit"). Over it is a 429 with Retry-After and nothing more: SAPI is
        outside the 418 ladder, so the IP's /api requests go on. An IP already banned is refused here too."""
        with self.lock:
            now = self.now()
            self._refuse_if_banned(ip, now, judge=False)
            counter = self.sapi_ip_weight
            used = counter.add(f"{ip} {endpoint}", weight, now)
            headers = {f"X-SAPI-USED-IP-WEIGHT-{interval_of(int(counter.window_s))[2]}": str(int(used))}
            if used > counter.limit:
                self.bans.standing(ip).refusals += 1
                raise _over_limit(counter, "request weight", now, headers)
            return headers

    def sapi_ip_used(self, ip: str) -> float:
        """The IP's SAPI weight in the current window, summed over its endpoints' pools."""
        with self.lock:
            return self.sapi_ip_weight.used_by_prefix(f"{ip} ", self.now())

    def refuse_if_banned(self, ip: str) -> None:
        """Refuse a request from a banned IP with 418, without judging the request itself (SAPI, UID-weighted)."""
        with self.lock:
            self._refuse_if_banned(ip, self.now(), judge=False)

    def _refuse_if_banned(self, ip: str, now: float, judge: bool) -> None:
        # judge: an /api request, which a back-off it ignores can turn into a ban.
        ban_left = self.bans.check(ip, now) if judge else self.bans.ban_left(ip, now)
        if ban_left is not None:
            until_ms = int((now + ban_left) * 1000)
            raise SandboxRejection(
                418,
                -1003,
                f"Way too much request weight used; IP banned until {until_ms}. "
                "Please use WebSocket Streams for live updates to avoid bans.",
                {"Retry-After": str(max(1, int(ban_left + 0.999)))},
            )

    def admit_call(self, key: str, limit: int, window_s: float) -> bool:
        """Count one call against a sliding-window limit ("`limit` requests per `window_s` seconds" for `key`, e.g.
        an endpoint and an account); False, and not counted, when the window is already full."""
        with self.lock:
            return self.calls.admit(key, limit, window_s, self.now())

    def charge_uid(self, account: str, endpoint: str, weight: float) -> dict[str, str]:
        """Charge a UID-weighted SAPI call to the account's pool for that endpoint (Binance: "each endpoint with UID
        limits has an independent 180000 per minute limit"); usage header, or 429 past the limit. The limit is the
        account's, so going over it is not held against the IP: no back-off, no ban."""
        with self.lock:
            now = self.now()
            counter = self.sapi_uid_weight
            used = counter.add(f"{account} {endpoint}", weight, now)
            headers = {f"X-SAPI-USED-UID-WEIGHT-{interval_of(int(counter.window_s))[2]}": str(int(used))}
            if used > counter.limit:
                raise _over_limit(counter, "request weight", now, headers)
            return headers

    def charge_order(self, account: str) -> dict[str, str]:
        """Count a new order against the account's unfilled order count; its X-MBX-ORDER-COUNT headers, or -1015.

        The headers are the count at placement: an order that trades at once is taken off it afterwards, at its first
        fill (`_fill`), as Binance says of "orders that immediately fill (such as a MARKET order that takes
        immediately)"."""
        with self.lock:
            now = self.now()
            counts, over = self.unfilled_orders.place(account, now)
            headers = self._order_count_headers(counts)
            if over is not None:
                name, num, _ = interval_of(int(over.window_s))
                # Binance: "If you have exceeded this, you will receive a 429 error with the Retry-After header."
                raise SandboxRejection(
                    429,
                    -1015,
                    f"Too many new orders; current limit is {over.limit} orders per {num} {name}.",
                    {**headers, "Retry-After": str(over.seconds_to_reset(now))},
                )
            return headers

    def order_count_headers(self, account: str) -> dict[str, str]:
        with self.lock:
            now = self.now()
            return self._order_count_headers(self.unfilled_orders.counts(account, now))

    def unfilled_order_counts(self, account: str) -> list[tuple[WindowCounter, int]]:
        """(interval, the account's unfilled order count in it now), as GET /api/v3/rateLimit/order reports them."""
        with self.lock:
            now = self.now()
            counts = self.unfilled_orders.counts(account, now)
            return [(counter, int(count)) for counter, count in zip(self.unfilled_orders.counters, counts, strict=True)]

    def _order_count_headers(self, counts: list[float]) -> dict[str, str]:
        return {f"X-MBX-ORDER-COUNT-{interval_of(int(counter.window_s))[2]}": str(int(count))
                for counter, count in zip(self.unfilled_orders.counters, counts, strict=True)}

    # -- orders -----------------------------------------------------------------------------------------
    def book(self, symbol: str) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
        """(bids, asks) as (price, qty) levels around the current price."""
        spec = self.symbols[symbol]
        p = self.prices[symbol]
        bids = [(round(p * (1 - spec.book_step * (i + 1)), 8), spec.level_qty) for i in range(spec.book_levels)]
        asks = [(round(p * (1 + spec.book_step * (i + 1)), 8), spec.level_qty) for i in range(spec.book_levels)]
        return bids, asks

    def place_order(
        self,
        account: str,
        symbol: str,
        side: str,
        type_: str,
        quantity: float | None,
        quote_qty: float | None,
        price: float | None,
        time_in_force: str | None,
        client_order_id: str,
    ) -> Order:
        with self.lock:
            if symbol not in self.symbols:
                raise SandboxRejection(400, -1121, "Invalid symbol.")
            if side not in ("BUY", "SELL"):
                raise SandboxRejection(400, -1117, "Invalid side.")
            if type_ not in ("LIMIT", "MARKET"):
                raise SandboxRejection(400, -1116, "Invalid orderType.")
            for o in self.orders.values():
                if o.account == account and o.is_open and o.client_order_id == client_order_id:
                    raise SandboxRejection(400, -2010, "Duplicate order sent.")
            spec = self.symbols[symbol]
            bids, asks = self.book(symbol)
            levels = asks if side == "BUY" else bids
            if type_ == "LIMIT":
                if price is None or quantity is None:
                    raise missing("price" if price is None else "quantity")
                if time_in_force not in ("GTC", "IOC", "FOK"):
                    raise missing("timeInForce")
            elif quantity is None and quote_qty is None:
                raise missing("quantity")
            if quantity is None:
                # quoteOrderQty market order: convert at the touch for the size check and fill below.
                quantity = float(quote_qty or 0) / levels[0][0]
            # Whatever a face let through, a NaN, infinite or non-positive amount never reaches the balances.
            if not math.isfinite(quantity) or quantity <= 0:
                raise SandboxRejection(400, -1013, "Invalid quantity.")
            if price is not None and (not math.isfinite(price) or price <= 0):
                raise SandboxRejection(400, -1013, "Invalid price.")
            reserve_price = price if price is not None else levels[-1][0]
            if side == "BUY":
                need, asset = quantity * reserve_price, spec.quote
            else:
                need, asset = quantity, spec.base
            if self.balances[account].get(asset, 0.0) + 1e-12 < need:
                raise SandboxRejection(400, -2010, "Account has insufficient balance for requested action.")
            now_ms = self.now_ms()
            self._next_order_id += 1
            order = Order(
                order_id=self._next_order_id,
                account=account,
                symbol=symbol,
                client_order_id=client_order_id,
                side=side,
                type=type_,
                time_in_force=time_in_force if type_ == "LIMIT" else None,
                price=price if type_ == "LIMIT" and price is not None else 0.0,
                orig_qty=quantity,
                time_ms=now_ms,
                update_time_ms=now_ms,
            )
            self.orders[order.order_id] = order
            self._emit("order", order=order, execution="NEW")
            # Cross the book level by level; a limit order stops at its price. What executes on arrival is the
            # taker side of each trade.
            reachable = [(p, q) for p, q in levels
                         if type_ != "LIMIT" or (p <= order.price if side == "BUY" else p >= order.price)]
            if time_in_force == "FOK" and sum(q for _, q in reachable) + 1e-12 < quantity:
                reachable = []  # fill or kill: all of it at once, or nothing
            remaining = quantity
            for level_price, level_qty in reachable:
                if remaining <= 1e-12:
                    break
                self._fill(order, min(remaining, level_qty), level_price, maker=False)
                self._emit("fill", order=order, trade=self.trades[-1], maker=False)
                remaining = order.orig_qty - order.executed_qty
            if order.is_open:
                if type_ == "MARKET" or time_in_force in ("IOC", "FOK"):
                    # Not enough depth: what filled stays filled (never for FOK), the rest expires.
                    order.status = "EXPIRED"
                    self._emit("order", order=order, execution="EXPIRED")
                else:
                    self._lock_for(order)
                    order.resting = True
            if order.executed_qty > 0 or order.resting:
                self._emit("balance", account=account)
            return order

    def _lock_for(self, order: Order) -> None:
        spec = self.symbols[order.symbol]
        left = order.orig_qty - order.executed_qty
        asset, amount = (spec.quote, left * order.price) if order.side == "BUY" else (spec.base, left)
        self.balances[order.account][asset] -= amount
        self.locked[order.account][asset] = self.locked[order.account].get(asset, 0.0) + amount

    def _unlock_for(self, order: Order, qty: float) -> None:
        spec = self.symbols[order.symbol]
        asset, amount = (spec.quote, qty * order.price) if order.side == "BUY" else (spec.base, qty)
        self.locked[order.account][asset] = self.locked[order.account].get(asset, 0.0) - amount
        self.balances[order.account][asset] = self.balances[order.account].get(asset, 0.0) + amount

    def commission_rate(self, maker: bool) -> float:
        return self.config.maker_commission if maker else self.config.taker_commission

    def _fill(self, order: Order, qty: float, price: float, *, maker: bool) -> None:
        """Execute `qty` of `order` at `price`. The commission (maker or taker rate) comes out of what the order
        receives: base for a buy, quote for a sell."""
        spec = self.symbols[order.symbol]
        if order.resting:
            self._unlock_for(order, qty)
        if order.executed_qty == 0:
            # Binance takes an order off the unfilled order count at its first fill, taker or maker.
            self.unfilled_orders.first_fill(order.account, maker, self.now())
        bal = self.balances[order.account]
        quote = qty * price
        if order.side == "BUY":
            asset, commission = spec.base, commission_of(qty, self.commission_rate(maker))
            bal[spec.quote] = bal.get(spec.quote, 0.0) - quote
            bal[spec.base] = bal.get(spec.base, 0.0) + qty - commission
        else:
            asset, commission = spec.quote, commission_of(quote, self.commission_rate(maker))
            bal[spec.base] = bal.get(spec.base, 0.0) - qty
            bal[spec.quote] = bal.get(spec.quote, 0.0) + quote - commission
        order.executed_qty += qty
        order.cumulative_quote_qty += quote
        order.status = "FILLED" if order.executed_qty >= order.orig_qty - 1e-12 else "PARTIALLY_FILLED"
        if order.status == "FILLED":
            order.resting = False
        order.update_time_ms = self.now_ms()
        trade = Trade(self._next_trade_id, order.order_id, order.account, order.symbol, order.side, price, qty,
                      quote, order.update_time_ms, commission, asset, maker)
        self._next_trade_id += 1
        self.trades.append(trade)
        order.fills.append({"price": _fmt(price), "qty": _fmt(qty), "commission": _fmt(commission),
                            "commissionAsset": asset, "tradeId": trade.trade_id})

    def find_order(self, account: str, symbol: str, order_id: int | None, client_order_id: str | None) -> Order:
        with self.lock:
            if order_id is not None:
                found = self.orders.get(order_id)
                if found is not None and found.account == account and found.symbol == symbol:
                    return found
                raise SandboxRejection(400, -2013, "Order does not exist.")
            # A client id is unique among open orders only: prefer the open one, then the newest.
            matches = [o for o in self.orders.values() if o.account == account and o.symbol == symbol
                       and o.client_order_id == client_order_id]
            if not matches:
                raise SandboxRejection(400, -2013, "Order does not exist.")
            return max(matches, key=lambda o: (o.is_open, o.order_id))

    def cancel_order(self, account: str, symbol: str, order_id: int | None, client_order_id: str | None) -> Order:
        with self.lock:
            try:
                order = self.find_order(account, symbol, order_id, client_order_id)
            except SandboxRejection:
                raise SandboxRejection(400, -2011, "Unknown order sent.") from None
            if not order.is_open:
                raise SandboxRejection(400, -2011, "Unknown order sent.")
            if order.resting:
                self._unlock_for(order, order.orig_qty - order.executed_qty)
                order.resting = False
            order.status = "CANCELED"
            order.update_time_ms = self.now_ms()
            self._emit("order", order=order, execution="CANCELED")
            self._emit("balance", account=account)
            return order

    def open_orders(self, account: str, symbol: str | None) -> list[Order]:
        with self.lock:
            return [o for o in self.orders.values()
                    if o.account == account and o.is_open and (symbol is None or o.symbol == symbol)]

    def orders_of(self, account: str) -> list[Order]:
        """Every order the account ever placed: what an idempotency test counts."""
        with self.lock:
            return [o for o in self.orders.values() if o.account == account]

    # -- wallet -----------------------------------------------------------------------------------------
    def withdraw(self, account: str, coin: str, amount: float, address: str, *, network: str | None = None,
                 address_tag: str | None = None, withdraw_order_id: str | None = None, name: str | None = None,
                 wallet_type: int = 0) -> str:
        """Debit the spot (wallet_type 0) or funding (1) wallet and record the withdrawal. It completes at once: the
        sandbox has no chain to wait for. A `name` files the address in the account's address book, as Binance
        does with the name given to a withdrawal."""
        with self.lock:
            wallet = self.funding if wallet_type == 1 else self.balances
            if wallet[account].get(coin, 0.0) < amount:
                raise SandboxRejection(400, -4026, "User has insufficient balance")
            wallet[account][coin] -= amount
            self._emit("balance", account=account)
            wid = secrets.token_hex(16)
            now_ms = self.now_ms()
            self.withdrawals.append({
                "id": wid, "account": account, "coin": coin, "amount": amount, "address": address,
                "address_tag": address_tag or "", "network": network or coin, "withdraw_order_id": withdraw_order_id,
                "wallet_type": wallet_type, "status": 6, "tx_id": secrets.token_hex(32), "time_ms": now_ms,
                "complete_time_ms": now_ms,
            })
            if name and self._find_address(account, coin, network or coin, address, address_tag or "") is None:
                self._file_address(account, coin, network or coin, address, address_tag or "", name, False)
            return wid

    def withdrawals_of(self, account: str) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(w) for w in self.withdrawals if w["account"] == account]

    # -- address book -----------------------------------------------------------------------------------
    def add_withdraw_address(self, account: str, coin: str, address: str, network: str | None = None,
                             name: str = "", tag: str = "", white_status: bool = False) -> dict[str, Any]:
        """File an address in the account's withdrawal address book, as its owner would in the web UI (the API has
        no way to do it). ValueError if that coin, network, address and tag are filed already."""
        with self.lock:
            self._ensure_account(account)
            if self._find_address(account, coin, network or coin, address, tag) is not None:
                raise ValueError(f"{address!r} ({coin} on {network or coin}) is already in the address book")
            return dict(self._file_address(account, coin, network or coin, address, tag, name, white_status))

    def addresses_of(self, account: str) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(a) for a in self.address_book.get(account, [])]

    def _find_address(self, account: str, coin: str, network: str, address: str, tag: str) -> dict[str, Any] | None:
        wanted = (coin, network, address, tag)
        for entry in self.address_book.get(account, []):
            if (entry["coin"], entry["network"], entry["address"], entry["addressTag"]) == wanted:
                return entry
        return None

    def _file_address(self, account: str, coin: str, network: str, address: str, tag: str, name: str,
                      white_status: bool) -> dict[str, Any]:
        # Binance's row: origin is blank unless originType is "others", which is what a hand-filed address is.
        entry = {"address": address, "addressTag": tag, "coin": coin, "name": name, "network": network,
                 "origin": "", "originType": "others", "whiteStatus": white_status}
        self.address_book.setdefault(account, []).append(entry)
        return entry

    def transfer(self, account: str, kind: str, asset: str, amount: float) -> int:
        with self.lock:
            if kind not in ("MAIN_FUNDING", "FUNDING_MAIN"):
                raise SandboxRejection(400, -1102, "Parameter 'type' must be MAIN_FUNDING or FUNDING_MAIN here.")
            src, dst = ((self.balances, self.funding) if kind == "MAIN_FUNDING" else (self.funding, self.balances))
            if src[account].get(asset, 0.0) < amount:
                raise SandboxRejection(400, -5002, "You have insufficient balance.")
            src[account][asset] -= amount
            dst[account][asset] = dst[account].get(asset, 0.0) + amount
            self._emit("balance", account=account)
            tran_id = len(self.transfers) + 1
            self.transfers.append({"tranId": tran_id, "account": account, "type": kind, "asset": asset,
                                   "amount": amount, "status": "CONFIRMED", "timestamp": self.now_ms()})
            return tran_id

    def transfers_of(self, account: str) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(t) for t in self.transfers if t["account"] == account]
