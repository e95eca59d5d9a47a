"""Binance spot: GET /sapi/v1/account/apiRestrictions for flags, ipRestrict and createTime; the IP list is not
reported, so the binding is verified by the probe."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from functools import partial
from typing import Any, ClassVar

import ccxt

from keyguard.errors import ExchangeError
from keyguard.exchanges.base import ExchangeAdapter, KeyDeclaration, record_permissions
from keyguard.exchanges.errors import AmbiguousRefusal, ClockSkew, InvalidKey, MalformedResponse
from keyguard.exchanges.keystate import KeyState, Permissions, from_ms, permissions_from_flags

NON_FLAG_FIELDS = ("ipRestrict", "createTime", "tradingAuthorityExpirationTime")


def binance_permissions(flags: dict[str, Any]) -> Permissions:
    """The permission classes the key's flags grant, by the rules' own map (data.lib.raw_permission_flags)."""
    return permissions_from_flags("binance", flags)


class BinanceAdapter(ExchangeAdapter):
    exchange_id = "binance"
    error_codes: ClassVar[dict[str, type[ExchangeError]]] = {
        "-2014": InvalidKey,
        "-1022": InvalidKey,
        "-2015": AmbiguousRefusal,
        "-1021": ClockSkew,
    }
    probe_endpoint = ("GET", "/sapi/v1/account/apiRestrictions")

    def server_time_ms(self) -> int:
        return self.public_time_ms("/api/v3/time", self.host_client.public_get_time,
                                   lambda body: body["serverTime"], "integer serverTime")

    def probe_call(self, client: ccxt.Exchange) -> dict[str, Any]:
        return self.call(client, *self.probe_endpoint, client.sapi_get_account_apirestrictions)

    def read_key(self, state: KeyState, declared: KeyDeclaration) -> None:
        body = self.probe_call(self.host_client)
        if not isinstance(body.get("ipRestrict"), bool) or not isinstance(body.get("enableWithdrawals"), bool):
            raise MalformedResponse("binance GET /sapi/v1/account/apiRestrictions: ipRestrict or enableWithdrawals "
                                    "missing or not a boolean")
        flags = {k: v for k, v in body.items() if k not in NON_FLAG_FIELDS and isinstance(v, bool)}
        record_permissions(state, flags, binance_permissions(flags))
        state.ip_restricted = body["ipRestrict"]
        state.created_at = from_ms(body.get("createTime"))
        state.expires_at = from_ms(body.get("tradingAuthorityExpirationTime"))
        state.sources.update({"ip_restricted": "reported", "created_at": "reported"})
        if declared.allowed_ips:
            state.sources["allowed_ips"] = "declared"

    # -- activity (foreign-activity detection) ----------------------------------------------------------------
    TRANSFER_TYPES: ClassVar[tuple[str, ...]] = (
        "MAIN_FUNDING", "MAIN_UMFUTURE", "MAIN_CMFUTURE", "MAIN_MARGIN", "MAIN_OPTION", "MAIN_PORTFOLIO_MARGIN")

    _withdrawals: ClassVar[dict[tuple[str, str], tuple[float, int, list[Any]]]] = {}
    _withdrawals_lock: ClassVar[threading.Lock] = threading.Lock()

    def withdraw_history(self, since_ms: int, max_age_s: float = 0.0) -> list[Any]:
        """Withdrawals since `since_ms`. Each read costs 18,000 of the account's 180,000 UID weight per minute (ten
        reads a minute): a caller that can use an answer up to `max_age_s` old (the containment's evidence, read
        right after the check that found it) gets the last one instead of spending another read."""
        cache_key = (repr(self.urls), self.credentials.api_key)
        now = time.monotonic()
        with self._withdrawals_lock:
            cached = self._withdrawals.get(cache_key)
        if cached is not None and now - cached[0] < max_age_s and cached[1] <= since_ms:
            return [w for w in cached[2] if not isinstance(w, dict) or _apply_ms(w) >= since_ms]
        client = self.host_client
        params = {"startTime": since_ms}
        rows = self.call_list(client, "GET", "/sapi/v1/capital/withdraw/history",
                              lambda: client.sapi_get_capital_withdraw_history(params), params)
        with self._withdrawals_lock:
            self._withdrawals[cache_key] = (now, since_ms, rows)
        return rows

    def read_activity(self, since_ms: int, symbols: list[str], transfer_types: list[str],
                      withdrawals_max_age_s: float = 0.0) -> dict[str, Any]:
        """The account's records since `since_ms`: orders of `symbols` (allOrders), withdrawals, universal
        transfers out of the spot wallet, and the withdrawal address book; each through the shared budget."""
        client = self.host_client
        orders: list[dict[str, Any]] = []
        for symbol in symbols:
            params = {"symbol": symbol, "startTime": since_ms, "limit": 1000}
            orders += self.call_list(client, "GET", "/api/v3/allOrders",
                                     partial(client.private_get_allorders, params), params)
        withdrawals = self.withdraw_history(since_ms, withdrawals_max_age_s)
        transfers: list[dict[str, Any]] = []
        for kind in sorted({*self.TRANSFER_TYPES, *transfer_types}):
            query = {"type": kind, "startTime": since_ms, "size": 100}
            body = self.call(client, "GET", "/sapi/v1/asset/transfer",
                             partial(client.sapi_get_asset_transfer, query), query)
            transfers += [row for row in body.get("rows") or [] if isinstance(row, dict)]
        addresses = self.call_list(client, "GET", "/sapi/v1/capital/withdraw/address/list",
                                   client.sapi_get_capital_withdraw_address_list)
        return {"orders": orders, "withdrawals": withdrawals, "transfers": transfers, "addresses": addresses}


def _apply_ms(withdrawal: dict[str, Any]) -> int:
    """A withdrawal's applyTime ("YYYY-MM-DD HH:MM:SS" UTC) in ms; unparsable: keep it (never drop a record)."""
    try:
        when = datetime.strptime(str(withdrawal.get("applyTime")), "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        return 2**62
    return int(when.timestamp() * 1000)
