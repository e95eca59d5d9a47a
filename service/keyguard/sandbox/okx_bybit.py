"""OKX and Bybit key-introspection faces of the sandbox, each with its own signing scheme and error codes.

OKX lives under /okx (point ccxt's urls.api.rest at <sandbox>/okx); Bybit under /bybit (urls.api.* at <sandbox>/bybit).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from keyguard.sandbox.faces import FaceCall, face_endpoint
from keyguard.sandbox.state import SandboxExchange, SandboxKey

OKX_SKEW_S = 30.0


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _okx_error(status: int, code: str, msg: str) -> JSONResponse:
    return JSONResponse({"code": code, "msg": msg, "data": []}, status_code=status)


def _okx_authenticate(exchange: SandboxExchange, request: Request, signed_path: str, body: str,
                      ip: str) -> SandboxKey | JSONResponse:
    h = request.headers
    api_key = h.get("OK-ACCESS-KEY")
    if not api_key:
        return _okx_error(401, "50103", 'Request header "OK-ACCESS-KEY" cannot be empty.')
    key = exchange.keys.get(api_key)
    if key is None or key.revoked or key.exchange != "okx":
        return _okx_error(401, "50111", "Invalid OK-ACCESS-KEY.")
    if not hmac.compare_digest(h.get("OK-ACCESS-PASSPHRASE", ""), key.passphrase or ""):
        return _okx_error(401, "50105", "Invalid OK-ACCESS-PASSPHRASE.")
    stamp = h.get("OK-ACCESS-TIMESTAMP", "")
    try:
        sent = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return _okx_error(401, "50112", "Invalid OK-ACCESS-TIMESTAMP.")
    if abs(exchange.now() - sent) > OKX_SKEW_S:
        return _okx_error(401, "50102", "Timestamp request expired.")
    payload = stamp + request.method + signed_path + body
    expected = base64.b64encode(hmac.new(key.secret.encode(), payload.encode(), hashlib.sha256).digest()).decode()
    if not hmac.compare_digest(expected, h.get("OK-ACCESS-SIGN", "")):
        return _okx_error(401, "50113", "Invalid Sign.")
    if key.ip_restrict and ip not in key.ips:
        return _okx_error(401, "50110", f"Your IP {ip} is not included in your API key's IP whitelist.")
    return key


def okx_config_body(key: SandboxKey) -> dict[str, Any]:
    perms = ["read_only"]
    if key.flags.get("enableSpotAndMarginTrading"):
        perms.append("trade")
    if key.flags.get("enableWithdrawals"):
        perms.append("withdraw")
    uid = str(abs(hash(key.account)) % 10**12)
    return {"acctLv": "1", "autoLoan": False, "ctIsoMode": "automatic", "greeksType": "PA", "level": "Lv1",
            "levelTmp": "", "mgnIsoMode": "automatic", "posMode": "net_mode", "uid": uid, "mainUid": uid,
            "label": key.label, "roleType": "0", "traderInsts": [], "spotRoleType": "0", "opAuth": "0",
            "kycLv": "2", "ip": ",".join(key.ips) if key.ip_restrict else "", "perm": ",".join(perms),
            "liquidationGear": "-1", "enableSpotBorrow": False, "spotBorrowAutoRepay": False, "type": "0"}


def _okx_time(call: FaceCall, request: Request) -> Response:
    return JSONResponse({"code": "0", "msg": "", "data": [{"ts": str(call.exchange.now_ms())}]})


def _okx_account_config(call: FaceCall, request: Request) -> Response:
    with call.exchange.lock:
        key = _okx_authenticate(call.exchange, request, call.path_and_query, call.body, call.ip)
        if isinstance(key, JSONResponse):
            return key
        return JSONResponse({"code": "0", "msg": "", "data": [okx_config_body(key)]})


def _okx_not_found(call: FaceCall, request: Request) -> Response:
    return _okx_error(404, "50000", f"The sandbox does not implement {request.method} {request.url.path}.")


handle_okx = face_endpoint("/okx", {
    ("GET", "/api/v5/public/time"): _okx_time,
    ("GET", "/api/v5/account/config"): _okx_account_config,
}, not_found=_okx_not_found)


def _bybit_error(code: int, msg: str, now_ms: int) -> JSONResponse:
    return JSONResponse({"retCode": code, "retMsg": msg, "result": {}, "retExtInfo": {}, "time": now_ms})


def bybit_key_body(key: SandboxKey) -> dict[str, Any]:
    f = key.flags
    wallet = [name for flag, name in (("permitsUniversalTransfer", "AccountTransfer"),
                                      ("enableInternalTransfer", "SubMemberTransfer"),
                                      ("enableWithdrawals", "Withdraw")) if f.get(flag)]
    trade = bool(f.get("enableSpotAndMarginTrading"))
    permissions = {
        "ContractTrade": ["Order", "Position"] if f.get("enableFutures") else [],
        "Spot": ["SpotTrade"] if trade else [], "Wallet": wallet,
        "Options": ["OptionsTrade"] if f.get("enableVanillaOptions") else [],
        "Derivatives": [], "CopyTrading": [], "BlockTrade": [], "Exchange": [], "NFT": [], "Affiliate": [],
    }
    read_only = not (trade or wallet or f.get("enableFutures") or f.get("enableVanillaOptions"))
    return {
        "id": str(abs(hash(key.api_key)) % 10**8), "note": key.label, "apiKey": key.api_key,
        "readOnly": 1 if read_only else 0, "secret": "", "permissions": permissions,
        "ips": list(key.ips) if key.ip_restrict else ["*"], "type": 1,
        "deadlineDay": -1 if key.ip_restrict else 90,
        "expiredAt": _iso(key.expire_time_ms) if key.expire_time_ms and not key.ip_restrict else "",
        "createdAt": _iso(key.create_time_ms), "unified": 0, "uta": 1,
        "userID": abs(hash(key.account)) % 10**8, "inviterID": 0, "vipLevel": "No VIP", "mktMakerLevel": "0",
        "affiliateID": 0, "rsaPublicKey": "", "isMaster": True, "parentUid": "0", "kycLevel": "LEVEL_DEFAULT",
        "kycRegion": "",
    }


def _bybit_time(call: FaceCall, request: Request) -> Response:
    now_ms = call.exchange.now_ms()
    return JSONResponse({"retCode": 0, "retMsg": "OK", "result": {
        "timeSecond": str(now_ms // 1000), "timeNano": str(now_ms * 1_000_000)}, "retExtInfo": {}, "time": now_ms})


def _bybit_query_api(call: FaceCall, request: Request) -> Response:
    now_ms = call.exchange.now_ms()
    with call.exchange.lock:
        return _bybit_query_api_answer(call.exchange, request, call.query, call.body, call.ip, now_ms)


def _bybit_not_found(call: FaceCall, request: Request) -> Response:
    return _bybit_error(404, f"The sandbox does not implement {request.method} {request.url.path}.",
                        call.exchange.now_ms())


def _bybit_query_api_answer(exchange: SandboxExchange, request: Request, query: str, body: str, ip: str,
                            now_ms: int) -> JSONResponse:
    h = request.headers
    key = exchange.keys.get(h.get("X-BAPI-API-KEY", ""))
    if key is None or key.revoked or key.exchange != "bybit":
        return _bybit_error(10003, "API key is invalid.", now_ms)
    try:
        stamp = int(h.get("X-BAPI-TIMESTAMP", ""))
        recv_window = int(h.get("X-BAPI-RECV-WINDOW", "5000"))
    except ValueError:
        return _bybit_error(10001, "Invalid X-BAPI-TIMESTAMP or X-BAPI-RECV-WINDOW header.", now_ms)
    if stamp > now_ms + 1000 or now_ms - stamp > recv_window:
        return _bybit_error(10002, "invalid request, please check your server timestamp or recv_window "
                                   f"param. req_timestamp[{stamp}],server_timestamp[{now_ms}],"
                                   f"recv_window[{recv_window}]", now_ms)
    payload = f"{stamp}{key.api_key}{recv_window}{query if request.method == 'GET' else body}"
    expected = hmac.new(key.secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, h.get("X-BAPI-SIGN", "")):
        return _bybit_error(10004, "error sign! please check your signature generation algorithm.", now_ms)
    if key.ip_restrict and ip not in key.ips:
        return _bybit_error(10010, "Unmatched IP, please check your API key's bound IP addresses.", now_ms)
    return JSONResponse({"retCode": 0, "retMsg": "", "result": bybit_key_body(key), "retExtInfo": {},
                         "time": now_ms})


handle_bybit = face_endpoint("/bybit", {
    ("GET", "/v5/market/time"): _bybit_time,
    ("GET", "/v5/user/query-api"): _bybit_query_api,
}, not_found=_bybit_not_found)
