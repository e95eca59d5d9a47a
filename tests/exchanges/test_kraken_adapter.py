"""Kraken adapter against the sandbox: permission strings, IP allowlist, HMAC-SHA512 signing, string errors."""

from __future__ import annotations

from keyguard.exchanges import DeclaredIp, KeyDeclaration
from keyguard.sandbox import SandboxHandle

from .conftest import AdapterFactory

DECLARED = KeyDeclaration(id="kr-bot", exchange="kraken", purpose="execution",
                          allowed_ips=[DeclaredIp(value="127.0.0.1", reason="exec-1 static EIP")])


def test_kraken_reports_permissions_allowlist_and_times(sandbox: SandboxHandle, adapter: AdapterFactory) -> None:
    key = sandbox.create_key(exchange="kraken", flags={"enableWithdrawals": True}, ip_restrict=True,
                             ips=["127.0.0.1"], create_time_ms=1_760_000_000_000, expire_time_ms=1_790_000_000_000)
    doc = adapter(key, exchange="kraken").inspect(DECLARED).to_policy_input()
    assert doc["permissions"] == {"read": True, "trade": False, "transfer": False, "withdraw": True}
    assert doc["raw_flags"]["withdraw-funds"] is True and "modify-trades" not in doc["raw_flags"]
    assert doc["allowed_ips"] == [{"value": "127.0.0.1", "reason": "exec-1 static EIP", "source": "reported"}]
    assert doc["created_at"] == "2025-10-09T08:53:20Z" and doc["expires_at"] == "2026-09-21T14:13:20Z"


def test_kraken_refusals_are_typed_and_the_probe_verifies_the_binding(
    sandbox: SandboxHandle, adapter: AdapterFactory
) -> None:
    key = sandbox.create_key(exchange="kraken", ip_restrict=True, ips=["127.0.0.1"])
    assert adapter(key, exchange="kraken", secret="c2VjcmV0").inspect(DECLARED).error_kind == "InvalidKey"
    assert adapter(key, exchange="kraken", source_ip="127.0.0.3").inspect(DECLARED).error_kind == "IPRefused"
    state = adapter(key, exchange="kraken").inspect(DECLARED, probe_from="127.0.0.2")
    assert state.probe is not None and state.probe.outcome == "bound"
    assert state.ip_binding_source == "probed"
