"""OKX and Bybit faces of the sandbox, each with its own signing scheme and error codes: key introspection on both;
a master's query/modify/delete of a sub-account's key on both; on Bybit also spot orders and a key's update/delete
of itself (the key-control calls incident containment makes).

OKX lives under /okx (point ccxt's urls.api.rest at <sandbox>/okx); Bybit under /bybit (urls.api.* at <sandbox>/bybit).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from keyguard.sandbox.faces import FaceCall, face_endpoint
from keyguard.sandbox.state import WRITE_FLAGS, SandboxExchange, SandboxKey, SandboxRejection, parse_ip_list

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


def okx_perms(key: SandboxKey) -> list[str]:
    """The key's OKX permissions: read_only always; trade with spot trading; withdraw with withdrawals."""
    perms = ["read_only"]
    if key.flags.get("enableSpotAndMarginTrading"):
        perms.append("trade")
    if key.flags.get("enableWithdrawals"):
        perms.append("withdraw")
    return perms


def okx_config_body(key: SandboxKey) -> dict[str, Any]:
    perms = okx_perms(key)
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


class OkxRejection(Exception):
    """An OKX error: its HTTP status (OKX's error table gives one per code), code and message."""

    def __init__(self, status: int, code: str, msg: str):
        super().__init__(msg)
        self.status = status
        self.code = code
        self.msg = msg


OkxHandler = Callable[[SandboxExchange, SandboxKey, dict[str, Any]], list[dict[str, Any]]]


def _okx_private(handler: OkxHandler, limit: int, window_s: float) -> Callable[[FaceCall, Request], Response]:
    """A signed OKX route: authenticate, count the call against the endpoint's limit ("Rate limit rule: User ID":
    per endpoint and account, every authenticated call counted, refused ones too), read the parameters (the query
    of a GET, the JSON body of a POST), run the handler under the state lock and wrap its data in OKX's envelope,
    or its rejection in OKX's error."""

    def route(call: FaceCall, request: Request) -> Response:
        exchange = call.exchange
        with exchange.lock:
            key = _okx_authenticate(exchange, request, call.path_and_query, call.body, call.ip)
            if isinstance(key, JSONResponse):
                return key
            if not exchange.admit_call(f"okx {request.method} {call.path} {key.account}", limit, window_s):
                return _okx_error(429, "50011", "Too Many Requests")
            try:
                data = handler(exchange, key, _okx_params(request.method, call))
            except OkxRejection as rejection:
                return _okx_error(rejection.status, rejection.code, rejection.msg)
        return JSONResponse({"code": "0", "msg": "", "data": data})

    return route


def _okx_params(method: str, call: FaceCall) -> dict[str, Any]:
    if method == "GET":
        return dict(parse_qsl(call.query, keep_blank_values=True))
    if not call.body.strip():
        raise OkxRejection(400, "50000", "Body for POST request cannot be empty.")
    try:
        params = json.loads(call.body)
    except ValueError:
        raise OkxRejection(400, "50002", "JSON syntax error") from None
    if not isinstance(params, dict):
        raise OkxRejection(400, "50002", "JSON syntax error")
    return params


def _okx_string(p: dict[str, Any], name: str, required: bool = False) -> str | None:
    """A string parameter: None when absent; a required one absent or empty is 50014, a non-string one 51000."""
    value = p.get(name)
    if value is None or (required and value == ""):
        if required:
            raise OkxRejection(400, "50014", f"Parameter {name} can not be empty.")
        return None
    if not isinstance(value, str):
        raise OkxRejection(400, "51000", f"Parameter {name} error")
    return value


# -- a master's control of its sub-accounts' keys ---------------------------------------------------------
# The sandbox names an OKX sub-account (subAcct) by its sandbox account name, the "desk" of
# add_sub_account("main", "desk", email): OKX names sub-accounts by a login name, not an email (Binance's way).
OKX_SUB_KEY_PERMS = ("read_only", "trade")
OKX_MAX_KEY_IPS = 20


