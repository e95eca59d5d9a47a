"""Bitget key-introspection face (under /bitget): ACCESS-* headers, base64 HMAC-SHA256 of
timestamp + method + path + body, and the key's `authorities` codes."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from keyguard.sandbox.faces import FaceCall, face_endpoint
from keyguard.sandbox.state import SandboxExchange, SandboxKey

BITGET_SKEW_MS = 30_000


def _error(exchange: SandboxExchange, code: str, msg: str) -> JSONResponse:
    return JSONResponse({"code": code, "msg": msg, "requestTime": exchange.now_ms(), "data": None}, status_code=400)


def bitget_authorities(key: SandboxKey) -> list[str]:
    f = key.flags
    codes = ["stor", "coor", "wtor"] if f.get("enableReading") else []
    if f.get("enableSpotAndMarginTrading"):
        codes += ["stow", "smow"]
    if f.get("enableFutures"):
        codes += ["coow", "cpow"]
    if f.get("permitsUniversalTransfer") or f.get("enableInternalTransfer"):
        codes.append("wtow")
    if f.get("enableWithdrawals"):
        codes.append("wwow")
    return codes


def _authenticate(exchange: SandboxExchange, request: Request, path: str, body: str,
                  ip: str) -> SandboxKey | JSONResponse:
    h = request.headers
    key = exchange.keys.get(h.get("ACCESS-KEY", ""))
    if key is None or key.revoked or key.exchange != "bitget":
        return _error(exchange, "40037", "Apikey does not exist")
    if not hmac.compare_digest(h.get("ACCESS-PASSPHRASE", ""), key.passphrase or ""):
        return _error(exchange, "40012", "apikey/password is incorrect")
    stamp = h.get("ACCESS-TIMESTAMP", "")
    if not stamp.isdigit() or abs(exchange.now_ms() - int(stamp)) > BITGET_SKEW_MS:
        return _error(exchange, "40008", "Request timestamp expired")
    payload = f"{stamp}{request.method}{path}{body}"
    expected = base64.b64encode(hmac.new(key.secret.encode(), payload.encode(), hashlib.sha256).digest()).decode()
    if not hmac.compare_digest(expected, h.get("ACCESS-SIGN", "")):
        return _error(exchange, "40009", "sign signature error")
    if key.ip_restrict and ip not in key.ips:
        return _error(exchange, "40018", "Invalid IP")
    return key


def account_info(key: SandboxKey) -> dict[str, Any]:
    return {"userId": str(abs(hash(key.account)) % 10**10), "inviterId": "0",
            "ips": ",".join(key.ips) if key.ip_restrict else "", "authorities": bitget_authorities(key),
            "parentId": 0, "traderType": "", "channelCode": "", "channel": "",
            "regisTime": str(key.create_time_ms)}


def _server_time(call: FaceCall, request: Request) -> Response:
    now_ms = call.exchange.now_ms()
    return JSONResponse({"code": "00000", "msg": "success", "requestTime": now_ms,
                         "data": {"serverTime": str(now_ms)}})


def _account_info(call: FaceCall, request: Request) -> Response:
    exchange = call.exchange
    with exchange.lock:
        key = _authenticate(exchange, request, call.path_and_query, call.body, call.ip)
        return key if isinstance(key, JSONResponse) else JSONResponse(
            {"code": "00000", "msg": "success", "requestTime": exchange.now_ms(), "data": account_info(key)})


def _not_found(call: FaceCall, request: Request) -> Response:
    return JSONResponse({"code": "40404", "msg": "Request URL NOT FOUND"}, status_code=404)


handle_bitget = face_endpoint("/bitget", {
    ("GET", "/api/v2/public/time"): _server_time,
    ("GET", "/api/v2/spot/account/info"): _account_info,
}, not_found=_not_found)
