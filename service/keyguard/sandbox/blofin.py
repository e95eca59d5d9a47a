"""BloFin key-introspection face (under /blofin): ACCESS-* headers with a nonce, signature = base64 of the hex
HMAC-SHA256 of path + method + timestamp + nonce + body. query-apikey reports readOnly only."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from keyguard.sandbox.faces import FaceCall, face_endpoint
from keyguard.sandbox.state import SandboxExchange, SandboxKey

BLOFIN_SKEW_MS = 60_000


def _error(code: str, msg: str) -> JSONResponse:
    return JSONResponse({"code": code, "msg": msg, "data": None}, status_code=400)


def _authenticate(exchange: SandboxExchange, request: Request, path: str, body: str,
                  ip: str) -> SandboxKey | JSONResponse:
    h = request.headers
    key = exchange.keys.get(h.get("ACCESS-KEY", ""))
    if key is None or key.revoked or key.exchange != "blofin":
        return _error("152401", "Access key does not exist")
    stamp, nonce = h.get("ACCESS-TIMESTAMP", ""), h.get("ACCESS-NONCE", "")
    if not stamp.isdigit() or abs(exchange.now_ms() - int(stamp)) > BLOFIN_SKEW_MS:
        return _error("152405", "Timestamp in header or signature has expired, need to be within 60s")
    if not hmac.compare_digest(h.get("ACCESS-PASSPHRASE", ""), key.passphrase or ""):
        return _error("152408", "Passphrase error")
    digest = hmac.new(key.secret.encode(), f"{path}{request.method}{stamp}{nonce}{body}".encode(),
                      hashlib.sha256).hexdigest()
    if not hmac.compare_digest(base64.b64encode(digest.encode()).decode(), h.get("ACCESS-SIGN", "")):
        return _error("152409", "Signature verification failed")
    if key.ip_restrict and ip not in key.ips:
        return _error("152406", "Your IP is not included in your API key's IP whitelist")
    return key


def query_apikey(key: SandboxKey) -> dict[str, Any]:
    f = key.flags
    writes = any(f.get(name) for name in ("enableSpotAndMarginTrading", "enableFutures", "enableWithdrawals",
                                          "permitsUniversalTransfer", "enableInternalTransfer"))
    return {"uid": str(abs(hash(key.account)) % 10**10), "apiName": key.label, "apiKey": key.api_key,
            "readOnly": 0 if writes else 1, "ips": list(key.ips) if key.ip_restrict else [], "type": 1,
            "expireTime": str(key.expire_time_ms or 0), "createTime": str(key.create_time_ms),
            "referralCode": "", "parentUid": "0"}


def _query_apikey(call: FaceCall, request: Request) -> Response:
    with call.exchange.lock:
        key = _authenticate(call.exchange, request, call.path_and_query, call.body, call.ip)
        return key if isinstance(key, JSONResponse) else JSONResponse(
            {"code": "0", "msg": "success", "data": query_apikey(key)})


def _not_found(call: FaceCall, request: Request) -> Response:
    return JSONResponse({"code": "404", "msg": "Not Found"}, status_code=404)


handle_blofin = face_endpoint("/blofin", {("GET", "/api/v1/user/query-apikey"): _query_apikey},
                              not_found=_not_found)
