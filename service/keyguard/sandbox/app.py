"""The sandbox ASGI app: Binance at the root (REST, and WebSockets at /ws, /stream and /ws-api/v3),
OKX under /okx, Bybit under /bybit, KuCoin under /kucoin, Kraken under /kraken, Bitget under /bitget,
Coinbase under /coinbase, BloFin under /blofin,
Gate under /gate,
admin under /admin."""

from __future__ import annotations

import secrets

from fastapi import FastAPI

from keyguard.sandbox import admin, binance, binance_ws, bitget, blofin, coinbase, gate, kraken, kucoin, okx_bybit
from keyguard.sandbox.config import SandboxConfig
from keyguard.sandbox.state import SandboxExchange

ALL_METHODS = ["GET", "POST", "PUT", "DELETE"]


def create_app(exchange: SandboxExchange | None = None, admin_token: str | None = None) -> FastAPI:
    exchange = exchange or SandboxExchange(SandboxConfig())
    app = FastAPI(title="Keyguard sandbox exchange", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.exchange = exchange
    app.state.admin_token = admin_token or exchange.config.admin_token or secrets.token_urlsafe(24)
    app.include_router(admin.router)
    for prefix in ("/api/{rest:path}", "/sapi/{rest:path}", "/fapi/{rest:path}", "/dapi/{rest:path}"):
        app.add_route(prefix, binance.handle, methods=ALL_METHODS, include_in_schema=False)
    for path in ("/ws", "/ws/{path:path}", "/stream"):
        app.router.add_websocket_route(path, binance_ws.serve_streams)
    app.router.add_websocket_route("/ws-api/v3", binance_ws.serve_api)
    app.add_route("/okx/{rest:path}", okx_bybit.handle_okx, methods=ALL_METHODS, include_in_schema=False)
    app.add_route("/bybit/{rest:path}", okx_bybit.handle_bybit, methods=ALL_METHODS, include_in_schema=False)
    app.add_route("/kucoin/{rest:path}", kucoin.handle_kucoin, methods=ALL_METHODS, include_in_schema=False)
    app.add_route("/kraken/{rest:path}", kraken.handle_kraken, methods=ALL_METHODS, include_in_schema=False)
    app.add_route("/bitget/{rest:path}", bitget.handle_bitget, methods=ALL_METHODS, include_in_schema=False)
    app.add_route("/coinbase/{rest:path}", coinbase.handle_coinbase, methods=ALL_METHODS, include_in_schema=False)
    app.add_route("/blofin/{rest:path}", blofin.handle_blofin, methods=ALL_METHODS, include_in_schema=False)
    app.add_route("/gate/{rest:path}", gate.handle_gate, methods=ALL_METHODS, include_in_schema=False)
    return app
