"""BloFin: GET /api/v1/user/query-apikey reports readOnly, ips, createTime and expireTime. A read-write key's
trade/transfer/withdraw cannot be told apart, so they stay unknown unless the operator declares them."""

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
from keyguard.exchanges.keystate import KeyState, Permissions, from_ms


class BlofinAdapter(CcxtAdapter):
    exchange_id = "blofin"
    error_codes: ClassVar[dict[str, type[ExchangeRejected]]] = {
        "152401": InvalidKey, "152402": InvalidKey, "152408": InvalidKey, "152409": InvalidKey,
        "152406": IPRefused,
        "152404": PermissionRefused,
        "152405": ClockSkew,
    }
    probe_endpoint = ("GET", "/api/v1/user/query-apikey")

    def server_time_ms(self) -> int | None:
        return None  # BloFin publishes no server-time endpoint

    def probe_call(self, client: ccxt.Exchange) -> dict[str, Any]:
        return self.call(client, *self.probe_endpoint, client.private_get_user_query_apikey)

    def read_key(self, state: KeyState, declared: KeyDeclaration) -> None:
        body = self.probe_call(self.host_client)
        try:
            data = body["data"]
            read_only = int(data["readOnly"]) == 1
            ips = [str(ip) for ip in data["ips"] or []]
        except (KeyError, TypeError, ValueError):
            raise MalformedResponse("blofin GET /api/v1/user/query-apikey: no data.readOnly / data.ips") from None
        flags = {"readOnly": read_only}
        if read_only:
            record_permissions(state, flags, Permissions(read=True, trade=False, transfer=False, withdraw=False))
        elif declared.permissions is not None:
            # Only "read-write" is reported; which writes is the operator's declaration.
            record_permissions(state, flags, declared.permissions.model_copy(update={"read": True}), "declared")
        else:
            record_permissions(state, flags, Permissions(read=True, trade=None, transfer=None, withdraw=None))
        record_reported_ips(state, declared, ips)
        state.created_at = from_ms(data.get("createTime"))
        state.expires_at = from_ms(data.get("expireTime"))
        state.sources["created_at"] = "reported"
