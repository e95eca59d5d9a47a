"""Bitget key-introspection face (under /bitget): ACCESS-* headers, base64 HMAC-SHA256 of
timestamp + method + path + body, and the key's `authorities` codes."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from keyguard.sandbox.faces import FaceCall, begin_face_call
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


async def handle_bitget(request: Request) -> Response:
    call = await begin_face_call(request, "/bitget")
    if not isinstance(call, FaceCall):
        return call
    exchange = call.exchange
    route = (request.method, request.url.path)
    if route == ("GET", "/bitget/api/v2/public/time"):
        now_ms = exchange.now_ms()
        response: Response = JSONResponse({"code": "00000", "msg": "success", "requestTime": now_ms,
                                           "data": {"serverTime": str(now_ms)}})
    elif route == ("GET", "/bitget/api/v2/spot/account/info"):
        with exchange.lock:
            key = _authenticate(exchange, request, call.path_and_query, call.body, call.ip)
            response = key if isinstance(key, JSONResponse) else JSONResponse(
                {"code": "00000", "msg": "success", "requestTime": exchange.now_ms(), "data": account_info(key)})
    else:
        return JSONResponse({"code": "40404", "msg": "Request URL NOT FOUND"}, status_code=404)
    return call.answer(response)
