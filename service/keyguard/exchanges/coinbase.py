"""Coinbase Advanced: GET /api/v3/brokerage/key_permissions reports can_view, can_trade and can_transfer
(transfer covers withdrawals). No IP facts are reported: the binding is declared or probed. Refusals are a bare
401 whatever the cause, so from a second address after the host succeeded it reads as an IP refusal."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import ccxt

from keyguard.errors import ExchangeError
from keyguard.exchanges.base import CcxtAdapter, KeyDeclaration, record_permissions
from keyguard.exchanges.errors import AmbiguousRefusal, MalformedResponse
from keyguard.exchanges.keystate import KeyState, permissions_from_flags


class CoinbaseAdapter(CcxtAdapter):
    exchange_id = "coinbase"
    probe_endpoint = ("GET", "/api/v3/brokerage/key_permissions")

    def translate(self, exc: ccxt.BaseError, status: int, headers: Mapping[str, str], what: str,
                  timeout_ms: int | None = None) -> ExchangeError:
        if status == 401:
            return AmbiguousRefusal(status, None, "Unauthorized (invalid key, IP not allowed, or permission missing)",
                                    context=f"coinbase {what}")
        return super().translate(exc, status, headers, what, timeout_ms)

    def server_time_ms(self) -> int:
        return self.public_time_ms("/api/v3/brokerage/time", self.host_client.v3_public_get_brokerage_time,
                                   lambda body: body["epochMillis"], "epochMillis")

    def probe_call(self, client: ccxt.Exchange) -> dict[str, Any]:
        return self.call(client, *self.probe_endpoint, client.v3_private_get_brokerage_key_permissions)

    def read_key(self, state: KeyState, declared: KeyDeclaration) -> None:
        body = self.probe_call(self.host_client)
        flags = {name: body.get(name) for name in ("can_view", "can_trade", "can_transfer")}
        if not all(isinstance(v, bool) for v in flags.values()):
            raise MalformedResponse("coinbase GET /api/v3/brokerage/key_permissions: can_view, can_trade or "
                                    "can_transfer missing or not a boolean")
        record_permissions(state, flags, permissions_from_flags("coinbase", flags))
        if declared.allowed_ips:
            state.sources["allowed_ips"] = "declared"
