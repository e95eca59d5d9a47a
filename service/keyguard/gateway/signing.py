"""Binance's own request signing, checked on the gateway's side: a bot signs with its gateway key exactly as it
would sign for the exchange (HMAC-SHA256 over query string + body, X-MBX-APIKEY, timestamp, recvWindow)."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping

from keyguard.gateway.bot_keys import BotKey, BotKeyStore
from keyguard.gateway.desk import BinanceError, mandatory

API_KEY_FORMAT = re.compile(r"^[A-Za-z0-9]{64}$")
REFUSED = "Invalid API-key, IP, or permissions for action."
MAX_RECV_WINDOW_MS = 60000
DEFAULT_RECV_WINDOW_MS = 5000


def without_signature(raw: str) -> tuple[str, str | None]:
    """The signed payload of a query string or body, and the signature it carried (if any)."""
    kept, signature = [], None
    for part in raw.split("&") if raw else []:
        if part.startswith("signature="):
            signature = part[len("signature="):]
        else:
            kept.append(part)
    return "&".join(kept), signature


def _integer(params: Mapping[str, str], name: str) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    if not raw.isdigit():
        raise BinanceError(400, -1100, f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]+$'.")
    return int(raw)


def authenticate(keys: BotKeyStore, headers: Mapping[str, str], query: str, body: str, params: Mapping[str, str],
                 server_ms: int) -> BotKey:
    """Binance's checks in Binance's order: key format, key known, timestamp within recvWindow, signature."""
    api_key = headers.get("x-mbx-apikey")
    if not api_key or not API_KEY_FORMAT.match(api_key):
        raise BinanceError(401, -2014, "API-key format invalid.")
    key = keys.lookup(api_key)
    if key is None:
        raise BinanceError(401, -2015, REFUSED)
    timestamp = _integer(params, "timestamp")
    if timestamp is None:
        raise mandatory("timestamp")
    recv_window = _integer(params, "recvWindow") or DEFAULT_RECV_WINDOW_MS
    if recv_window > MAX_RECV_WINDOW_MS:
        raise BinanceError(400, -1131, f"recvWindow must be less than {MAX_RECV_WINDOW_MS}.")
    if timestamp >= server_ms + 1000:
        raise BinanceError(400, -1021, "Timestamp for this request was 1000ms ahead of the server's time.")
    if server_ms - timestamp > recv_window:
        raise BinanceError(400, -1021, "Timestamp for this request is outside of the recvWindow.")
    q_payload, q_sig = without_signature(query)
    b_payload, b_sig = without_signature(body)
    signature = q_sig or b_sig
    if not signature:
        raise mandatory("signature")
    expected = hmac.new(key.secret.encode(), (q_payload + b_payload).encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature.lower()):
        raise BinanceError(400, -1022, "Signature for this request is not valid.")
    return key
