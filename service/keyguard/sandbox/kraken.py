"""Kraken key-introspection face (under /kraken): API-Key/API-Sign headers, HMAC-SHA512 over the URI path and
SHA-256(nonce + body) with the base64-decoded secret, strictly increasing nonces, errors in an `error` array."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from keyguard.sandbox.faces import FaceCall, face_endpoint
from keyguard.sandbox.state import SandboxExchange, SandboxKey


def _error(message: str) -> JSONResponse:
    # Kraken answers errors with HTTP 200 and a non-empty `error` list.
    return JSONResponse({"error": [message], "result": {}})


def kraken_permissions(key: SandboxKey) -> list[str]:
    f = key.flags
    perms: list[str] = []
    if f.get("enableReading"):
        perms += ["query-funds", "query-open-trades", "query-closed-trades", "query-ledger-entries"]
    if f.get("enableSpotAndMarginTrading"):
        perms += ["modify-trades", "cancel-close-orders"]
    if f.get("enableWithdrawals"):
        perms.append("withdraw-funds")
    return perms


def _authenticate(exchange: SandboxExchange, request: Request, path: str, body: str,
                  ip: str) -> SandboxKey | JSONResponse:
    key = exchange.keys.get(request.headers.get("API-Key", ""))
    if key is None or key.revoked or key.exchange != "kraken":
        return _error("EAPI:Invalid key")
    nonce = dict(parse_qsl(body)).get("nonce", "")
    if not nonce.isdigit():
        return _error("EAPI:Invalid nonce")
    digest = hashlib.sha256((nonce + body).encode()).digest()
    expected = base64.b64encode(
        hmac.new(base64.b64decode(key.secret), path.encode() + digest, hashlib.sha512).digest()).decode()
    if not hmac.compare_digest(expected, request.headers.get("API-Sign", "")):
        return _error("EAPI:Invalid signature")
    if key.ip_restrict and ip not in key.ips:
        return _error("EGeneral:Permission denied")
    if int(nonce) <= exchange.kraken_nonces.get(key.api_key, 0):
        return _error("EAPI:Invalid nonce")
    exchange.kraken_nonces[key.api_key] = int(nonce)
    return key


def api_key_info(key: SandboxKey, now_s: int) -> dict[str, Any]:
    return {
        "apiKeyName": key.label or "sandbox-key", "apiKey": key.api_key,
        "nonce": str(now_s * 1000), "nonceWindow": 0, "permissions": kraken_permissions(key),
        "iban": "AA00 SAND BOX0 0000", "validUntil": str((key.expire_time_ms or 0) // 1000),
        "queryFrom": "0", "queryTo": "0", "createdTime": str(key.create_time_ms // 1000),
        "modifiedTime": str(key.create_time_ms // 1000),
        "ipAllowlist": list(key.ips) if key.ip_restrict else [], "lastUsed": str(now_s),
    }


def _time(call: FaceCall, request: Request) -> Response:
    now_s = int(call.exchange.now())
    stamp = datetime.fromtimestamp(now_s, UTC).strftime("%a, %d %b %y %H:%M:%S +0000")
    return JSONResponse({"error": [], "result": {"unixtime": now_s, "rfc1123": stamp}})


def _get_api_key_info(call: FaceCall, request: Request) -> Response:
    now_s = int(call.exchange.now())
    with call.exchange.lock:
        key = _authenticate(call.exchange, request, call.path, call.body, call.ip)
        return key if isinstance(key, JSONResponse) else JSONResponse(
            {"error": [], "result": api_key_info(key, now_s)})


def _not_found(call: FaceCall, request: Request) -> Response:
    return JSONResponse({"error": ["EGeneral:Unknown method"], "result": {}}, status_code=404)


handle_kraken = face_endpoint("/kraken", {
    ("GET", "/0/public/Time"): _time,
    ("POST", "/0/private/GetApiKeyInfo"): _get_api_key_info,
}, not_found=_not_found)
