"""Gate: no call describes the calling key alone; GET /api/v4/account/main_keys lists the main account's keys
(masked), and the adapter picks the entry whose mask fits its own key. perms[{name, read_only}] and
ip_whitelist come from that entry."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import ccxt

from keyguard.errors import ExchangeError
from keyguard.exchanges.base import CcxtAdapter, KeyDeclaration, record_permissions, record_reported_ips
from keyguard.exchanges.errors import (
    ClockSkew,
    ExchangeRejected,
    InvalidKey,
    IPRefused,
    MalformedResponse,
    PermissionRefused,
)
from keyguard.exchanges.keystate import KeyState, from_ms, permissions_from_flags

LABELS: dict[str, type[ExchangeRejected]] = {
    "INVALID_KEY": InvalidKey, "INVALID_SIGNATURE": InvalidKey, "INVALID_CREDENTIALS": InvalidKey,
    "IP_FORBIDDEN": IPRefused,
    "FORBIDDEN": PermissionRefused,
    "REQUEST_EXPIRED": ClockSkew,
}


def fits_mask(mask: str, api_key: str) -> bool:
    """True when a masked key ("abcd********wxyz") can be this key."""
    if "*" not in mask:
        return mask == api_key
    head, tail = mask.split("*", 1)[0], mask.rsplit("*", 1)[1]
    return len(mask) == len(api_key) and api_key.startswith(head) and api_key.endswith(tail)


class GateAdapter(CcxtAdapter):
    exchange_id = "gate"
    probe_endpoint = ("GET", "/api/v4/account/main_keys")

    def translate(self, exc: ccxt.BaseError, status: int, headers: Mapping[str, str], what: str,
                  timeout_ms: int | None = None) -> ExchangeError:
        text = str(exc)
        for label, error in LABELS.items():
            if f'"{label}"' in text:
                return error(status, None, label, context=f"gate {what}")
        return super().translate(exc, status, headers, what, timeout_ms)

    def server_time_ms(self) -> int:
        return self.public_time_ms("/api/v4/spot/time", self.host_client.public_spot_get_time,
                                   lambda body: body["server_time"], "server_time")

    def probe_call(self, client: ccxt.Exchange) -> dict[str, Any]:
        # The endpoint answers a JSON list; wrap it so call() sees the object it expects.
        return self.call(client, *self.probe_endpoint, lambda: {"keys": client.private_account_get_main_keys()})

    def read_key(self, state: KeyState, declared: KeyDeclaration) -> None:
        listed = self.probe_call(self.host_client)["keys"]
        if not isinstance(listed, list):
            raise MalformedResponse("gate GET /api/v4/account/main_keys: expected a list of keys")
        mine = [k for k in listed if isinstance(k, dict) and fits_mask(str(k.get("key", "")),
                                                                       self.credentials.api_key)]
        if len(mine) != 1:
            raise MalformedResponse(f"gate GET /api/v4/account/main_keys: {len(mine)} entries fit this key's mask; "
                                    "expected exactly one")
        entry = mine[0]
        try:
            perms = {str(p["name"]): not bool(p["read_only"]) for p in entry["perms"]}
            ips = [str(ip) for ip in entry["ip_whitelist"] or []]
        except (KeyError, TypeError):
            raise MalformedResponse("gate main_keys entry: no perms[{name, read_only}] / ip_whitelist") from None
        record_permissions(state, perms, permissions_from_flags("gate", perms, can_always_read=True))
        record_reported_ips(state, declared, ips)
        state.created_at = from_ms(int(entry.get("created_at") or 0) * 1000)
        state.sources["created_at"] = "reported"
