"""What the exchange really reports, through the real rule set: the live half of Keyguard end to end."""

from __future__ import annotations

from keyguard.exchanges import DeclaredIp, KeyDeclaration, KeyState, Storage
from keyguard.exchanges.inventory import Host, keys_document
from keyguard.policy import Finding, PolicyEngine
from keyguard.sandbox import SandboxHandle

from .conftest import AdapterFactory

BOT = KeyDeclaration(id="bot-exec-1", exchange="binance", purpose="execution", services=["worker"],
                     allowed_ips=[DeclaredIp(value="127.0.0.1", reason="exec-1 static EIP")],
                     storage=Storage(backend="aws_secretsmanager", kms="customer_managed"))
HOSTS = [Host(name="exec-1", ip="127.0.0.1")]


def _findings(engine: PolicyEngine, state: KeyState) -> list[Finding]:
    return engine.evaluate(keys_document([state], HOSTS))


def test_a_compliant_bot_key_bound_and_probed_has_no_findings(
    sandbox: SandboxHandle, adapter: AdapterFactory, policy_engine: PolicyEngine
) -> None:
    key = sandbox.create_key(flags={"enableSpotAndMarginTrading": True}, ip_restrict=True, ips=["127.0.0.1"])
    state = adapter(key).inspect(BOT, probe_from="127.0.0.2")
    assert _findings(policy_engine, state) == []


def test_withdraw_enabled_at_the_exchange_is_critical_even_if_declared_otherwise(
    sandbox: SandboxHandle, adapter: AdapterFactory, policy_engine: PolicyEngine
) -> None:
    key = sandbox.create_key(flags={"enableSpotAndMarginTrading": True, "enableWithdrawals": True},
                             ip_restrict=True, ips=["127.0.0.1"])
    state = adapter(key).inspect(BOT, probe_from="127.0.0.2")
    assert {(f.id, f.severity) for f in _findings(policy_engine, state)} == {("KG-KEY-101", "critical")}


def test_an_exchange_that_times_out_leaves_findings_not_silence(
    sandbox: SandboxHandle, adapter: AdapterFactory, policy_engine: PolicyEngine
) -> None:
    key = sandbox.create_key(flags={"enableSpotAndMarginTrading": True}, ip_restrict=True, ips=["127.0.0.1"])
    sandbox.set_faults({"endpoint": "GET /sapi/v1/account/apiRestrictions", "kind": "drop", "hold_s": 5})
    state = adapter(key, timeout_ms=400).inspect(BOT, probe_from="127.0.0.2")
    ids = {f.id for f in _findings(policy_engine, state)}
    # Permissions unknown, and not IP-restricted as far as anyone can tell.
    assert {"KG-KEY-106", "KG-IP-101"} <= ids


def test_host_clock_drift_beyond_the_recv_window_is_a_finding(
    sandbox: SandboxHandle, adapter: AdapterFactory, policy_engine: PolicyEngine
) -> None:
    key = sandbox.create_key(flags={"enableSpotAndMarginTrading": True}, ip_restrict=True, ips=["127.0.0.1"])
    sandbox.exchange.set_skew(30_000)
    state = adapter(key).inspect(BOT)
    # Signed calls fail on -1021, and the measured offset says why.
    assert state.error_kind == "ClockSkew"
    assert state.server_time_offset_ms is not None and state.server_time_offset_ms < -25_000
    assert "KG-ROT-106" in {f.id for f in _findings(policy_engine, state)}
