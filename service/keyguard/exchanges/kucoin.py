"""KuCoin: GET /api/v1/user/api-key reports `permission` (General, Spot, Margin, Futures, InnerTransfer,
FlexTransfers, Withdrawal/Transfer), the `ipWhitelist` and createdAt."""

from __future__ import annotations

from typing import Any, ClassVar

import ccxt

from keyguard.exchanges.base import CcxtAdapter, KeyDeclaration, record_permissions, record_reported_ips
from keyguard.exchanges.errors import ClockSkew, ExchangeRejected, InvalidKey, IPRefused, MalformedResponse, RateLimited
from keyguard.exchanges.keystate import KeyState, from_ms, permissions_from_flags


class KucoinAdapter(CcxtAdapter):
    exchange_id = "kucoin"
    error_codes: ClassVar[dict[str, type[ExchangeRejected]]] = {
        "400003": InvalidKey, "400004": InvalidKey, "400005": InvalidKey,
        "400006": IPRefused,
        "400002": ClockSkew,
        "429000": RateLimited,
    }
    probe_endpoint = ("GET", "/api/v1/user/api-key")

    def server_time_ms(self) -> int:
        return self.public_time_ms("/api/v1/timestamp", self.host_client.public_get_timestamp,
                                   lambda body: body["data"], "integer data")

    def probe_call(self, client: ccxt.Exchange) -> dict[str, Any]:
        return self.call(client, *self.probe_endpoint, client.private_get_user_api_key)

    def read_key(self, state: KeyState, declared: KeyDeclaration) -> None:
        body = self.probe_call(self.host_client)
        try:
            data = body["data"]
            granted = {p.strip() for p in str(data["permission"]).split(",") if p.strip()}
            ips = [ip.strip() for ip in str(data["ipWhitelist"] or "").split(",") if ip.strip()]
        except (KeyError, TypeError):
            raise MalformedResponse("kucoin GET /api/v1/user/api-key: no data.permission / data.ipWhitelist") from None
        flags = {name: True for name in sorted(granted)}
        record_permissions(state, flags, permissions_from_flags("kucoin", flags))
        record_reported_ips(state, declared, ips)
        state.created_at = from_ms(data.get("createdAt"))
        state.sources["created_at"] = "reported"
