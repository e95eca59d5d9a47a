"""A sandbox exchange, a gateway in front of it holding the exchange key, and unmodified clients (ccxt,
python-binance) that hold only gateway keys and know only the gateway's URL."""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import ccxt
import httpx
import pytest

from keyguard.exchanges.transport import bound_session
from keyguard.gateway.bot_keys import BotKey, BotKeyStore
from keyguard.gateway.config import GatewayConfig
from keyguard.gateway.server import GatewayHandle, run_gateway
from keyguard.sandbox import SandboxHandle
from tests.sandbox import fixtures

sandbox_config = fixtures.sandbox_config
sandbox = fixtures.sandbox

TRADER_FLAGS = {"enableReading": True, "enableSpotAndMarginTrading": True}
# A prefix no real value starts with: a test finds the exchange secret in anything a bot sees by searching for it.
CANARY = "KGCANARY"


@pytest.fixture
def exchange_key(sandbox: SandboxHandle) -> dict[str, Any]:
    return sandbox.create_key(label="gateway", flags=TRADER_FLAGS, ip_restrict=True, ips=["127.0.0.1"])


def gateway_config(sandbox: SandboxHandle, exchange_key: dict[str, Any], tmp: Path, **overrides: Any) -> GatewayConfig:
    """Settings as a user writes them: the exchange key in a 0600 credentials file, loopback, one state dir."""
    creds = tmp / "exchange-key.json"
    if not creds.exists():
        creds.write_text(f'{{"api_key": "{exchange_key["api_key"]}", "secret": "{exchange_key["secret"]}"}}')
        os.chmod(creds, 0o600)
    raw: dict[str, Any] = {
        "gateway": "gw-test", "listen": {"port": 0}, "state_dir": str(tmp / "gateway"),
        "exchange": {"base_url": sandbox.url, "credentials_file": str(creds), "timeout_s": 2.0},
        "limiter": {"backend": "memory", "deadline_s": 2.0},
        "account": {"max_order_notional": 5000, "max_order_share_of_portfolio": None, "max_orders_per_minute": 120,
                    "max_position": {"BTC": 0.5, "ETH": 5}, "daily_loss_limit": 2000},
        "housekeeping_interval_s": 0.5,
    }
    for key, value in overrides.items():
        raw[key] = value
    return GatewayConfig.model_validate(raw)


GatewayFactory = Callable[..., GatewayHandle]


@pytest.fixture
def start_gateway(sandbox: SandboxHandle, exchange_key: dict[str, Any], tmp_path: Path) -> Iterator[GatewayFactory]:
    """Start a gateway with setting overrides; stopped at the end of the test."""
    from contextlib import ExitStack

    with ExitStack() as stack:
        def start(**overrides: Any) -> GatewayHandle:
            config = gateway_config(sandbox, exchange_key, tmp_path, **overrides)
            return stack.enter_context(run_gateway(config))

        yield start


@pytest.fixture
def gateway(start_gateway: GatewayFactory) -> GatewayHandle:
    return start_gateway(bots={"alpha": {"max_order_notional": 2000}, "beta": {}})


def bot_key(handle: GatewayHandle, bot: str) -> BotKey:
    return BotKeyStore(handle.gateway.config.keys_path).create(bot)


def ccxt_bot(handle: GatewayHandle, key: BotKey, source_ip: str = "127.0.0.1") -> ccxt.binance:
    """A stock ccxt binance client: only its URLs and credentials point at the gateway."""
    return ccxt.binance({"apiKey": key.api_key, "secret": key.secret, "urls": handle.ccxt_urls(),
                         "session": bound_session(source_ip), "timeout": 15000})


def signed_call(handle: GatewayHandle, key: BotKey, method: str, path: str,
                params: dict[str, Any] | None = None) -> httpx.Response:
    """One request signed the Binance way with a bot's gateway key (for endpoints a client library lacks)."""
    query = urlencode({**(params or {}), "timestamp": int(time.time() * 1000)})
    signature = hmac.new(key.secret.encode(), query.encode(), hashlib.sha256).hexdigest()
    return httpx.request(method, f"{handle.url}{path}?{query}&signature={signature}",
                         headers={"X-MBX-APIKEY": key.api_key}, timeout=15)
