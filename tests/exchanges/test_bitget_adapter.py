"""Bitget adapter against the sandbox: authority codes, IP list, passphrase and typed refusals."""

from __future__ import annotations

from keyguard.exchanges import KeyDeclaration
from keyguard.sandbox import SandboxHandle

from .conftest import AdapterFactory

DECLARED = KeyDeclaration(id="bg-bot", exchange="bitget", purpose="execution")


def test_bitget_authority_codes_normalise_to_risk_classes(sandbox: SandboxHandle, adapter: AdapterFactory) -> None:
    key = sandbox.create_key(exchange="bitget", flags={"enableSpotAndMarginTrading": True,
                                                       "permitsUniversalTransfer": True},
                             ip_restrict=True, ips=["127.0.0.1"])
    doc = adapter(key, exchange="bitget").inspect(DECLARED).to_policy_input()
    assert doc["permissions"] == {"read": True, "trade": True, "transfer": True, "withdraw": False}
    assert doc["raw_flags"]["wtow"] is True and "wwow" not in doc["raw_flags"]
    assert doc["allowed_ips"] == [{"value": "127.0.0.1", "reason": "", "source": "reported"}]


def test_bitget_refusals_are_typed_and_the_probe_verifies_the_binding(
    sandbox: SandboxHandle, adapter: AdapterFactory
) -> None:
    key = sandbox.create_key(exchange="bitget", flags={"enableWithdrawals": True}, ip_restrict=True,
                             ips=["127.0.0.1"])
    assert adapter(key, exchange="bitget", passphrase="wrong").inspect(DECLARED).error_kind == "InvalidKey"
    refused = adapter(key, exchange="bitget", source_ip="127.0.0.2").inspect(DECLARED)
    assert refused.error_kind == "IPRefused" and "40018" in (refused.inspection_error or "")
    state = adapter(key, exchange="bitget").inspect(DECLARED, probe_from="127.0.0.2")
    assert state.permissions is not None and state.permissions.withdraw is True
    assert state.probe is not None and state.probe.outcome == "bound"
