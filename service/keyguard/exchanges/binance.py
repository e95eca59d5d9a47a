"""Binance spot: GET /sapi/v1/account/apiRestrictions for flags, ipRestrict and createTime; the IP list is not
reported, so the binding is verified by the probe."""

from __future__ import annotations

from typing import Any, ClassVar

import ccxt

from keyguard.errors import ExchangeError
from keyguard.exchanges.base import ExchangeAdapter, KeyDeclaration, record_permissions
from keyguard.exchanges.errors import AmbiguousRefusal, ClockSkew, InvalidKey, MalformedResponse
from keyguard.exchanges.keystate import KeyState, Permissions, from_ms

TRADE_FLAGS = ("enableSpotAndMarginTrading", "enableMargin", "enableFutures", "enableVanillaOptions",
               "enablePortfolioMarginTrading", "enableFixApiTrade")
TRANSFER_FLAGS = ("enableInternalTransfer", "permitsUniversalTransfer")
NON_FLAG_FIELDS = ("ipRestrict", "createTime", "tradingAuthorityExpirationTime")


def binance_permissions(flags: dict[str, Any]) -> Permissions:
    return Permissions(
        read=bool(flags.get("enableReading")),
        trade=any(bool(flags.get(f)) for f in TRADE_FLAGS),
        transfer=any(bool(flags.get(f)) for f in TRANSFER_FLAGS),
        withdraw=bool(flags.get("enableWithdrawals")),
    )


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
