"""Bitget: GET /api/v2/spot/account/info reports `authorities` codes (*r read; stow, smow, coow, cpow, ttow trade;
wtow transfer; wwow withdraw) and the bound `ips`."""

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
)
from keyguard.exchanges.keystate import KeyState, permissions_from_flags


class BitgetAdapter(CcxtAdapter):
    exchange_id = "bitget"
    error_codes: ClassVar[dict[str, type[ExchangeRejected]]] = {
        "40037": InvalidKey, "40006": InvalidKey, "40012": InvalidKey, "40009": InvalidKey,
        "40018": IPRefused,
        "40014": PermissionRefused,
        "40008": ClockSkew,
    }
    probe_endpoint = ("GET", "/api/v2/spot/account/info")

    def server_time_ms(self) -> int:
        return self.public_time_ms("/api/v2/public/time", self.host_client.public_common_get_v2_public_time,
                                   lambda body: body["data"]["serverTime"], "data.serverTime")

    def probe_call(self, client: ccxt.Exchange) -> dict[str, Any]:
        return self.call(client, *self.probe_endpoint, client.private_spot_get_v2_spot_account_info)

    def read_key(self, state: KeyState, declared: KeyDeclaration) -> None:
        body = self.probe_call(self.host_client)
        try:
            data = body["data"]
            codes = {str(c) for c in data["authorities"]}
            ips = [ip.strip() for ip in str(data["ips"] or "").split(",") if ip.strip()]
        except (KeyError, TypeError):
            raise MalformedResponse("bitget GET /api/v2/spot/account/info: no data.authorities / data.ips") from None
        # Every read authority ends in "r" (stor, wtor, ...); what the others grant is the rules' map.
        record_permissions(state, {code: True for code in sorted(codes)},
                           permissions_from_flags("bitget", {c: True for c in codes},
                                                  can_always_read=any(c.endswith("r") for c in codes)))
        record_reported_ips(state, declared, ips)
