"""Gate adapter against the sandbox: the key finds itself among its main account's masked keys."""

from __future__ import annotations

from keyguard.exchanges import KeyDeclaration
from keyguard.exchanges.gate import fits_mask
from keyguard.sandbox import SandboxHandle

from .conftest import AdapterFactory

DECLARED = KeyDeclaration(id="gate-bot", exchange="gate", purpose="execution")


def test_gate_key_reads_its_own_entry_among_the_accounts_keys(sandbox: SandboxHandle, adapter: AdapterFactory) -> None:
    sandbox.create_key(exchange="gate", flags={"enableWithdrawals": True})  # a sibling key of the same account
    mine = sandbox.create_key(exchange="gate", flags={"enableSpotAndMarginTrading": True}, ip_restrict=True,
                              ips=["127.0.0.1"], create_time_ms=1_760_000_000_000)
    doc = adapter(mine, exchange="gate").inspect(DECLARED).to_policy_input()
    assert doc["permissions"] == {"read": True, "trade": True, "transfer": False, "withdraw": False}
    assert doc["allowed_ips"] == [{"value": "127.0.0.1", "reason": "", "source": "reported"}]
    assert doc["created_at"] == "2025-10-09T08:53:20Z"


def test_gate_refusals_are_typed_and_the_probe_verifies_the_binding(
    sandbox: SandboxHandle, adapter: AdapterFactory
) -> None:
    key = sandbox.create_key(exchange="gate", ip_restrict=True, ips=["127.0.0.1"])
    assert adapter(key, exchange="gate", secret="0" * 64).inspect(DECLARED).error_kind == "InvalidKey"
    assert adapter(key, exchange="gate", source_ip="127.0.0.2").inspect(DECLARED).error_kind == "IPRefused"
    assert adapter(key, exchange="gate").probe_ip("127.0.0.2").outcome == "bound"


def test_mask_matching_needs_same_length_head_and_tail() -> None:
    assert fits_mask("abcd****wxyz", "abcd1234wxyz")
    assert not fits_mask("abcd****wxyz", "abcd12345wxyz")
    assert not fits_mask("abcd****wxyz", "abce1234wxyz")
