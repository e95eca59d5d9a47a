"""BloFin adapter against the sandbox: readOnly is all it reports, so a read-write key's writes stay unknown
unless declared; IP list and typed refusals."""

from __future__ import annotations

from keyguard.exchanges import KeyDeclaration, Permissions
from keyguard.sandbox import SandboxHandle

from .conftest import AdapterFactory

DECLARED = KeyDeclaration(id="bf-bot", exchange="blofin", purpose="execution")


def test_blofin_read_only_key_is_fully_known(sandbox: SandboxHandle, adapter: AdapterFactory) -> None:
    key = sandbox.create_key(exchange="blofin", ip_restrict=True, ips=["127.0.0.1"])
    doc = adapter(key, exchange="blofin").inspect(DECLARED).to_policy_input()
    assert doc["permissions"] == {"read": True, "trade": False, "transfer": False, "withdraw": False}
    assert doc["allowed_ips"] == [{"value": "127.0.0.1", "reason": "", "source": "reported"}]
    assert doc["server_time_offset_ms"] is None  # BloFin has no time endpoint: not measured, not guessed


def test_blofin_read_write_key_leaves_writes_unknown_unless_declared(
    sandbox: SandboxHandle, adapter: AdapterFactory
) -> None:
    key = sandbox.create_key(exchange="blofin", flags={"enableSpotAndMarginTrading": True})
    unknown = adapter(key, exchange="blofin").inspect(DECLARED).to_policy_input()
    assert unknown["permissions"] == {"read": True, "trade": None, "transfer": None, "withdraw": None}
    declared = DECLARED.model_copy(update={"permissions": Permissions(trade=True, transfer=False, withdraw=False)})
    doc = adapter(key, exchange="blofin").inspect(declared).to_policy_input()
    assert doc["permissions"] == {"read": True, "trade": True, "transfer": False, "withdraw": False}
    assert doc["permissions_source"] == "declared"


def test_blofin_refusals_are_typed(sandbox: SandboxHandle, adapter: AdapterFactory) -> None:
    key = sandbox.create_key(exchange="blofin", ip_restrict=True, ips=["127.0.0.1"])
    assert adapter(key, exchange="blofin", passphrase="wrong").inspect(DECLARED).error_kind == "InvalidKey"
    assert adapter(key, exchange="blofin", source_ip="127.0.0.2").inspect(DECLARED).error_kind == "IPRefused"
    assert adapter(key, exchange="blofin").probe_ip("127.0.0.2").outcome == "bound"
