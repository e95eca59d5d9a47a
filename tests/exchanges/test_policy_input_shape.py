"""Every adapter's KeyState, inspected or failed, is a valid `keys` policy input (schemas/)."""

from __future__ import annotations

import pytest

from keyguard.exchanges import ADAPTERS, DeclaredIp, KeyDeclaration, Storage
from keyguard.exchanges.inventory import Host, keys_document
from keyguard.policy import validate_document
from keyguard.sandbox import SandboxHandle

from .conftest import AdapterFactory


@pytest.mark.parametrize("exchange", sorted(ADAPTERS))
def test_inspected_and_failed_states_match_the_keys_schema(
    sandbox: SandboxHandle, adapter: AdapterFactory, exchange: str
) -> None:
    good = sandbox.create_key(exchange=exchange, flags={"enableSpotAndMarginTrading": True}, ip_restrict=True,
                              ips=["127.0.0.1"])
    refused = sandbox.create_key(exchange=exchange, ip_restrict=True, ips=["127.0.0.9"])
    declared = KeyDeclaration(id=f"{exchange}-1", exchange=exchange, purpose="execution", services=["worker"],
                              allowed_ips=[DeclaredIp(value="127.0.0.1", reason="exec-1")],
                              storage=Storage(backend="env", kms="none", host_locked=True))
    states = [adapter(good, exchange=exchange).inspect(declared, probe_from="127.0.0.2"),
              adapter(refused, exchange=exchange).inspect(declared)]
    assert states[0].inspection_error is None and states[1].inspection_error is not None
    document = keys_document(states, [Host(name="exec-1", ip="127.0.0.1")])
    assert validate_document(document) == "keys"
