"""Sandbox settings: real Binance limits by default, every window and limit shrinkable so tests run in seconds."""

from __future__ import annotations

from pydantic import BaseModel, Field


class SymbolSpec(BaseModel):
    """A spot market the sandbox lists, with its starting price and a simple book around it."""

    symbol: str
    base: str
    quote: str
    price: float
    # Each side has `book_levels` levels, `book_step` apart (fraction of price), `level_qty` base units each.
    book_levels: int = 5
    book_step: float = 0.0005
    level_qty: float = 1.0
    # The filters exchangeInfo advertises and new orders must pass (PRICE_FILTER, LOT_SIZE, NOTIONAL); the
    # minimum price and quantity are one tick and one step.
    tick_size: str = "0.01"
    max_price: str = "1000000.00000000"
    step_size: str = "0.00001"
    max_qty: str = "9000.00000000"
    min_notional: str = "5.00"
    max_notional: str = "9000000.00000000"


def _default_symbols() -> list[SymbolSpec]:
    return [
        SymbolSpec(symbol="BTCUSDT", base="BTC", quote="USDT", price=60000.0, level_qty=0.5),
        SymbolSpec(symbol="ETHUSDT", base="ETH", quote="USDT", price=3000.0, level_qty=5.0),
    ]


class SandboxConfig(BaseModel):
    """Limits and clocks of the emulated exchange. Defaults are Binance spot's published values."""

    # REQUEST_WEIGHT per IP per window (Binance: 6000 per 1 minute).
    weight_limit: int = 6000
    weight_window_s: int = 60
    # RAW_REQUESTS per IP per window (Binance: 61000 per 5 minutes).
    raw_request_limit: int = 61000
    raw_request_window_s: int = 300
    # SAPI endpoints marked "Weight(IP)" are counted per IP, each endpoint in a pool of its own (Binance: "Each
    # endpoint with IP limits has an independent 12000 per minute limit"), and answer with X-SAPI-USED-IP-WEIGHT-1M.
    # Over it is a 429 and never a ban: SAPI requests neither earn nor extend the /api 418 ladder.
    sapi_weight_limit: int = 12000
    sapi_weight_window_s: int = 60
    # SAPI endpoints marked "Weight(UID)" are counted per account instead, each endpoint in a pool of its own
    # (Binance: 180000 per minute), and answer with X-SAPI-USED-UID-WEIGHT-1M.
    sapi_uid_weight_limit: int = 180000
    sapi_uid_weight_window_s: int = 60
    # ORDERS per account (Binance: 100 per 10 s, 200000 per day): the unfilled order count.
    orders_short_limit: int = 100
    orders_short_window_s: int = 10
    orders_long_limit: int = 200000
    orders_long_window_s: int = 86400
    # What an order's first fill takes off every interval's count: one as taker; Binance gives an order that first
    # fills as maker more ("may be decremented by more than one"; its FAQ example: 5) without saying how much.
    order_count_taker_credit: int = 1
    order_count_maker_credit: int = 1
    # 418 ban for requests sent during a 429 back-off: doubles per repeat, from base up to max (2 min .. 3 days).
    ban_base_s: float = 120.0
    ban_max_s: float = 259200.0
    # Binance bans for "repeatedly violating rate limits and/or failing to back off": the Nth request sent during
    # one back-off (after the grace below) is banned; the ones before it are refused with 429 again.
    ban_after_violations: int = 3
    # Requests arriving this soon after a 429 were already in flight (concurrent clients): refused, not banned.
    # Binance bans for repeated violations and for failing to back off, not for in-flight requests.
    ban_grace_s: float = 0.5
    # Binance resets windows at clock boundaries; aligning them to the sandbox's start instead means a test
    # that runs for a few seconds never sees a window roll over halfway through.
    align_windows_to_start: bool = False
    default_recv_window_ms: int = 5000
    max_recv_window_ms: int = 60000
    # Sandbox clock minus the host clock; adjustable at run time through the admin API.
    clock_skew_ms: int = 0
    # How long a "drop" fault holds the connection before cutting it (clients time out first).
    drop_hold_s: float = 30.0
    symbols: list[SymbolSpec] = Field(default_factory=_default_symbols)
    # Commission rates of every account (Binance's regular tier: 0.1% maker, 0.1% taker, no buyer/seller extra),
    # charged on each fill in the asset received (a buy pays in base, a sell in quote): Binance's way for an
    # account that does not pay in BNB. An order that executes on arrival is the taker; one that rested in the
    # book and is filled later is the maker.
    maker_commission: float = Field(default=0.001, ge=0, lt=1)
    taker_commission: float = Field(default=0.001, ge=0, lt=1)
    # Starting balances of every new account (asset -> free amount).
    starting_balances: dict[str, float] = Field(default_factory=lambda: {"USDT": 100000.0, "BTC": 1.0, "ETH": 10.0})
    # Bearer token of the admin API; None = generate one at start-up.
    admin_token: str | None = None


def interval_of(seconds: int) -> tuple[str, int, str]:
    """Binance's (interval, intervalNum, header suffix) for a window length: 60 -> (MINUTE, 1, '1M')."""
    for unit_s, name, letter in ((86400, "DAY", "D"), (3600, "HOUR", "H"), (60, "MINUTE", "M")):
        if seconds % unit_s == 0:
            return name, seconds // unit_s, f"{seconds // unit_s}{letter}"
    return "SECOND", seconds, f"{seconds}S"