def _okx_require_master(exchange: SandboxExchange, key: SandboxKey, ip_bound: bool, trade: bool) -> None:
    """OKX's "Applies to master accounts only" (a sub-account's key: 59500); modify and delete add "master accounts
    API Key must be linked to IP addresses" (50035, HTTP 403) and "Permission: Trade" (50120)."""
    if exchange.master_of(key.account) is not None:
        raise OkxRejection(200, "59500", "Only the API key of the main account has permission.")
    if ip_bound and not (key.ip_restrict and key.ips):
        raise OkxRejection(403, "50035", "This endpoint requires that APIKey must be bound to IP")
    if trade and "trade" not in okx_perms(key):
        raise OkxRejection(200, "50120", "This API key doesn't have permission to use this function")


def _okx_sub_account(exchange: SandboxExchange, caller: SandboxKey, p: dict[str, Any]) -> str:
    """subAcct: one of the caller's sub-accounts, else OKX's 59510."""
    name = _okx_string(p, "subAcct", required=True)
    sub = exchange.sub_accounts.get(name or "")
    if sub is None or sub.master != caller.account:
        raise OkxRejection(200, "59510", "Sub-account does not exist")
    return sub.account


def _okx_sub_key(exchange: SandboxExchange, sub_account: str, api_key: str) -> SandboxKey:
    """A live OKX key of that sub-account; any other key (unknown, deleted, another account's) is 59506."""
    target = exchange.keys.get(api_key)
    if target is None or target.revoked or target.exchange != "okx" or target.account != sub_account:
        raise OkxRejection(200, "59506", "API key doesn't exist.")
    return target


def _okx_sub_key_row(key: SandboxKey) -> dict[str, Any]:
    return {"label": key.label, "apiKey": key.api_key, "perm": ",".join(okx_perms(key)),
            "ip": ",".join(key.ips) if key.ip_restrict else "", "ts": str(key.create_time_ms)}


def _okx_query_sub_keys(exchange: SandboxExchange, key: SandboxKey, p: dict[str, Any]) -> list[dict[str, Any]]:
    """GET /api/v5/users/subaccount/apikey: the sub-account's live keys, oldest first; `apiKey` narrows to that key
    (none listed when it is not one of them). Master accounts only, permission Read, no IP binding asked."""
    _okx_require_master(exchange, key, ip_bound=False, trade=False)
    api_key = _okx_string(p, "apiKey")
    sub_account = _okx_sub_account(exchange, key, p)
    keys = sorted((k for k in exchange.keys.values()
                   if k.account == sub_account and k.exchange == "okx" and not k.revoked),
                  key=lambda k: k.create_time_ms)
    return [_okx_sub_key_row(k) for k in keys if api_key in (None, "", k.api_key)]


def _okx_perm_flags(raw: str) -> dict[str, bool]:
    """modify-apikey's `perm` ("read_only", "trade", comma-separated) as the flags that replace the key's: every
    write permission off, spot trading back on with "trade". Sub-accounts cannot withdraw (59504)."""
    perms = [part.strip() for part in raw.split(",") if part.strip()]
    if "withdraw" in perms:
        raise OkxRejection(200, "59504", "Sub-accounts don't support withdrawals. Please use your main account for "
                                         "withdrawals.")
    if not perms or any(perm not in OKX_SUB_KEY_PERMS for perm in perms):
        raise OkxRejection(400, "51000", "Parameter perm error")
    flags = {flag: False for flag in WRITE_FLAGS}
    flags["enableSpotAndMarginTrading"] = "trade" in perms
    return flags


def _okx_ip_binding(raw: str) -> tuple[bool, list[str]]:
    """modify-apikey's `ip`: "a,b" binds the key to those addresses (up to 20, else 59503); "" unbinds it."""
    try:
        ips = parse_ip_list(raw)
    except ValueError:
        raise OkxRejection(400, "51000", "Parameter ip error") from None
    if len(ips) > OKX_MAX_KEY_IPS:
        raise OkxRejection(200, "59503", "Each API key can bind up to 20 IP addresses")
    return bool(ips), ips


