"""OKX and Bybit adapters against the sandbox's introspection endpoints, each with its own signing scheme."""

from __future__ import annotations

from keyguard.exchanges import DeclaredIp, KeyDeclaration
from keyguard.sandbox import SandboxHandle

from .conftest import AdapterFactory


def _declare(exchange: str, purpose: str = "execution", ips: list[DeclaredIp] | None = None) -> KeyDeclaration:
    return KeyDeclaration(id=f"{exchange}-bot", exchange=exchange, purpose=purpose, services=["worker"],
                          allowed_ips=ips or [])


def test_okx_reports_perm_list_and_ip_list_with_declared_reasons(
    sandbox: SandboxHandle, adapter: AdapterFactory
) -> None:
    key = sandbox.create_key(exchange="okx", flags={"enableSpotAndMarginTrading": True}, ip_restrict=True,
                             ips=["127.0.0.1"])
    declared = _declare("okx", ips=[DeclaredIp(value="127.0.0.1", reason="exec-1 static EIP")])
    doc = adapter(key, exchange="okx").inspect(declared).to_policy_input()
    # OKX's trade permission also moves funds between the account's own wallets.
    assert doc["permissions"] == {"read": True, "trade": True, "transfer": True, "withdraw": False}
    assert doc["raw_flags"] == {"read_only": True, "trade": True, "withdraw": False}
    assert doc["ip_restricted"] is True
    assert doc["allowed_ips"] == [{"value": "127.0.0.1", "reason": "exec-1 static EIP", "source": "reported"}]
    assert doc["ip_binding_source"] == "reported"
    assert doc["inspection_error"] is None


def test_okx_key_without_ips_is_unrestricted_and_withdraw_is_reported(
    sandbox: SandboxHandle, adapter: AdapterFactory
) -> None:
    key = sandbox.create_key(exchange="okx", flags={"enableWithdrawals": True})
    doc = adapter(key, exchange="okx").inspect(_declare("okx")).to_policy_input()
    assert doc["permissions"]["withdraw"] is True
    assert doc["ip_restricted"] is False and doc["allowed_ips"] == []


def test_okx_wrong_passphrase_and_wrong_source_address_are_typed(
    sandbox: SandboxHandle, adapter: AdapterFactory
) -> None:
    key = sandbox.create_key(exchange="okx", ip_restrict=True, ips=["127.0.0.2"])
    wrong_pass = adapter(key, exchange="okx", source_ip="127.0.0.2", passphrase="not-the-passphrase")
    assert wrong_pass.inspect(_declare("okx")).error_kind == "InvalidKey"
    refused = adapter(key, exchange="okx", source_ip="127.0.0.1").inspect(_declare("okx"))
    assert refused.error_kind == "IPRefused" and "50110" in (refused.inspection_error or "")


def test_okx_probe_verifies_the_binding(sandbox: SandboxHandle, adapter: AdapterFactory) -> None:
    key = sandbox.create_key(exchange="okx", ip_restrict=True, ips=["127.0.0.1"])
    state = adapter(key, exchange="okx").inspect(_declare("okx"), probe_from="127.0.0.2")
    assert state.probe is not None and state.probe.outcome == "bound"
    assert state.ip_binding_source == "probed"


def test_bybit_reports_wallet_permissions_ips_and_times(sandbox: SandboxHandle, adapter: AdapterFactory) -> None:
    key = sandbox.create_key(exchange="bybit", flags={"enableSpotAndMarginTrading": True, "enableWithdrawals": True},
                             ip_restrict=True, ips=["127.0.0.1"], create_time_ms=1_760_000_000_000)
    doc = adapter(key, exchange="bybit").inspect(_declare("bybit")).to_policy_input()
    assert doc["permissions"] == {"read": True, "trade": True, "transfer": False, "withdraw": True}
    assert doc["raw_flags"]["Withdraw"] is True and doc["raw_flags"]["Spot"] is True
    assert doc["allowed_ips"] == [{"value": "127.0.0.1", "reason": "", "source": "reported"}]
    assert doc["created_at"] == "2025-10-09T08:53:20Z"


def test_bybit_read_only_key_without_ip_reports_wildcard_as_unrestricted_with_expiry(
    sandbox: SandboxHandle, adapter: AdapterFactory
) -> None:
    key = sandbox.create_key(exchange="bybit", expire_time_ms=1_790_000_000_000)
    doc = adapter(key, exchange="bybit").inspect(_declare("bybit", purpose="monitoring")).to_policy_input()
    assert doc["permissions"] == {"read": True, "trade": False, "transfer": False, "withdraw": False}
    assert doc["raw_flags"]["readOnly"] is True
    assert doc["ip_restricted"] is False and doc["ip_binding_source"] == "unknown"
    assert doc["expires_at"] == "2026-09-21T14:13:20Z"


def test_bybit_wrong_secret_and_wrong_address_are_typed(sandbox: SandboxHandle, adapter: AdapterFactory) -> None:
    key = sandbox.create_key(exchange="bybit", ip_restrict=True, ips=["127.0.0.1"])
    assert adapter(key, exchange="bybit", secret="x" * 36).inspect(_declare("bybit")).error_kind == "InvalidKey"
    assert adapter(key, exchange="bybit", source_ip="127.0.0.3").inspect(_declare("bybit")).error_kind == "IPRefused"
    probe = adapter(key, exchange="bybit").probe_ip("127.0.0.2")
    assert probe.outcome == "bound"


def test_bybit_timeout_is_unknown(sandbox: SandboxHandle, adapter: AdapterFactory) -> None:
    key = sandbox.create_key(exchange="bybit")
    sandbox.set_faults({"endpoint": "GET /bybit/v5/user/query-api", "kind": "drop", "hold_s": 5})
    state = adapter(key, exchange="bybit", timeout_ms=400).inspect(_declare("bybit"))
    assert state.error_kind == "ExchangeTimeout" and state.to_policy_input()["permissions"] is None


def test_okx_creation_time_comes_from_the_declaration_and_says_so(
    sandbox: SandboxHandle, adapter: AdapterFactory
) -> None:
    from datetime import UTC, datetime

    key = sandbox.create_key(exchange="okx", ip_restrict=True, ips=["127.0.0.1"])
    declared = _declare("okx").model_copy(update={"created_at": datetime(2026, 11, 1, tzinfo=UTC)})
    state = adapter(key, exchange="okx").inspect(declared)
    assert state.to_policy_input()["created_at"] == "2026-11-01T00:00:00Z"
    assert state.sources["created_at"] == "declared"
