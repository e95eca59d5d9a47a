"""Run the gateway: its HTTP server on loopback (or a Unix socket), in background threads for tests and the demo."""

from __future__ import annotations

import gc
import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from keyguard.errors import ToolError
from keyguard.gateway.app import Gateway
from keyguard.gateway.config import GatewayConfig
from keyguard.gateway.http_server import GatewayHTTPServer
from keyguard.gateway.lane import BINARY_ENV, BINARY_NAME, FastLane, LaneStats, find_binary
from keyguard.gateway.rotation import AdminChannel

log = logging.getLogger(__name__)

SWITCH_INTERVAL_S = 0.001
MAX_SOCKET_PATH = 100


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
    """Start the gateway (clock sync, limits, housekeeping) and serve it until the block exits: behind the fast lane
    when it is used (listen.lane), else on the configured address itself."""
    gateway = Gateway(config, credentials=credentials)
    servers: list[GatewayHTTPServer] = []
    try:
        gateway.start()
        # Latency: a request thread waits at most 1 ms (not 5) for the interpreter while housekeeping computes, and
        # what start-up built is left out of the collector's full passes (docs/benchmarks.md, "Gateway").
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        gc.freeze()
        listen = config.listen
        binary = None if listen.lane == "off" else find_binary(listen.lane_binary)
        if listen.lane == "on" and binary is None:
            raise ToolError(f"listen.lane is on but the fast lane's binary was not found "
                            f"({listen.lane_binary or f'${BINARY_ENV}, .tools/bin/{BINARY_NAME} or PATH'}); build it "
                            "with scripts/setup.sh or set listen.lane to auto or off")
        if binary is None and listen.lane == "auto":
            gateway.lane_stats = LaneStats(problem=f"no {BINARY_NAME} binary found (scripts/setup.sh builds it): "
                                                   "every order goes through the gateway itself")
        url = _serve_behind_lane(gateway, binary, servers) if binary is not None else None
        if url is None:
            url = _serve_directly(gateway, servers)
        gateway.admin_token = AdminChannel(config.state_dir).create(url)
        try:
            yield GatewayHandle(url=url, gateway=gateway)
        finally:
            if gateway.lane is not None:
                gateway.lane.close()
            for server in reversed(servers):
                server.stop()
    finally:
        gateway.close()


def _server(gateway: Gateway, **where: Any) -> GatewayHTTPServer:
    listen = gateway.config.listen
    return GatewayHTTPServer(gateway.handle, max_connections=listen.max_connections,
                             idle_timeout_s=listen.idle_timeout_s, request_timeout_s=listen.request_timeout_s, **where)


def _serve_directly(gateway: Gateway, servers: list[GatewayHTTPServer], port: int | None = None) -> str:
    """This process's server on the configured address (on `port` when given: the one the lane had)."""
    listen = gateway.config.listen
    server = _server(gateway, host=listen.host, port=listen.port if port is None else port,
                     unix_socket=listen.unix_socket)
    try:
        url = server.start()
    except OSError as exc:
        where = listen.unix_socket or f"{listen.host}:{listen.port}"
        raise ToolError(f"the gateway could not listen on {where}: {exc}") from None
    servers.append(server)
    return url


def _serve_behind_lane(gateway: Gateway, binary: Path, servers: list[GatewayHTTPServer]) -> str | None:
    """This process's server on a Unix socket in the state directory, the lane on the configured address; None when
    the lane does not start and is not required (the gateway then serves the address itself)."""
    config = gateway.config
    inner = config.state_dir.resolve() / "gateway.sock"
    if len(str(inner).encode()) > MAX_SOCKET_PATH:
        # A Unix socket's path has at most 107 bytes: a deep state directory gets a private one of its own.
        inner = Path(tempfile.mkdtemp(prefix="keyguard-gw-")) / "gateway.sock"
    server = _server(gateway, unix_socket=inner)
    try:
        server.start()
    except OSError as exc:
        if config.listen.lane == "on":
            raise ToolError(f"the gateway could not listen on {inner} behind its fast lane: {exc}") from None
        gateway.lane_stats = LaneStats(problem=f"the gateway could not listen on {inner} behind its fast lane: {exc}")
        return None
    os.chmod(inner, 0o600)  # the lane runs as this user; nobody else talks to the gateway behind it
    servers.append(server)
    lane = FastLane(gateway, binary)
    try:
        url = lane.start(inner)
    except OSError as exc:
        if config.listen.lane == "on":
            raise ToolError(f"the fast lane did not start: {exc}") from None
        log.error("gateway: the fast lane did not start (%s); serving every request here", exc)
        lane.stats.problem = f"the fast lane did not start: {exc}"
        gateway.lane_stats = lane.stats
        return None
    gateway.lane = lane
    gateway.lane_stats = lane.stats
    gateway.desk.reclaim = lane.revoke_all

    def take_over() -> None:
        # The lane died while serving: what it sent and never reported is booked from its intent log (settled by
        # look-up), its verdicts end, and this process serves the bots' address.
        gateway.take_over_from_lane()
        try:
            _serve_directly(gateway, servers, port=None if config.listen.unix_socket else urlsplit(url).port)
        except ToolError as exc:
            lane.stats.problem = f"the fast lane stopped and the gateway could not take its address back: {exc}"
            log.error("gateway: %s", lane.stats.problem)

    lane.on_exit = take_over
    return url