def _okx_modify_sub_key(exchange: SandboxExchange, key: SandboxKey, p: dict[str, Any]) -> list[dict[str, Any]]:
    """POST /api/v5/users/subaccount/modify-apikey: each of label, perm and ip that is sent replaces the key's
    (checked whole before anything changes); the new IP list holds from the key's next call."""
    _okx_require_master(exchange, key, ip_bound=True, trade=True)
    api_key = _okx_string(p, "apiKey", required=True)
    label = _okx_string(p, "label")
    perm = _okx_string(p, "perm")
    ip = _okx_string(p, "ip")
    flags = _okx_perm_flags(perm) if perm is not None else None
    binding = _okx_ip_binding(ip) if ip is not None else None
    sub_account = _okx_sub_account(exchange, key, p)
    target = _okx_sub_key(exchange, sub_account, api_key or "")
    if label is not None:
        exchange.set_label(target.api_key, label)
    if flags is not None:
        exchange.set_flags(target.api_key, flags)
    if binding is not None:
        exchange.set_ip_restriction(target.api_key, *binding)
    return [{"subAcct": sub_account, **_okx_sub_key_row(target)}]


def _okx_delete_sub_key(exchange: SandboxExchange, key: SandboxKey, p: dict[str, Any]) -> list[dict[str, Any]]:
    """POST /api/v5/users/subaccount/delete-apikey: the key is invalid at once; its next call is 50111."""
    _okx_require_master(exchange, key, ip_bound=True, trade=True)
    api_key = _okx_string(p, "apiKey", required=True)
    sub_account = _okx_sub_account(exchange, key, p)
    exchange.revoke_key(_okx_sub_key(exchange, sub_account, api_key or "").api_key)
    return [{"subAcct": sub_account}]


handle_okx = face_endpoint("/okx", {
    ("GET", "/api/v5/public/time"): _okx_time,
    ("GET", "/api/v5/account/config"): _okx_account_config,
    # OKX's limits: 20 requests per 2 s for the query, 1 request per second for modify and delete (per user ID).
    ("GET", "/api/v5/users/subaccount/apikey"): _okx_private(_okx_query_sub_keys, 20, 2.0),
    ("POST", "/api/v5/users/subaccount/modify-apikey"): _okx_private(_okx_modify_sub_key, 1, 1.0),
    ("POST", "/api/v5/users/subaccount/delete-apikey"): _okx_private(_okx_delete_sub_key, 1, 1.0),
}, not_found=_okx_not_found)


BYBIT_PERMISSION_DENIED = "Permission denied, please check your API key permissions."

# The flags behind Bybit's write permissions: a key holding none of them is what Bybit reports as readOnly 1.
BYBIT_WRITE_FLAGS = ("enableSpotAndMarginTrading", "enableFutures", "enableVanillaOptions", "permitsUniversalTransfer",
                     "enableInternalTransfer", "enableWithdrawals")
# The permission groups the sandbox models: each name a group may hold -> the flag behind it. The Wallet names are
# Bybit's ("SubMemberTransferList" is what the sub-account key docs call "SubMemberTransfer").
BYBIT_GROUPS: dict[str, dict[str, str]] = {
    "Spot": {"SpotTrade": "enableSpotAndMarginTrading"},
    "ContractTrade": {"Order": "enableFutures", "Position": "enableFutures"},
    "Options": {"OptionsTrade": "enableVanillaOptions"},
    "Wallet": {"AccountTransfer": "permitsUniversalTransfer", "SubMemberTransfer": "enableInternalTransfer",
               "SubMemberTransferList": "enableInternalTransfer", "Withdraw": "enableWithdrawals"},
}
# Groups Bybit documents that the sandbox accepts but does not keep (GET /v5/user/query-api reports them empty).
BYBIT_UNMODELLED_GROUPS = ("Derivatives", "Exchange", "Earn", "BlockTrade", "CopyTrading", "NFT", "Affiliate",
                           "BitCard", "ByXPost")
# Groups a read-write key may not add or drop through the API (Bybit's 141020).
BYBIT_FIAT_GROUPS = ("FiatP2P", "FiatBitPay", "FiatBybitPay", "FiatConvertBroker")
# The permission a key needs to manage API keys: a master's key any of these; a sub-account's key (managing only
# itself) one of the first two.
MASTER_KEY_CONTROL = ("permitsUniversalTransfer", "enableInternalTransfer", "enableWithdrawals")
SUB_KEY_CONTROL = ("permitsUniversalTransfer", "enableInternalTransfer")


