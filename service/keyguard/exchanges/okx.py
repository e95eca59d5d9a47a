"""OKX: GET /api/v5/account/config reports `perm` (read_only, trade, withdraw) and the bound `ip` list."""

from __future__ import annotations

from typing import Any, ClassVar

import ccxt

from keyguard.exchanges.base import CcxtAdapter, KeyDeclaration, record_permissions, record_reported_ips
from keyguard.exchanges.errors import ClockSkew, ExchangeRejected, InvalidKey, IPRefused, MalformedResponse, RateLimited
from keyguard.exchanges.keystate import KeyState, permissions_from_flags


class OkxAdapter(CcxtAdapter):
    exchange_id = "okx"
    error_codes: ClassVar[dict[str, type[ExchangeRejected]]] = {
        "50103": InvalidKey, "50105": InvalidKey, "50111": InvalidKey, "50112": InvalidKey, "50113": InvalidKey,
        "50110": IPRefused,
        "50102": ClockSkew,
        "50011": RateLimited,
    }
    probe_endpoint = ("GET", "/api/v5/account/config")

    def server_time_ms(self) -> int:
        return self.public_time_ms("/api/v5/public/time", self.host_client.public_get_public_time,
                                   lambda body: body["data"][0]["ts"], "data[0].ts")

    def probe_call(self, client: ccxt.Exchange) -> dict[str, Any]:
        return self.call(client, *self.probe_endpoint, client.private_get_account_config)

    def read_key(self, state: KeyState, declared: KeyDeclaration) -> None:
        body = self.probe_call(self.host_client)
        try:
            config = body["data"][0]
            perm = {p.strip() for p in str(config["perm"]).split(",") if p.strip()}
            ips = [ip.strip() for ip in str(config["ip"]).split(",") if ip.strip()]
        except (KeyError, IndexError, TypeError):
            raise MalformedResponse("okx GET /api/v5/account/config: no data[0].perm / data[0].ip") from None
        # OKX's trade permission also allows transfers between the account's own wallets.
        record_permissions(state,
                           {"read_only": "read_only" in perm, "trade": "trade" in perm, "withdraw": "withdraw" in perm},
                           permissions_from_flags("okx", {p: True for p in perm}, can_always_read=bool(perm)))
        record_reported_ips(state, declared, ips)
