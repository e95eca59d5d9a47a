"""Bybit v5: GET /v5/user/query-api reports readOnly, per-product permissions, the `ips` list and key times."""

from __future__ import annotations

from typing import Any, ClassVar

import ccxt

from keyguard.exchanges.base import CcxtAdapter, KeyDeclaration, record_permissions, record_reported_ips
from keyguard.exchanges.errors import (
    ClockSkew,
    ExchangeRejected,
    InvalidKey,
    IPRefused,
    MalformedResponse,
    PermissionRefused,
    RateLimited,
)
from keyguard.exchanges.keystate import KeyState, from_iso, permissions_from_flags


class BybitAdapter(CcxtAdapter):
    exchange_id = "bybit"
    error_codes: ClassVar[dict[str, type[ExchangeRejected]]] = {
        "10003": InvalidKey, "10004": InvalidKey,
        "10010": IPRefused,
        "10005": PermissionRefused,
        "10002": ClockSkew,
        "10006": RateLimited,
    }
    probe_endpoint = ("GET", "/v5/user/query-api")

    def server_time_ms(self) -> int:
        return self.public_time_ms("/v5/market/time", self.host_client.public_get_v5_market_time,
                                   lambda body: body["time"], "integer time")

    def probe_call(self, client: ccxt.Exchange) -> dict[str, Any]:
        return self.call(client, *self.probe_endpoint, client.private_get_v5_user_query_api)

    def read_key(self, state: KeyState, declared: KeyDeclaration) -> None:
        body = self.probe_call(self.host_client)
        try:
            result = body["result"]
            read_only = int(result["readOnly"]) == 1
            groups: dict[str, list[str]] = {k: list(v or []) for k, v in result["permissions"].items()}
            ips = [str(ip) for ip in result["ips"]]
        except (KeyError, TypeError, ValueError, AttributeError):
            raise MalformedResponse("bybit GET /v5/user/query-api: no result.readOnly / permissions / ips") from None
        wallet = set(groups.get("Wallet", []))
        # Each permission group as a flag, Wallet's entries one by one; what they grant is the rules' map.
        flags: dict[str, Any] = {group: bool(items) for group, items in groups.items() if group != "Wallet"}
        flags.update({name: name in wallet for name in ("AccountTransfer", "SubMemberTransfer", "Withdraw")})
        flags["readOnly"] = read_only
        record_permissions(state, flags, permissions_from_flags("bybit", flags, can_always_read=True))
        # "*" is Bybit's way of saying "any address".
        record_reported_ips(state, declared, [ip for ip in ips if ip and ip != "*"])
        state.created_at = from_iso(result.get("createdAt"))
        state.expires_at = from_iso(result.get("expiredAt"))
        state.sources["created_at"] = "reported"
