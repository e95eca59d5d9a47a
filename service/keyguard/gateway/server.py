"""Run the gateway: its HTTP server on loopback (or a Unix socket), in background threads for tests and the demo."""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from keyguard.errors import ToolError
from keyguard.gateway.app import Gateway
from keyguard.gateway.config import GatewayConfig
from keyguard.gateway.http_server import GatewayHTTPServer
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
        listen = config.listen
        server = GatewayHTTPServer(gateway.handle, host=listen.host, port=listen.port,
                                   unix_socket=listen.unix_socket, max_connections=listen.max_connections,
                                   idle_timeout_s=listen.idle_timeout_s, request_timeout_s=listen.request_timeout_s)
        try:
            url = server.start()
        except OSError as exc:
            where = listen.unix_socket or f"{listen.host}:{listen.port}"
            raise ToolError(f"the gateway could not listen on {where}: {exc}") from None
        gateway.admin_token = AdminChannel(config.state_dir).create(url)
        try:
            yield GatewayHandle(url=url, gateway=gateway)
        finally:
            server.stop()
    finally:
        gateway.close()
