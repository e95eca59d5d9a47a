"""The Binance adapter: what a key can do, its IP binding verified by probe, and unknown (never safe) on failure."""

from __future__ import annotations

import pytest

from keyguard.exchanges import (
    AmbiguousRefusal,
    Banned,
    IPRefused,
    KeyDeclaration,
    RateLimited,
    RateLimitRefused,
)
from keyguard.exchanges.budget import RATE_BANNED
from keyguard.sandbox import SandboxConfig, SandboxHandle

from .conftest import AdapterFactory

BOT = KeyDeclaration(id="bot-exec-1", exchange="binance", purpose="execution", services=["worker"])


def test_inspection_reports_normalised_permissions_raw_flags_and_create_time(
    sandbox: SandboxHandle, adapter: AdapterFactory
) -> None:
    key = sandbox.create_key(flags={"enableSpotAndMarginTrading": True, "permitsUniversalTransfer": True},
                             ip_restrict=True, ips=["127.0.0.1"], create_time_ms=1_760_000_000_000)
    state = adapter(key).inspect(BOT)
    assert state.inspection_error is None
    doc = state.to_policy_input()
    assert doc["permissions"] == {"read": True, "trade": True, "transfer": True, "withdraw": False}
    assert doc["permissions_source"] == "reported"
    assert doc["raw_flags"]["permitsUniversalTransfer"] is True
    assert doc["raw_flags"]["enableWithdrawals"] is False
    assert doc["ip_restricted"] is True
    assert doc["created_at"] == "2025-10-09T08:53:20Z"
    # Binance does not report the list, and nothing was declared or probed.
    assert doc["allowed_ips"] == [] and doc["ip_binding_source"] == "unknown"
    assert state.sources["permissions"] == "reported"


def test_probe_tells_a_key_bound_to_the_host_from_one_bound_elsewhere(
    sandbox: SandboxHandle, adapter: AdapterFactory
) -> None:
    on_host = sandbox.create_key(ip_restrict=True, ips=["127.0.0.1"])
    elsewhere = sandbox.create_key(ip_restrict=True, ips=["127.0.0.2"])

    bound = adapter(on_host, source_ip="127.0.0.1").probe_ip("127.0.0.2")
    assert bound.outcome == "bound"
    other = adapter(elsewhere, source_ip="127.0.0.1").probe_ip("127.0.0.2")
    assert other.outcome == "host_refused"

    state = adapter(on_host, source_ip="127.0.0.1").inspect(BOT, probe_from="127.0.0.2")
    assert state.ip_binding_source == "probed"
    assert [(ip.value, ip.source) for ip in state.allowed_ips] == [("127.0.0.1", "probed")]
    flagged = adapter(elsewhere, source_ip="127.0.0.1").inspect(BOT, probe_from="127.0.0.2")
    # From the host itself the key is refused: it cannot even be inspected, so it is unknown, not safe.
    assert flagged.permissions is None and flagged.error_kind == "AmbiguousRefusal"


def test_probe_flags_a_key_that_works_from_any_address(sandbox: SandboxHandle, adapter: AdapterFactory) -> None:
    key = sandbox.create_key(ip_restrict=True, ips=["127.0.0.1", "127.0.0.2"])
    state = adapter(key).inspect(BOT, probe_from="127.0.0.2")
    assert state.probe is not None and state.probe.outcome == "unbound"
    assert state.ip_binding_source == "flagged"


def test_probe_reports_unknown_not_bound_when_the_second_call_times_out(
    sandbox: SandboxHandle, adapter: AdapterFactory
) -> None:
    key = sandbox.create_key(ip_restrict=True, ips=["127.0.0.1"])
    sandbox.set_faults({"endpoint": "GET /sapi/v1/account/apiRestrictions", "kind": "drop", "client_ip": "127.0.0.2",
                        "hold_s": 5})
    state = adapter(key, timeout_ms=500).inspect(BOT, probe_from="127.0.0.2")
    assert state.probe is not None and state.probe.outcome == "unknown"
    assert "ExchangeTimeout" in state.probe.detail
    assert state.ip_binding_source == "unknown"
    assert state.to_policy_input()["ip_binding_source"] == "unknown"


