"""Coinbase Advanced key-introspection face (under /coinbase): CDP keys sign each request with an ES256 JWT
(kid = key name, sub = key name, short-lived, `uri` = method and path); key_permissions reports can_view,
can_trade, can_transfer. A refusal is a bare 401, whatever the reason."""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from keyguard.sandbox.faces import FaceCall, face_endpoint
from keyguard.sandbox.state import SandboxExchange, SandboxKey


def new_cdp_key() -> tuple[str, str]:
    """(key name, PEM EC P-256 private key), the shape of a Coinbase CDP API key."""
    private = ec.generate_private_key(ec.SECP256R1())
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption()).decode()
    return f"organizations/{uuid.uuid4()}/apiKeys/{uuid.uuid4()}", pem


def _b64url(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _unauthorized() -> Response:
    return PlainTextResponse("Unauthorized\n", status_code=401)


def _authenticate(exchange: SandboxExchange, request: Request, ip: str) -> SandboxKey | Response:
    auth = request.headers.get("Authorization", "")
    if not auth.startswith("Bearer "):
        return _unauthorized()
    try:
        header_b64, claims_b64, signature_b64 = auth[len("Bearer "):].split(".")
        header = json.loads(_b64url(header_b64))
        claims = json.loads(_b64url(claims_b64))
        raw = _b64url(signature_b64)
    except (ValueError, json.JSONDecodeError):
        return _unauthorized()
    key = exchange.keys.get(str(header.get("kid", "")))
    if key is None or key.revoked or key.exchange != "coinbase" or header.get("alg") != "ES256":
        return _unauthorized()
    public = serialization.load_pem_private_key(key.secret.encode(), password=None).public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    signature = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    try:
        public.verify(signature, f"{header_b64}.{claims_b64}".encode(), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return _unauthorized()
    now = exchange.now()
    expected_uri_suffix = request.url.path.removeprefix("/coinbase")
    uri = str(claims.get("uri", "")).split("?")[0]
    if (claims.get("sub") != key.api_key or not (float(claims.get("nbf", 0)) - 5 <= now <= float(claims.get("exp", 0)))
            or not uri.startswith(request.method + " ") or not uri.endswith(expected_uri_suffix)):
        return _unauthorized()
    if key.ip_restrict and ip not in key.ips:
        return _unauthorized()
    return key


def key_permissions(key: SandboxKey) -> dict[str, Any]:
    f = key.flags
    return {"can_view": bool(f.get("enableReading")), "can_trade": bool(f.get("enableSpotAndMarginTrading")),
            "can_transfer": bool(f.get("enableWithdrawals") or f.get("permitsUniversalTransfer")),
            "portfolio_uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, key.account)), "portfolio_type": "DEFAULT"}


def _time(call: FaceCall, request: Request) -> Response:
    now = call.exchange.now()
    return JSONResponse({"iso": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
                         "epochSeconds": str(int(now)), "epochMillis": str(int(now * 1000))})


def _key_permissions(call: FaceCall, request: Request) -> Response:
    with call.exchange.lock:
        key = _authenticate(call.exchange, request, call.ip)
        return key if isinstance(key, Response) else JSONResponse(key_permissions(key))


def _not_found(call: FaceCall, request: Request) -> Response:
    return JSONResponse({"error": "NOT_FOUND", "message": "Not Found"}, status_code=404)


handle_coinbase = face_endpoint("/coinbase", {
    ("GET", "/api/v3/brokerage/time"): _time,
    ("GET", "/api/v3/brokerage/key_permissions"): _key_permissions,
}, not_found=_not_found)
