"""Kraken: POST /0/private/GetApiKeyInfo reports the key's `permissions` list, `ipAllowlist`, createdTime and
validUntil. Kraken's errors are strings in an `error` list, not numeric codes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import ccxt

from keyguard.errors import ExchangeError
from keyguard.exchanges.base import CcxtAdapter, KeyDeclaration, record_permissions, record_reported_ips
from keyguard.exchanges.errors import ClockSkew, ExchangeRejected, InvalidKey, IPRefused, MalformedResponse
from keyguard.exchanges.keystate import KeyState, from_ms, permissions_from_flags

# GetApiKeyInfo needs no permission, so "Permission denied" there can only be the key's IP allowlist.
ERRORS: dict[str, type[ExchangeRejected]] = {
    "EAPI:Invalid key": InvalidKey,
    "EAPI:Invalid signature": InvalidKey,
    "EAPI:Invalid nonce": ClockSkew,
    "EGeneral:Permission denied": IPRefused,
}


class KrakenAdapter(CcxtAdapter):
    exchange_id = "kraken"
    probe_endpoint = ("POST", "/0/private/GetApiKeyInfo")

    def translate(self, exc: ccxt.BaseError, status: int, headers: Mapping[str, str], what: str,
                  timeout_ms: int | None = None) -> ExchangeError:
        text = str(exc)
        for marker, error in ERRORS.items():
            if marker in text:
                return error(status, None, marker, context=f"kraken {what}")
        return super().translate(exc, status, headers, what, timeout_ms)

    def server_time_ms(self) -> int:
        return self.public_time_ms("/0/public/Time", self.host_client.public_get_time,
                                   lambda body: int(body["result"]["unixtime"]) * 1000, "result.unixtime")

    def server_time_offset_ms(self) -> int | None:
        # Kraken's clock has one-second resolution: an offset under a second is not measurable.
        offset = super().server_time_offset_ms()
        return 0 if offset is not None and -1000 < offset < 1000 else offset

    def probe_call(self, client: ccxt.Exchange) -> dict[str, Any]:
        return self.call(client, *self.probe_endpoint, client.private_post_getapikeyinfo)

    def read_key(self, state: KeyState, declared: KeyDeclaration) -> None:
        body = self.probe_call(self.host_client)
        try:
            result = body["result"]
            granted = {str(p) for p in result["permissions"]}
            ips = [str(ip) for ip in result["ipAllowlist"]]
        except (KeyError, TypeError):
            raise MalformedResponse("kraken POST /0/private/GetApiKeyInfo: no result.permissions / ipAllowlist"
                                    ) from None
        flags = {name: True for name in sorted(granted)}
        record_permissions(state, flags, permissions_from_flags("kraken", flags))
        record_reported_ips(state, declared, ips)
        state.created_at = from_ms(int(result.get("createdTime") or 0) * 1000)
        state.expires_at = from_ms(int(result.get("validUntil") or 0) * 1000)
        state.sources["created_at"] = "reported"
