"""Binance-compatible exchange emulator with fault injection, plus OKX and Bybit key-introspection endpoints."""

from keyguard.sandbox.config import SandboxConfig, SymbolSpec
from keyguard.sandbox.server import BINANCE_SPOT_ONLY_OPTIONS, SandboxHandle, run_sandbox, sandbox_urls
from keyguard.sandbox.state import Fault, KeySpec, SandboxExchange

__all__ = [
    "BINANCE_SPOT_ONLY_OPTIONS", "Fault", "KeySpec", "SandboxConfig", "SandboxExchange", "SandboxHandle",
    "SymbolSpec", "run_sandbox", "sandbox_urls",
]
