"""Exchange adapters on ccxt: ask the exchange what a key can really do, and report it as a KeyState."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from keyguard.errors import ConfigError
from keyguard.exchanges.base import Credentials, DeclaredIp, ExchangeAdapter, KeyDeclaration
from keyguard.exchanges.binance import BinanceAdapter
from keyguard.exchanges.bitget import BitgetAdapter
from keyguard.exchanges.blofin import BlofinAdapter
from keyguard.exchanges.bybit import BybitAdapter
from keyguard.exchanges.coinbase import CoinbaseAdapter
from keyguard.exchanges.errors import (
    AmbiguousRefusal,
    Banned,
    ClockSkew,
    ExchangeTimeout,
    ExchangeUnavailable,
    InvalidKey,
    IPRefused,
    MalformedResponse,
    PermissionRefused,
    RateLimited,
)
from keyguard.exchanges.gate import GateAdapter
from keyguard.exchanges.keystate import AllowedIp, KeyState, Permissions, ProbeResult, Storage
from keyguard.exchanges.kraken import KrakenAdapter
from keyguard.exchanges.kucoin import KucoinAdapter
from keyguard.exchanges.limiter import RequestLimiter, RetryAfterLimiter
from keyguard.exchanges.okx import OkxAdapter

ADAPTERS: dict[str, type[ExchangeAdapter]] = {
    "binance": BinanceAdapter,
    "okx": OkxAdapter,
    "bybit": BybitAdapter,
    "kucoin": KucoinAdapter,
    "kraken": KrakenAdapter,
    "bitget": BitgetAdapter,
    "coinbase": CoinbaseAdapter,
    "blofin": BlofinAdapter,
    "gate": GateAdapter,
}


def adapter_for(exchange: str, credentials: Credentials, **kwargs: Any) -> ExchangeAdapter:
    try:
        cls = ADAPTERS[exchange.lower()]
    except KeyError:
        raise ConfigError(
            f"exchange {exchange!r} has no key-inspection adapter; supported: {', '.join(sorted(ADAPTERS))}"
        ) from None
    return cls(credentials, **kwargs)


def sandbox_adapter_kwargs(exchange: str, sandbox_url: str) -> Mapping[str, Any]:
    """URLs (and, for Binance, spot-only market loading) that point an adapter at the Keyguard sandbox."""
    from keyguard.sandbox.server import BINANCE_SPOT_ONLY_OPTIONS, sandbox_urls

    kwargs: dict[str, Any] = {"urls": sandbox_urls(sandbox_url, exchange)}
    if exchange == "binance":
        kwargs["options"] = dict(BINANCE_SPOT_ONLY_OPTIONS)
    return kwargs


__all__ = [
    "ADAPTERS",
    "AllowedIp",
    "AmbiguousRefusal",
    "Banned",
    "BinanceAdapter",
    "BitgetAdapter",
    "BlofinAdapter",
    "BybitAdapter",
    "CoinbaseAdapter",
    "ClockSkew",
    "Credentials",
    "DeclaredIp",
    "ExchangeAdapter",
    "ExchangeTimeout",
    "ExchangeUnavailable",
    "GateAdapter",
    "IPRefused",
    "InvalidKey",
    "KeyDeclaration",
    "KeyState",
    "KrakenAdapter",
    "KucoinAdapter",
    "MalformedResponse",
    "OkxAdapter",
    "PermissionRefused",
    "Permissions",
    "ProbeResult",
    "RateLimited",
    "RequestLimiter",
    "RetryAfterLimiter",
    "Storage",
    "adapter_for",
    "sandbox_adapter_kwargs",
]
