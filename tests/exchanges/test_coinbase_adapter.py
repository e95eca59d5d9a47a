"""Coinbase adapter against the sandbox: ES256 JWT per request, permission booleans, binding known only by probe."""

from __future__ import annotations

from keyguard.exchanges import KeyDeclaration
from keyguard.sandbox import SandboxHandle

from .conftest import AdapterFactory

DECLARED = KeyDeclaration(id="cb-bot", exchange="coinbase", purpose="execution")


def test_coinbase_transfer_permission_counts_as_withdraw(sandbox: SandboxHandle, adapter: AdapterFactory) -> None:
    key = sandbox.create_key(exchange="coinbase", flags={"enableSpotAndMarginTrading": True,
                                                         "enableWithdrawals": True})
    doc = adapter(key, exchange="coinbase").inspect(DECLARED).to_policy_input()
    assert doc["permissions"] == {"read": True, "trade": True, "transfer": True, "withdraw": True}
    assert doc["raw_flags"] == {"can_view": True, "can_trade": True, "can_transfer": True}
    # Coinbase reports nothing about IPs: without a probe the binding is unknown, never assumed.
    assert doc["ip_restricted"] is None and doc["ip_binding_source"] == "unknown"


def test_coinbase_binding_is_established_by_the_probe(sandbox: SandboxHandle, adapter: AdapterFactory) -> None:
    key = sandbox.create_key(exchange="coinbase", ip_restrict=True, ips=["127.0.0.1"])
    state = adapter(key, exchange="coinbase").inspect(DECLARED, probe_from="127.0.0.2")
    assert state.probe is not None and state.probe.outcome == "bound"
    doc = state.to_policy_input()
    assert doc["ip_restricted"] is True and doc["ip_binding_source"] == "probed"
    assert state.sources["ip_restricted"] == "probed"


def test_coinbase_jwt_signed_with_another_key_is_refused(sandbox: SandboxHandle, adapter: AdapterFactory) -> None:
    key = sandbox.create_key(exchange="coinbase")
    impostor = sandbox.create_key(exchange="coinbase")
    state = adapter(key, exchange="coinbase", secret=impostor["secret"]).inspect(DECLARED)
    assert state.error_kind == "AmbiguousRefusal" and state.permissions is None