def test_exchange_timeout_makes_the_key_unknown_never_safe(sandbox: SandboxHandle, adapter: AdapterFactory) -> None:
    key = sandbox.create_key(ip_restrict=True, ips=["127.0.0.1"])
    sandbox.set_faults({"endpoint": "GET /sapi/v1/account/apiRestrictions", "kind": "drop", "hold_s": 5})
    state = adapter(key, timeout_ms=500).inspect(BOT, probe_from="127.0.0.2")
    doc = state.to_policy_input()
    assert state.error_kind == "ExchangeTimeout"
    assert doc["permissions"] is None and doc["permissions_source"] == "unknown"
    assert doc["ip_restricted"] is None and doc["ip_binding_source"] == "unknown"
    assert "no answer within 500 ms" in doc["inspection_error"]


@pytest.mark.parametrize(("fault", "kind"), [
    ({"kind": "malformed"}, "MalformedResponse"),
    ({"kind": "status", "status": 503}, "ExchangeUnavailable"),
    ({"kind": "reset"}, "ExchangeUnavailable"),
])
def test_broken_answers_make_the_key_unknown_with_the_reason(
    sandbox: SandboxHandle, adapter: AdapterFactory, fault: dict, kind: str
) -> None:
    key = sandbox.create_key()
    sandbox.set_faults({"endpoint": "GET /sapi/v1/account/apiRestrictions", **fault})
    state = adapter(key).inspect(BOT)
    assert state.error_kind == kind
    assert state.permissions is None and state.inspection_error


def test_wrong_secret_and_unknown_key_are_invalid_key(sandbox: SandboxHandle, adapter: AdapterFactory) -> None:
    key = sandbox.create_key()
    assert adapter(key, secret="f" * 64).inspect(BOT).error_kind == "InvalidKey"
    assert adapter({"api_key": "short", "secret": "x" * 64}).inspect(BOT).error_kind == "InvalidKey"


def test_refusal_from_an_address_outside_the_allowlist_is_an_ip_refusal(
    sandbox: SandboxHandle, adapter: AdapterFactory
) -> None:
    key = sandbox.create_key(ip_restrict=True, ips=["127.0.0.2"])
    with pytest.raises(IPRefused) as caught:
        a = adapter(key, source_ip="127.0.0.1")
        a.probe_call(a.host_client)
    assert isinstance(caught.value, AmbiguousRefusal)
    assert "-2015" in str(caught.value)


def test_server_time_offset_follows_the_exchange_clock(sandbox: SandboxHandle, adapter: AdapterFactory) -> None:
    sandbox.exchange.set_skew(3000)
    state = adapter(sandbox.create_key()).inspect(BOT)
    # Local minus exchange: the exchange runs 3 s ahead, so the host is about 3 s behind.
    assert state.server_time_offset_ms is not None and -4000 < state.server_time_offset_ms < -2000


@pytest.mark.parametrize("sandbox_config", [SandboxConfig(weight_limit=2, ban_base_s=60, align_windows_to_start=True)])
def test_after_a_429_the_adapter_stops_sending_instead_of_walking_into_a_ban(
    sandbox: SandboxHandle, adapter: AdapterFactory
) -> None:
    a = adapter(sandbox.create_key())
    a.server_time_ms()
    a.server_time_ms()
    with pytest.raises(RateLimited) as first:
        a.server_time_ms()
    assert not isinstance(first.value, Banned) and first.value.retry_after is not None
    with pytest.raises(RateLimitRefused) as second:
        a.server_time_ms()
    # The second refusal came from the limiter: the exchange never saw it, so the IP was not banned.
    assert second.value.code == RATE_BANNED
    assert sandbox.exchange.bans.standing("127.0.0.1").bans == 0


def test_the_worker_limiter_plugs_in_and_is_charged_and_corrected_by_every_call(
    sandbox: SandboxHandle, adapter: AdapterFactory
) -> None:
    from keyguard.exchanges.budget import SharedRateLimiter
    from keyguard.exchanges.budget_store import InMemoryBudgetStore

    limiter = SharedRateLimiter(InMemoryBudgetStore(), egress_ip="127.0.0.1")
    state = adapter(sandbox.create_key(), limiter=limiter).inspect(BOT, probe_from="127.0.0.2")
    assert state.inspection_error is None
    # From the host: time (weight 1, spot pool) and apiRestrictions once (SAPI pool): the read already proved the
    # host is accepted, so the probe sends only its second half, from 127.0.0.2, on that address's budget.
    usage = limiter.usage()
    assert usage["binance:ip:127.0.0.1:REQUEST_WEIGHT:1M"]["used"] == 1
    assert usage["binance:ip:127.0.0.1:SAPI_IP_WEIGHT:1M"]["used"] == 1
    assert usage["binance:ip:127.0.0.1:RAW_REQUESTS:5M"]["used"] == 2
