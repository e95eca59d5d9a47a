"""KuCoin key-introspection face (under /kucoin): KC-API-* headers, base64 HMAC-SHA256 signatures and the
version-2 passphrase (itself HMAC'd with the secret)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from keyguard.sandbox.faces import FaceCall, face_endpoint
from keyguard.sandbox.state import SandboxExchange, SandboxKey

KUCOIN_SKEW_MS = 5000


def _b64_hmac(secret: str, payload: str) -> str:
    return base64.b64encode(hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest()).decode()


def _error(status: int, code: str, msg: str) -> JSONResponse:
    return JSONResponse({"code": code, "msg": msg}, status_code=status)


def kucoin_permission(key: SandboxKey) -> str:
    f = key.flags
    names = ["General"]
    names += [name for flag, name in (("enableSpotAndMarginTrading", "Spot"), ("enableMargin", "Margin"),
                                      ("enableFutures", "Futures"), ("enableInternalTransfer", "InnerTransfer"),
                                      ("permitsUniversalTransfer", "FlexTransfers"),
                                      ("enableWithdrawals", "Withdrawal")) if f.get(flag)]
    return ",".join(names)


def _authenticate(exchange: SandboxExchange, request: Request, endpoint: str, body: str,
                  ip: str) -> SandboxKey | JSONResponse:
    h = request.headers
    key = exchange.keys.get(h.get("KC-API-KEY", ""))
    if key is None or key.revoked or key.exchange != "kucoin":
        return _error(401, "400003", "KC-API-KEY not exists")
    try:
        stamp = int(h.get("KC-API-TIMESTAMP", ""))
    except ValueError:
        return _error(401, "400002", "KC-API-TIMESTAMP Invalid")
    if abs(exchange.now_ms() - stamp) > KUCOIN_SKEW_MS:
        return _error(401, "400002", "KC-API-TIMESTAMP Invalid -- Time differs from server time by more than 5 seconds")
    passphrase = key.passphrase or ""
    expected_pass = _b64_hmac(key.secret, passphrase) if h.get("KC-API-KEY-VERSION") == "2" else passphrase
    if not hmac.compare_digest(h.get("KC-API-PASSPHRASE", ""), expected_pass):
        return _error(401, "400004", "Invalid KC-API-PASSPHRASE")
    expected = _b64_hmac(key.secret, f"{stamp}{request.method}{endpoint}{body}")
    if not hmac.compare_digest(h.get("KC-API-SIGN", ""), expected):
        return _error(401, "400005", "Signature error")
    if key.ip_restrict and ip not in key.ips:
        return _error(401, "400006", f"Invalid request ip, the current clientIp is:{ip}")
    return key


def api_key_body(key: SandboxKey) -> dict[str, Any]:
    return {"remark": key.label, "apiKey": key.api_key, "apiVersion": 3, "permission": kucoin_permission(key),
            "ipWhitelist": ",".join(key.ips) if key.ip_restrict else "", "createdAt": key.create_time_ms,
            "uid": abs(hash(key.account)) % 10**9, "isMaster": True}


def _timestamp(call: FaceCall, request: Request) -> Response:
    return JSONResponse({"code": "200000", "data": call.exchange.now_ms()})


def _api_key(call: FaceCall, request: Request) -> Response:
    with call.exchange.lock:
        key = _authenticate(call.exchange, request, call.path_and_query, call.body, call.ip)
        return key if isinstance(key, JSONResponse) else JSONResponse({"code": "200000", "data": api_key_body(key)})


def _not_found(call: FaceCall, request: Request) -> Response:
    return _error(404, "404000", f"The sandbox does not implement {request.method} {request.url.path}.")


handle_kucoin = face_endpoint("/kucoin", {
    ("GET", "/api/v1/timestamp"): _timestamp,
    ("GET", "/api/v1/user/api-key"): _api_key,
}, not_found=_not_found)
