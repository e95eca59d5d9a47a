"""Exchange adapters: ask the exchange what a key can really do, and report it as a KeyState. Binance goes through
the one Binance client (keyguard.exchanges.binance_client); the others through ccxt."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from keyguard.errors import ConfigError
from keyguard.exchanges.base import CcxtAdapter, Credentials, DeclaredIp, ExchangeAdapter, KeyDeclaration
from keyguard.exchanges.binance import BinanceAdapter
from keyguard.exchanges.bitget import BitgetAdapter
from keyguard.exchanges.blofin import BlofinAdapter
from keyguard.exchanges.bybit import BybitAdapter
from keyguard.exchanges.coinbase import CoinbaseAdapter
from keyguard.exchanges.errors import (
    AmbiguousRefusal,
    Banned,
    ClockSkew,
    ExchangeRejected,
    ExchangeTimeout,
    ExchangeUnavailable,
    InvalidKey,
    IPRefused,
    MalformedResponse,
    OutcomeUnknown,
    PermissionRefused,
    RateLimited,
    RateLimitRefused,
    binance_error,
)
from keyguard.exchanges.gate import GateAdapter
from keyguard.exchanges.keystate import AllowedIp, KeyState, Permissions, ProbeResult, Storage
from keyguard.exchanges.kraken import KrakenAdapter
from keyguard.exchanges.kucoin import KucoinAdapter
from keyguard.exchanges.okx import OkxAdapter

ADAPTERS: dict[str, type[ExchangeAdapter[Any]]] = {
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


def adapter_for(exchange: str, credentials: Credentials, **kwargs: Any) -> ExchangeAdapter[Any]:
    try:
        cls = ADAPTERS[exchange.lower()]
    except KeyError:
        raise ConfigError(
            f"exchange {exchange!r} has no key-inspection adapter; supported: {', '.join(sorted(ADAPTERS))}"
        ) from None
    return cls(credentials, **kwargs)


def sandbox_adapter_kwargs(exchange: str, sandbox_url: str) -> Mapping[str, Any]:
    """The address (Binance's client) or ccxt URLs (the others) that point an adapter at the Keyguard sandbox."""
    from keyguard.sandbox.server import sandbox_urls

    if exchange == "binance":
        return {"base_url": sandbox_url}
    return {"urls": sandbox_urls(sandbox_url, exchange)}


__all__ = [
    "ADAPTERS",
    "AllowedIp",
    "AmbiguousRefusal",
    "Banned",
    "BinanceAdapter",
    "BitgetAdapter",
    "BlofinAdapter",
    "BybitAdapter",
    "CcxtAdapter",
    "CoinbaseAdapter",
    "ClockSkew",
    "Credentials",
    "DeclaredIp",
    "ExchangeAdapter",
    "ExchangeRejected",
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
    "OutcomeUnknown",
    "PermissionRefused",
    "Permissions",
    "ProbeResult",
    "RateLimitRefused",
    "RateLimited",
    "Storage",
    "adapter_for",
    "binance_error",
    "sandbox_adapter_kwargs",
]
