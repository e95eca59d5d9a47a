"""Run the sandbox in-process: uvicorn on 127.0.0.1, an ephemeral port, a background thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn

from keyguard.errors import ConfigError, ToolError
from keyguard.sandbox.app import create_app
from keyguard.sandbox.config import SandboxConfig
from keyguard.sandbox.faults import install_cut_log_filter
from keyguard.sandbox.state import Fault, KeySpec, SandboxExchange


@dataclass
class SandboxHandle:
    """A running sandbox: its URL, its admin URL and token, and the live state object."""

    url: str
    admin_url: str
    admin_token: str
    exchange: SandboxExchange

    def ccxt_urls(self, exchange_id: str = "binance") -> dict[str, Any]:
        """The `urls` override that points an unmodified ccxt client at this sandbox."""
        return sandbox_urls(self.url, exchange_id)

    def admin(self) -> httpx.Client:
        return httpx.Client(base_url=self.admin_url, headers={"Authorization": f"Bearer {self.admin_token}"})

    def create_key(self, **spec: Any) -> dict[str, Any]:
        """Create a key through the admin API (so the secret crosses HTTP once, like a real exchange). For an
        ED25519 or RSA key pass key_type and the client's PEM public_key: the answer has no secret. A refused spec
        raises ConfigError with the admin API's reason (which names the field)."""
        with self.admin() as client:
            response = client.post("/keys", json=KeySpec(**spec).model_dump(exclude_none=True))
            if response.status_code in (400, 422):
                raise ConfigError(f"the sandbox refused the key spec: {response.json().get('detail')}")
            response.raise_for_status()
            return response.json()

    def add_sub_account(self, master: str, account: str, email: str) -> dict[str, Any]:
        """Make `account` a sub-account of `master` through the admin API (POST /admin/sub-accounts)."""
        with self.admin() as client:
            response = client.post("/sub-accounts", json={"master": master, "account": account, "email": email})
            response.raise_for_status()
            return response.json()

    def add_withdraw_address(self, account: str, coin: str, address: str, **extra: Any) -> dict[str, Any]:
        """File an address in an account's withdrawal address book through the admin API (POST /admin/addresses);
        `extra`: network, name, tag, white_status."""
        with self.admin() as client:
            response = client.post("/addresses", json={"account": account, "coin": coin, "address": address,
                                                       **extra})
            response.raise_for_status()
            return response.json()

    def set_faults(self, *faults: Fault | dict[str, Any]) -> None:
        self.exchange.set_faults([f if isinstance(f, Fault) else Fault(**f) for f in faults])


def sandbox_urls(base_url: str, exchange_id: str = "binance") -> dict[str, Any]:
    """ccxt `urls` for the sandbox: Binance at the root (its WebSocket URLs too, for ccxt.pro); the others under
    /<exchange id>."""
    base = base_url.rstrip("/")
    if exchange_id == "okx":
        return {"api": {"rest": f"{base}/okx"}}
    if exchange_id == "gate":
        return {"api": {"public": {"spot": f"{base}/gate/api/v4"}, "private": {"account": f"{base}/gate/api/v4"}}}
    if exchange_id in ("coinbase", "blofin"):
        return {"api": {"rest": f"{base}/{exchange_id}"}}
    if exchange_id == "bitget":
        return {"api": {name: f"{base}/bitget" for name in ("spot", "common", "user", "mix", "margin")}}
    if exchange_id == "kraken":
        return {"api": {"public": f"{base}/kraken", "private": f"{base}/kraken"}}
    if exchange_id == "kucoin":
        return {"api": {"public": f"{base}/kucoin", "private": f"{base}/kucoin"}}
    if exchange_id == "bybit":
        return {"api": {name: f"{base}/bybit" for name in ("spot", "futures", "v2", "public", "private")}}
    ws = "ws" + base.removeprefix("http")
    return {"api": {
        "public": f"{base}/api/v3", "private": f"{base}/api/v3", "v1": f"{base}/api/v1",
        "sapi": f"{base}/sapi/v1", "sapiV2": f"{base}/sapi/v2", "sapiV3": f"{base}/sapi/v3",
        "sapiV4": f"{base}/sapi/v4", "fapiPublic": f"{base}/fapi/v1", "dapiPublic": f"{base}/dapi/v1",
        # ccxt.pro: market streams at <spot>/<n>, the spot user data stream on the WebSocket API.
        "ws": {"spot": f"{ws}/ws", "margin": f"{ws}/ws", "ws-api": {"spot": f"{ws}/ws-api/v3"}},
    }}


# Optional: a stock client works with the URLs alone (the sandbox answers loadMarkets' futures, margin and currency
# calls with empty or minimal lists); these options skip those calls, as a spot-only user of real Binance would.
BINANCE_SPOT_ONLY_OPTIONS: dict[str, Any] = {
    "fetchMarkets": {"types": ["spot"]},
    "fetchMargins": False,
    "fetchCurrencies": False,
}


@contextmanager
def run_sandbox(config: SandboxConfig | None = None, host: str = "127.0.0.1",
                port: int = 0) -> Iterator[SandboxHandle]:
    """Serve a fresh sandbox until the block exits; port 0 picks a free port."""
    install_cut_log_filter()
    exchange = SandboxExchange(config or SandboxConfig())
    app = create_app(exchange)
    server = uvicorn.Server(uvicorn.Config(
        app, host=host, port=port, log_level="warning", lifespan="off", access_log=False,
        # The client address must be the socket peer: trusting X-Forwarded-For would let a test spoof an IP.
        proxy_headers=False, timeout_graceful_shutdown=2,
    ))
    thread = threading.Thread(target=server.run, name="keyguard-sandbox", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise ToolError(f"the sandbox exchange did not start on {host}:{port}")
        time.sleep(0.01)
    bound_port = server.servers[0].sockets[0].getsockname()[1]
    url = f"http://{host}:{bound_port}"
    try:
        yield SandboxHandle(url=url, admin_url=f"{url}/admin", admin_token=app.state.admin_token, exchange=exchange)
    finally:
        exchange.stopping.set()
        server.should_exit = True
        thread.join(timeout=10)
