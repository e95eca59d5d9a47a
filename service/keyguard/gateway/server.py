"""Run the gateway: uvicorn on loopback (or a Unix socket), in a background thread for tests and the demo."""

from __future__ import annotations

import gc
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import uvicorn

from keyguard.errors import ToolError
from keyguard.gateway.app import Gateway, create_app
from keyguard.gateway.config import GatewayConfig
from keyguard.gateway.rotation import AdminChannel

SWITCH_INTERVAL_S = 0.001


@dataclass
class GatewayHandle:
    url: str
    gateway: Gateway

    def ccxt_urls(self) -> dict[str, object]:
        """The `urls` override that points an unmodified ccxt binance client at the gateway."""
        from keyguard.sandbox.server import sandbox_urls

        return sandbox_urls(self.url)


def uvicorn_server(gateway: Gateway) -> uvicorn.Server:
    listen = gateway.config.listen
    return uvicorn.Server(uvicorn.Config(
        create_app(gateway), host=listen.host, port=listen.port,
        uds=str(listen.unix_socket) if listen.unix_socket else None, log_level="warning", lifespan="off",
        access_log=False, proxy_headers=False, timeout_graceful_shutdown=5,
    ))


@contextmanager
def run_gateway(config: GatewayConfig, *, credentials: tuple[str, str] | None = None) -> Iterator[GatewayHandle]:
    """Start the gateway (clock sync, limits, housekeeping) and serve it until the block exits."""
    gateway = Gateway(config, credentials=credentials)
    try:
        gateway.start()
        # Latency: a request thread waits at most 1 ms (not 5) for the interpreter while housekeeping computes, and
        # what start-up built is left out of the collector's full passes (docs/benchmarks.md, "Gateway").
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        gc.freeze()
        server = uvicorn_server(gateway)
        thread = threading.Thread(target=server.run, name="keyguard-gateway", daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise ToolError(f"the gateway did not start on {config.listen.host}:{config.listen.port}")
            time.sleep(0.01)
        if config.listen.unix_socket:
            url = f"unix:{config.listen.unix_socket}"
        else:
            port = server.servers[0].sockets[0].getsockname()[1]
            url = f"http://{config.listen.host}:{port}"
        gateway.admin_token = AdminChannel(config.state_dir).create(url)
        try:
            yield GatewayHandle(url=url, gateway=gateway)
        finally:
            server.should_exit = True
            thread.join(timeout=10)
    finally:
        gateway.close()