class BybitRejection(Exception):
    """A Bybit retCode other than 0 (Bybit answers them with HTTP 200)."""

    def __init__(self, code: int, msg: str):
        super().__init__(msg)
        self.code = code
        self.msg = msg


def _bybit_error(code: int, msg: str, now_ms: int) -> JSONResponse:
    return JSONResponse({"retCode": code, "retMsg": msg, "result": {}, "retExtInfo": {}, "time": now_ms})


def _bybit_uid(account: str) -> int:
    return abs(hash(account)) % 10**8


def bybit_read_only(key: SandboxKey) -> bool:
    return not any(key.flags.get(flag) for flag in BYBIT_WRITE_FLAGS)


def bybit_key_body(key: SandboxKey, master: str | None = None) -> dict[str, Any]:
    """GET /v5/user/query-api's result for a key; `master` is the key's account's master when it is a sub-account."""
    f = key.flags
    wallet = [name for flag, name in (("permitsUniversalTransfer", "AccountTransfer"),
                                      ("enableInternalTransfer", "SubMemberTransfer"),
                                      ("enableWithdrawals", "Withdraw")) if f.get(flag)]
    permissions = {
        "ContractTrade": ["Order", "Position"] if f.get("enableFutures") else [],
        "Spot": ["SpotTrade"] if f.get("enableSpotAndMarginTrading") else [], "Wallet": wallet,
        "Options": ["OptionsTrade"] if f.get("enableVanillaOptions") else [],
        "Derivatives": [], "CopyTrading": [], "BlockTrade": [], "Exchange": [], "NFT": [], "Affiliate": [],
    }
    return {
        "id": str(abs(hash(key.api_key)) % 10**8), "note": key.label, "apiKey": key.api_key,
        "readOnly": 1 if bybit_read_only(key) else 0, "secret": "", "permissions": permissions,
        "ips": list(key.ips) if key.ip_restrict else ["*"], "type": 1,
        "deadlineDay": -1 if key.ip_restrict else 90,
        "expiredAt": _iso(key.expire_time_ms) if key.expire_time_ms and not key.ip_restrict else "",
        "createdAt": _iso(key.create_time_ms), "unified": 0, "uta": 1,
        "userID": _bybit_uid(key.account), "inviterID": 0, "vipLevel": "No VIP", "mktMakerLevel": "0",
        "affiliateID": 0, "rsaPublicKey": "", "isMaster": master is None,
        "parentUid": str(_bybit_uid(master)) if master else "0", "kycLevel": "LEVEL_DEFAULT", "kycRegion": "",
    }


