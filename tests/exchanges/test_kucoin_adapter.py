"""KuCoin adapter against the sandbox: permission list, IP whitelist, version-2 passphrase, typed refusals."""

from __future__ import annotations

from keyguard.exchanges import DeclaredIp, KeyDeclaration
from keyguard.sandbox import SandboxHandle

from .conftest import AdapterFactory

DECLARED = KeyDeclaration(id="kc-bot", exchange="kucoin", purpose="execution",
                          allowed_ips=[DeclaredIp(value="127.0.0.1", reason="exec-1 static EIP")])


def test_kucoin_reports_permission_list_whitelist_and_create_time(
    sandbox: SandboxHandle, adapter: AdapterFactory
) -> None:
    key = sandbox.create_key(exchange="kucoin", flags={"enableSpotAndMarginTrading": True,
                                                       "enableInternalTransfer": True},
                             ip_restrict=True, ips=["127.0.0.1"], create_time_ms=1_760_000_000_000)
    doc = adapter(key, exchange="kucoin").inspect(DECLARED).to_policy_input()
    assert doc["permissions"] == {"read": True, "trade": True, "transfer": True, "withdraw": False}
    assert doc["raw_flags"] == {"General": True, "InnerTransfer": True, "Spot": True}
    assert doc["allowed_ips"] == [{"value": "127.0.0.1", "reason": "exec-1 static EIP", "source": "reported"}]
    assert doc["created_at"] == "2025-10-09T08:53:20Z"


def test_kucoin_withdrawal_permission_is_withdraw(sandbox: SandboxHandle, adapter: AdapterFactory) -> None:
    key = sandbox.create_key(exchange="kucoin", flags={"enableWithdrawals": True})
    doc = adapter(key, exchange="kucoin").inspect(DECLARED).to_policy_input()
    assert doc["permissions"]["withdraw"] is True and doc["ip_restricted"] is False


def test_kucoin_wrong_passphrase_and_wrong_address_are_typed(sandbox: SandboxHandle, adapter: AdapterFactory) -> None:
    key = sandbox.create_key(exchange="kucoin", ip_restrict=True, ips=["127.0.0.1"])
    assert adapter(key, exchange="kucoin", passphrase="wrong-pass").inspect(DECLARED).error_kind == "InvalidKey"
    refused = adapter(key, exchange="kucoin", source_ip="127.0.0.2").inspect(DECLARED)
    assert refused.error_kind == "IPRefused" and refused.permissions is None
    assert adapter(key, exchange="kucoin").probe_ip("127.0.0.2").outcome == "bound"
