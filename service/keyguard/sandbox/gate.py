"""Gate key-introspection face (under /gate): KEY/Timestamp/SIGN headers, SIGN = hex HMAC-SHA512 of
METHOD, path, query, SHA-512(body) and timestamp joined by newlines. Gate has no call for "this key": a key
lists every key of its main account (GET /account/main_keys), each masked, and the caller finds itself."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from keyguard.sandbox.faces import FaceCall, face_endpoint
from keyguard.sandbox.state import SandboxExchange, SandboxKey

GATE_SKEW_S = 60


def _error(label: str, message: str, status: int = 401) -> JSONResponse:
    return JSONResponse({"label": label, "message": message}, status_code=status)


def masked(api_key: str) -> str:
    return f"{api_key[:4]}{'*' * (len(api_key) - 8)}{api_key[-4:]}"


def gate_perms(key: SandboxKey) -> list[dict[str, Any]]:
    f = key.flags
    trade = bool(f.get("enableSpotAndMarginTrading"))
    return [
        {"name": "spot", "read_only": not trade},
        {"name": "margin", "read_only": not f.get("enableMargin")},
        {"name": "futures", "read_only": not f.get("enableFutures")},
        {"name": "wallet", "read_only": not (f.get("permitsUniversalTransfer") or f.get("enableInternalTransfer"))},
        {"name": "withdraw", "read_only": not f.get("enableWithdrawals")},
    ]


def _authenticate(exchange: SandboxExchange, request: Request, path: str, query: str, body: str,
                  ip: str) -> SandboxKey | JSONResponse:
    h = request.headers
    key = exchange.keys.get(h.get("KEY", ""))
    if key is None or key.revoked or key.exchange != "gate":
        return _error("INVALID_KEY", "Invalid key provided")
    stamp = h.get("Timestamp", "")
    if not stamp.isdigit() or abs(exchange.now() - int(stamp)) > GATE_SKEW_S:
        return _error("REQUEST_EXPIRED", "Request timestamp expired")
    payload = "\n".join([request.method, path, query, hashlib.sha512(body.encode()).hexdigest(), stamp])
    expected = hmac.new(key.secret.encode(), payload.encode(), hashlib.sha512).hexdigest()
    if not hmac.compare_digest(expected, h.get("SIGN", "")):
        return _error("INVALID_SIGNATURE", "Signature mismatch")
    if key.ip_restrict and ip not in key.ips:
        return _error("IP_FORBIDDEN", f"Request IP {ip} not in whitelist", status=403)
    return key


def main_keys(exchange: SandboxExchange, caller: SandboxKey) -> list[dict[str, Any]]:
    keys = [k for k in exchange.keys.values() if k.exchange == "gate" and k.account == caller.account]
    return [{"mode": 1, "name": k.label, "perms": gate_perms(k), "ip_whitelist": list(k.ips) if k.ip_restrict else [],
             "key": masked(k.api_key), "state": 3 if k.revoked else 1, "created_at": k.create_time_ms // 1000,
             "updated_at": k.create_time_ms // 1000, "last_access": int(exchange.now())} for k in keys]


def _server_time(call: FaceCall, request: Request) -> Response:
    return JSONResponse({"server_time": call.exchange.now_ms()})


def _main_keys(call: FaceCall, request: Request) -> Response:
    with call.exchange.lock:
        key = _authenticate(call.exchange, request, call.path, call.query, call.body, call.ip)
        return key if isinstance(key, JSONResponse) else JSONResponse(main_keys(call.exchange, key))


def _not_found(call: FaceCall, request: Request) -> Response:
    return _error("NOT_FOUND", "Not found", status=404)


handle_gate = face_endpoint("/gate", {
    ("GET", "/api/v4/spot/time"): _server_time,
    ("GET", "/api/v4/account/main_keys"): _main_keys,
}, not_found=_not_found)