def _bybit_time(call: FaceCall, request: Request) -> Response:
    now_ms = call.exchange.now_ms()
    return JSONResponse({"retCode": 0, "retMsg": "OK", "result": {
        "timeSecond": str(now_ms // 1000), "timeNano": str(now_ms * 1_000_000)}, "retExtInfo": {}, "time": now_ms})


def _bybit_not_found(call: FaceCall, request: Request) -> Response:
    return _bybit_error(404, f"The sandbox does not implement {request.method} {request.url.path}.",
                        call.exchange.now_ms())


def _bybit_authenticate(exchange: SandboxExchange, request: Request, call: FaceCall,
                        now_ms: int) -> SandboxKey | JSONResponse:
    """Bybit's checks in order: key known and live, timestamp/recv_window, signature, IP binding. A deleted key is
    unknown from the moment it is deleted (10003)."""
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
    payload = f"{stamp}{key.api_key}{recv_window}{call.query if request.method == 'GET' else call.body}"
    expected = hmac.new(key.secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, h.get("X-BAPI-SIGN", "")):
        return _bybit_error(10004, "error sign! please check your signature generation algorithm.", now_ms)
    if key.ip_restrict and call.ip not in key.ips:
        return _bybit_error(10010, "Unmatched IP, please check your API key's bound IP addresses.", now_ms)
    return key


BybitHandler = Callable[[SandboxExchange, SandboxKey, dict[str, Any]], dict[str, Any]]


def _bybit_private(handler: BybitHandler, ret_msg: str = "OK") -> Callable[[FaceCall, Request], Response]:
    """A signed Bybit route: authenticate, read the parameters (the JSON body of a POST, the query of a GET), run
    the handler under the state lock, wrap its result in Bybit's envelope or its rejection in Bybit's error."""

    def route(call: FaceCall, request: Request) -> Response:
        exchange = call.exchange
        now_ms = exchange.now_ms()
        with exchange.lock:
            key = _bybit_authenticate(exchange, request, call, now_ms)
            if isinstance(key, JSONResponse):
                return key
            try:
                result = handler(exchange, key, _bybit_params(request.method, call))
            except BybitRejection as rejection:
                return _bybit_error(rejection.code, rejection.msg, now_ms)
        return JSONResponse({"retCode": 0, "retMsg": ret_msg, "result": result, "retExtInfo": {}, "time": now_ms})

    return route


def _bybit_params(method: str, call: FaceCall) -> dict[str, Any]:
    if method == "GET":
        return dict(parse_qsl(call.query, keep_blank_values=True))
    try:
        params = json.loads(call.body or "{}")
    except ValueError:
        raise BybitRejection(10001, "Request parameter error: the body is not JSON.") from None
    if not isinstance(params, dict):
        raise BybitRejection(10001, "Request parameter error: the body must be a JSON object.")
    return params


def _bybit_query_api(exchange: SandboxExchange, key: SandboxKey, params: dict[str, Any]) -> dict[str, Any]:
    return bybit_key_body(key, exchange.master_of(key.account))


# -- spot orders ----------------------------------------------------------------------------------------
# The state's refusals (Binance codes) as Bybit's spot codes.
_SPOT_CODES = {-1121: (170121, "Invalid symbol."), -1013: (170130, "Data sent for paramter 'qty' is not valid.")}


def _bybit_create_order(exchange: SandboxExchange, key: SandboxKey, p: dict[str, Any]) -> dict[str, Any]:
    """POST /v5/order/create for spot, filled against the sandbox's book like a Binance order. A key without spot
    trading (a read-only key included) is refused with 10005."""
    if not key.flags.get("enableSpotAndMarginTrading"):
        raise BybitRejection(10005, BYBIT_PERMISSION_DENIED)
    for name in ("category", "symbol", "side", "orderType", "qty"):
        if p.get(name) in (None, ""):
            raise BybitRejection(10001, f"Request parameter error: {name} is required.")
    if p["category"] != "spot":
        raise BybitRejection(10001, "Request parameter error: the sandbox lists spot markets only (category spot).")
    side = {"Buy": "BUY", "Sell": "SELL"}.get(str(p["side"]))
    order_type = {"Market": "MARKET", "Limit": "LIMIT"}.get(str(p["orderType"]))
    tif = str(p.get("timeInForce") or "GTC")
    if side is None or order_type is None or tif not in ("GTC", "IOC", "FOK"):
        raise BybitRejection(10001, "Request parameter error: side Buy|Sell, orderType Market|Limit, timeInForce "
                                    "GTC|IOC|FOK (the sandbox has no PostOnly).")
    try:
        qty = float(p["qty"])
        price = float(p["price"]) if p.get("price") not in (None, "") else None
    except (TypeError, ValueError):
        raise BybitRejection(170130, "Data sent for paramter 'qty' is not valid.") from None
    # A spot market buy is sized in the quote coin unless marketUnit says baseCoin (Bybit's default).
    by_value = order_type == "MARKET" and side == "BUY" and p.get("marketUnit") != "baseCoin"
    link_id = str(p.get("orderLinkId") or f"sandbox-{secrets.token_hex(8)}")
    try:
        order = exchange.place_order(key.account, str(p["symbol"]), side, order_type, None if by_value else qty,
                                     qty if by_value else None, price if order_type == "LIMIT" else None,
                                     "IOC" if order_type == "MARKET" else tif, link_id)
    except SandboxRejection as rejection:
        if rejection.msg == "Duplicate order sent.":
            raise BybitRejection(170141, "Duplicate clientOrderId") from None
        if rejection.code == -2010:
            raise BybitRejection(170131, "Balance insufficient") from None
        code, msg = _SPOT_CODES.get(int(rejection.code), (10001, f"Request parameter error: {rejection.msg}"))
        raise BybitRejection(code, msg) from None
    return {"orderId": str(order.order_id), "orderLinkId": order.client_order_id}


# -- API key control ------------------------------------------------------------------------------------
def _require(key: SandboxKey, flags: tuple[str, ...]) -> None:
    if not any(key.flags.get(flag) for flag in flags):
        raise BybitRejection(10005, BYBIT_PERMISSION_DENIED)


def _require_master(exchange: SandboxExchange, key: SandboxKey) -> None:
    """update-api and delete-api take "master user's api key only"; the docs give no code for a sub-account's key,
    the sandbox answers 10005 (permission denied). Then the master key needs a wallet permission."""
    if exchange.master_of(key.account) is not None:
        raise BybitRejection(10005, BYBIT_PERMISSION_DENIED)
    _require(key, MASTER_KEY_CONTROL)


def _target_sub_key(exchange: SandboxExchange, caller: SandboxKey, p: dict[str, Any]) -> SandboxKey:
    """The key update-sub-api / delete-sub-api act on. A sub-account's key acts on itself and must not pass
    `apikey` ("otherwise throwing an error": 10001). A master's key must pass the `apikey` of one of its
    sub-accounts' keys; any other key is Bybit's 141004 "sub member is not normal" (the parent-child relation is
    not right)."""
    target_id = p.get("apikey")
    if exchange.master_of(caller.account) is not None:
        _require(caller, SUB_KEY_CONTROL)
        if target_id:
            raise BybitRejection(10001, "Request parameter error: a sub-account key manages itself; do not pass "
                                        "apikey.")
        return caller
    _require(caller, MASTER_KEY_CONTROL)
    if not target_id or not isinstance(target_id, str):
        raise BybitRejection(10001, "Request parameter error: apikey is required to manage a sub-account key.")
    target = exchange.keys.get(target_id)
    if (target is None or target.revoked or target.exchange != "bybit"
            or exchange.master_of(target.account) != caller.account):
        raise BybitRejection(141004, "sub member is not normal")
    return target


def _flag_changes(key: SandboxKey, p: dict[str, Any]) -> dict[str, bool]:
    """The flags an update sets, checked whole before anything changes. A group sent replaces that group (an empty
    array clears it); a group not sent is kept. readOnly 1 drops every write permission (what query-api then
    reports as readOnly 1); readOnly 0 grants nothing by itself: the key can write what its groups tick."""
    read_only = p.get("readOnly")
    if read_only is not None and str(read_only) not in ("0", "1"):
        raise BybitRejection(10001, "Request parameter error: readOnly must be 0 or 1.")
    permissions = p.get("permissions")
    if permissions is not None and not isinstance(permissions, dict):
        raise BybitRejection(10001, "Request parameter error: permissions must be an object.")
    changes: dict[str, bool] = {}
    fiat_asked = False
    for group, names in (permissions or {}).items():
        if names is None:
            continue
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise BybitRejection(10001, f"Request parameter error: permissions.{group} must be an array of names.")
        if group in BYBIT_GROUPS:
            known = BYBIT_GROUPS[group]
            unknown = sorted(set(names) - set(known))
            if unknown:
                raise BybitRejection(10001, f"Request parameter error: {unknown[0]!r} is not a {group} permission.")
            for flag in set(known.values()):
                changes[flag] = any(known[n] == flag for n in names)
        elif group in BYBIT_FIAT_GROUPS:
            fiat_asked = fiat_asked or bool(names)
        elif group not in BYBIT_UNMODELLED_GROUPS:
            raise BybitRejection(10001, f"Request parameter error: unknown permission group {group!r}.")
    if str(read_only) == "1":
        changes.update({flag: False for flag in WRITE_FLAGS})
    # Withdrawal is not among the Wallet names the update docs list: adding it takes the web UI, like the other
    # sensitive permissions Bybit refuses with 141020 (keeping a withdrawal permission the key has is fine).
    if changes.get("enableWithdrawals") and not key.flags.get("enableWithdrawals"):
        raise BybitRejection(141020, "To change read and write permissions for sensitive actions, go to API "
                                     "management and select Edit")
    write_after = any({**key.flags, **changes}.get(flag) for flag in BYBIT_WRITE_FLAGS)
    if fiat_asked and write_after:
        raise BybitRejection(141020, "To change read and write permissions for sensitive actions, go to API "
                                     "management and select Edit")
    return changes


def _ip_binding(p: dict[str, Any]) -> tuple[bool, list[str]]:
    """update-sub-api's `ips`: "a,b" (an array is taken too, as Bybit's changelog allows). Bybit's docs: "don't pass
    ips or pass with "*" means no bind", so an update without ips unbinds the key; the sandbox follows the docs."""
    raw = p.get("ips")
    if isinstance(raw, list):
        raw = ",".join(str(part) for part in raw)
    if raw is None or (isinstance(raw, str) and raw.strip() in ("", "*")):
        return False, []
    if not isinstance(raw, str):
        raise BybitRejection(10001, "Request parameter error: ips must be a string such as \"1.2.3.4,5.6.7.8\".")
    try:
        return True, parse_ip_list(raw)
    except ValueError as exc:
        raise BybitRejection(10001, f"Request parameter error: {exc} is not an IP address.") from None


def _update_result(exchange: SandboxExchange, key: SandboxKey) -> dict[str, Any]:
    body = bybit_key_body(key, exchange.master_of(key.account))
    return {name: body[name] for name in ("id", "note", "apiKey", "readOnly", "secret", "permissions", "ips")}


def _bybit_update_api(exchange: SandboxExchange, key: SandboxKey, p: dict[str, Any]) -> dict[str, Any]:
    """Changes the calling master key. Since February 2026 Bybit takes no `ips` here ("modifying, adding, or
    deleting IP addresses via API is prohibited"): sending it is refused with 141019, nothing changed."""
    _require_master(exchange, key)
    if "ips" in p:
        raise BybitRejection(141019, "To add or update the IP whitelist, go to API management and select Edit")
    changes = _flag_changes(key, p)
    return _update_result(exchange, exchange.set_flags(key.api_key, changes))


def _bybit_update_sub_api(exchange: SandboxExchange, key: SandboxKey, p: dict[str, Any]) -> dict[str, Any]:
    target = _target_sub_key(exchange, key, p)
    changes = _flag_changes(target, p)
    restrict, ips = _ip_binding(p)
    exchange.set_flags(target.api_key, changes)
    return _update_result(exchange, exchange.set_ip_restriction(target.api_key, restrict, ips))


def _bybit_delete_api(exchange: SandboxExchange, key: SandboxKey, p: dict[str, Any]) -> dict[str, Any]:
    """Deletes the calling master key: invalid at once, its next call is 10003."""
    _require_master(exchange, key)
    exchange.revoke_key(key.api_key)
    return {}


def _bybit_delete_sub_api(exchange: SandboxExchange, key: SandboxKey, p: dict[str, Any]) -> dict[str, Any]:
    exchange.revoke_key(_target_sub_key(exchange, key, p).api_key)
    return {}


handle_bybit = face_endpoint("/bybit", {
    ("GET", "/v5/market/time"): _bybit_time,
    ("GET", "/v5/user/query-api"): _bybit_private(_bybit_query_api, ret_msg=""),
    ("POST", "/v5/order/create"): _bybit_private(_bybit_create_order),
    ("POST", "/v5/user/update-api"): _bybit_private(_bybit_update_api, ret_msg=""),
    ("POST", "/v5/user/update-sub-api"): _bybit_private(_bybit_update_sub_api, ret_msg=""),
    ("POST", "/v5/user/delete-api"): _bybit_private(_bybit_delete_api, ret_msg=""),
    ("POST", "/v5/user/delete-sub-api"): _bybit_private(_bybit_delete_sub_api, ret_msg=""),
}, not_found=_bybit_not_found)
