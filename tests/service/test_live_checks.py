"""The live keys check as the people on call meet it: a real sandbox exchange misbehaving, the real service over
HTTP, real OPA, alerts at a local receiver. Unknown never resolves; the host's rate budget is shared and never
walked into a ban; a black-holed exchange cannot hold a cycle past its deadline."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.sandbox import fixtures
from tests.servers import AlertReceiver
from tests.service.live import delivered_titles, make_inventory

from keyguard.config import load_settings
from keyguard.exchanges.budget import RATE_BANNED, RateLimitRefused, SharedRateLimiter
from keyguard.exchanges.budget_store import default_budget_path, open_budget_store
from keyguard.runtime import RunningService, build_collectors, run_service
from keyguard.sandbox import SandboxConfig, SandboxHandle

sandbox_config = fixtures.sandbox_config
sandbox = fixtures.sandbox

TOKEN = "test-token-0123456789abcdef"


def start(tmp_path: Path, inventory: Path, receiver: AlertReceiver | None, **checks: Any) -> Any:
    settings = load_settings(
        store={"url": f"sqlite:///{tmp_path}/kg.db"}, service={"port": 0},
        checks={"interval_s": 3600, **checks}, inventory=str(inventory),
        alerts={"routes": [{"url": receiver.url}] if receiver else []},
    )
    return run_service(settings, build_collectors(settings), TOKEN)


def api(running: RunningService, method: str, path: str) -> Any:
    response = httpx.request(method, running.url + path, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def titles(running: RunningService, receiver: AlertReceiver) -> list[str]:
    return delivered_titles(running.url, TOKEN, receiver)


def open_ids(running: RunningService) -> set[tuple[str, str]]:
    return {(f["rule_id"], f["resource"]) for f in api(running, "GET", "/api/findings")}


@pytest.fixture
def five_keys(tmp_path: Path, sandbox: SandboxHandle) -> Path:
    """Five bot keys; bot-2 can withdraw (KG-KEY-101 stays open throughout)."""
    path, _ = make_inventory(tmp_path, sandbox, 5, withdraw={2})
    return path


def test_an_exchange_outage_never_resolves_a_dangerous_key_and_pages_once(
    tmp_path: Path, sandbox: SandboxHandle, five_keys: Path, alert_receiver: AlertReceiver
) -> None:
    with start(tmp_path, five_keys, alert_receiver) as running:
        assert ("KG-KEY-101", "binance/bot-2") in open_ids(running)
        # The withdraw-capable key is contained at once; that page belongs before the outage, not in it.
        deadline = time.monotonic() + 30
        while not any("KG-KEY-101 on binance/bot-2 (incident" in t for t in titles(running, alert_receiver)):
            assert time.monotonic() < deadline, "the containment of bot-2 was never reported"
            time.sleep(0.1)
        before = len(titles(running, alert_receiver))
        assert httpx.get(running.url + "/health").json()["status"] == "ok"

        sandbox.set_faults({"endpoint": "*", "kind": "status", "status": 503})
        for _ in range(2):  # a 503 run spanning two cycles
            [result] = api(running, "POST", "/api/checks/run")
            assert result["ok"] and result["unverified"] == 5
        outage = titles(running, alert_receiver)[before:]
        assert outage == ["NEW HIGH KG-SVC-002 on exchange:binance"]  # one page for the exchange, none per key
        still_open = open_ids(running)
        assert ("KG-KEY-101", "binance/bot-2") in still_open  # the key that can withdraw is not "resolved"
        assert {("KG-KEY-106", f"binance/bot-{i}") for i in range(5)} <= still_open  # each key says unverified
        health = api(running, "GET", "/health")  # the detail needs a token
        assert health["status"] == "degraded"
        assert [p["rule_id"] for p in health["problems"]] == ["KG-SVC-002"]
        observed = api(running, "GET", "/api/observations?scope=keys")
        assert len(observed) == 5 and all(o["unverified"] and "ExchangeUnavailable" in o["last_error"]
                                          for o in observed)

        sandbox.set_faults()
        api(running, "POST", "/api/checks/run")
        assert ("KG-KEY-106", "binance/bot-0") in open_ids(running)  # one clean look is not yet resolution
        api(running, "POST", "/api/checks/run")
        after = titles(running, alert_receiver)[before + 1:]
        # The outage resolves; the per-key "unverified" findings were never paged, so their end is not paged
        # either; the dangerous key was never resolved, so it never "regresses".
        assert after == ["RESOLVED HIGH KG-SVC-002 on exchange:binance"]
        assert ("KG-KEY-101", "binance/bot-2") in open_ids(running)
        # Paged once (and contained at once: a bot key that can withdraw is contained by default, however far the
        # outage let that go), never resolved, so never regressed either.
        assert not any(t for t in titles(running, alert_receiver)
                       if "KG-KEY-101" in t and t.startswith(("RESOLVED", "REGRESSED")))
        assert [t for t in titles(running, alert_receiver) if t.startswith("NEW CRITICAL KG-KEY-101")] == [
            "NEW CRITICAL KG-KEY-101 on binance/bot-2"]
        assert httpx.get(running.url + "/health").json()["status"] == "ok"
        assert all(o["unverified"] is False and o["age_s"] is not None
                   for o in api(running, "GET", "/api/observations?scope=keys"))


def test_a_503_burst_on_the_schedule_pages_the_outage_once_and_resolves_nothing(
    tmp_path: Path, sandbox: SandboxHandle, five_keys: Path, alert_receiver: AlertReceiver
) -> None:
    """The reported scenario: 3 s of 503s, five keys, the check every 2 s on its own schedule."""
    with start(tmp_path, five_keys, alert_receiver, interval_s=2) as running:
        time.sleep(1)
        sandbox.set_faults({"endpoint": "*", "kind": "status", "status": 503})
        time.sleep(3)
        sandbox.set_faults()
        time.sleep(7)  # enough cycles for the outage to clear (two clean observations)
        got = titles(running, alert_receiver)
    assert "NEW CRITICAL KG-KEY-101 on binance/bot-2" in got
    assert [t for t in got if "KG-SVC-002" in t] == ["NEW HIGH KG-SVC-002 on exchange:binance",
                                                     "RESOLVED HIGH KG-SVC-002 on exchange:binance"]
    assert not [t for t in got if t.startswith(("RESOLVED", "REGRESSED")) and "KG-SVC-002" not in t]


def test_a_key_refused_by_the_exchange_is_paged_on_its_own(
    tmp_path: Path, sandbox: SandboxHandle, alert_receiver: AlertReceiver
) -> None:
    """A revoked key is about that key, not the exchange: it gets its own page, not an outage."""
    inventory, created = make_inventory(tmp_path, sandbox, 3)
    with start(tmp_path, inventory, alert_receiver) as running:
        with sandbox.admin() as admin:
            admin.delete(f"/keys/{created[1]['api_key']}").raise_for_status()
        api(running, "POST", "/api/checks/run")
        assert [t for t in titles(running, alert_receiver) if "KG-SVC" in t or "KG-KEY-106" in t] == [
            "NEW HIGH KG-KEY-106 on binance/bot-1"]


@pytest.mark.parametrize("sandbox_config", [SandboxConfig(sapi_weight_limit=40, align_windows_to_start=True)])
def test_a_429_mid_cycle_stops_every_request_from_the_ip_and_earns_no_ban(
    tmp_path: Path, sandbox: SandboxHandle, alert_receiver: AlertReceiver
) -> None:
    """The exchange's SAPI limit is lower than the host believes: the first 429 stops the whole IP, for the
    service and the execution worker alike, and nothing walks on into a 418."""
    inventory, _ = make_inventory(tmp_path, sandbox, 80, probe=False)
    # The back-off (until the exchange's window rolls, up to a minute) outlasts this run's deadline.
    with start(tmp_path, inventory, alert_receiver, deadline_s=5) as running:
        [result] = api(running, "GET", "/api/checks")[:1]
        assert result["ok"]
        observed = api(running, "GET", "/api/observations?scope=keys")
        unverified = [o for o in observed if o["unverified"]]
        assert 0 < len(unverified) < 80
        assert any("RateLimited" in o["last_error"] for o in unverified)  # the exchange's own 429
        assert any("RATE_BANNED" in o["last_error"] for o in unverified)  # the rest never sent
        assert "NEW HIGH KG-SVC-002 on exchange:binance" in titles(running, alert_receiver)
        standing = sandbox.exchange.bans.standing("127.0.0.1")
        assert standing.refusals > 0 and standing.bans == 0  # a 429, and no 418 ever
        # The execution worker on this host shares the budget: it is held by the same back-off.
        worker = SharedRateLimiter(open_budget_store("file", default_budget_path("127.0.0.1", "file")),
                                   egress_ip="127.0.0.1")
        with pytest.raises(RateLimitRefused) as refused:
            worker.acquire("GET", "/sapi/v1/account/apiRestrictions", deadline_s=0.1)
        assert refused.value.code == RATE_BANNED
        # A second cycle during the back-off sends nothing at all, so still no ban.
        api(running, "POST", "/api/checks/run")
        assert sandbox.exchange.bans.standing("127.0.0.1").bans == 0


def test_a_black_holed_exchange_ends_the_cycle_at_its_deadline_with_keys_unverified(
    tmp_path: Path, sandbox: SandboxHandle, alert_receiver: AlertReceiver
) -> None:
    inventory, _ = make_inventory(tmp_path, sandbox, 12)
    with start(tmp_path, inventory, alert_receiver, deadline_s=2, request_timeout_s=20, concurrency=4) as running:
        sandbox.set_faults({"endpoint": "*", "kind": "drop", "hold_s": 60})
        [result] = api(running, "POST", "/api/checks/run")
        [run] = api(running, "GET", "/api/checks?limit=1")
        assert result["ok"] and result["unverified"] == 12
        observed = api(running, "GET", "/api/observations?scope=keys")
        errors = {o["last_error"].split(":")[0] for o in observed}
        assert errors <= {"ExchangeTimeout", "DeadlineExceeded"} and "DeadlineExceeded" in errors
        health = api(running, "GET", "/health")
        assert health["status"] == "degraded" and health["problems"][0]["rule_id"] == "KG-SVC-002"
    started, finished = (time.mktime(time.strptime(run[k][:19], "%Y-%m-%dT%H:%M:%S")) for k in ("started_at",
                                                                                                  "finished_at"))
    # Without the deadline the 12 keys would wait out 20 s timeouts, three rounds of four.
    assert finished - started < 20


def test_start_up_runs_each_check_once(tmp_path: Path, sandbox: SandboxHandle, five_keys: Path) -> None:
    with start(tmp_path, five_keys, None, interval_s=30) as running:
        time.sleep(1.5)  # the schedule's first polls: nothing is due until the interval has passed
        runs = api(running, "GET", "/api/checks")
    assert [r["scope"] for r in runs] == ["keys"]

