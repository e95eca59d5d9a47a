"""Alerts that always arrive, as the people on call meet them: the real service over HTTP, receivers on loopback
that go down, answer 500, answer late, and speak PagerDuty's and Opsgenie's APIs."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from apprise.plugins import opsgenie, pagerduty
from tests.servers import AlertReceiver
from tests.service.live import wait_for

from keyguard.config import load_settings
from keyguard.runtime import RunningService, document_collector, run_service

TOKEN = "test-token-0123456789abcdef"
VENDOR = {"name": "tradebot-cloud", "requires_withdraw": False, "supports_ip_restriction": True, "audit_log": True,
          "instant_revocation": True, "two_factor": True, "incidents_disclosed": True}


def write_vendor(path: Path, **facts: Any) -> None:
    path.write_text(yaml.safe_dump({"kind": "vendors", "vendors": [{**VENDOR, **facts}]}))


@pytest.fixture
def vendors(tmp_path: Path) -> Path:
    path = tmp_path / "vendors.yaml"
    write_vendor(path)
    return path


def serve(tmp_path: Path, vendors: Path, routes: list[dict[str, Any]], **alerts: Any) -> Any:
    settings = load_settings(store={"url": f"sqlite:///{tmp_path}/kg.db"}, service={"port": 0},
                             checks={"interval_s": 3600}, alerts={"routes": routes, **alerts})
    return run_service(settings, [document_collector(vendors)], TOKEN)


def api(running: RunningService, method: str, path: str) -> Any:
    response = httpx.request(method, running.url + path, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def titles(receiver: AlertReceiver) -> list[str]:
    return [m["title"].removeprefix("[keyguard] ") for m in receiver.received]


def test_a_long_channel_outage_loses_nothing_and_sends_each_alert_once_per_route(
    tmp_path: Path, vendors: Path
) -> None:
    """One route refuses connections and one answers 500, far longer than the old ten-attempt budget; when they
    come back every alert arrives, once per route."""
    with AlertReceiver() as refusing, AlertReceiver() as erroring:
        routes = [{"url": refusing.url, "name": "pager"}, {"url": erroring.url, "name": "chat"}]
        with serve(tmp_path, vendors, routes, backoff_base_s=0.05, backoff_cap_s=0.3) as running:
            refusing.down()
            erroring.fail_next = 10**6
            write_vendor(vendors, requires_withdraw=True)
            api(running, "POST", "/api/checks/run")
            write_vendor(vendors, requires_withdraw=True, two_factor=False)
            api(running, "POST", "/api/checks/run")
            # Far more attempts than the old budget of 10 per alert.
            wait_for(lambda: len(erroring.requests) >= 30)
            assert refusing.received == [] and erroring.received == []
            refusing.up()
            erroring.fail_next = 0
            expected = ["NEW CRITICAL KG-VEN-101 on vendor/tradebot-cloud",
                        "NEW HIGH KG-VEN-105 on vendor/tradebot-cloud"]
            for receiver in (refusing, erroring):
                wait_for(lambda r=receiver: len(r.received) >= 2)
            time.sleep(1)  # any duplicate would arrive now
            alerts = api(running, "GET", "/api/alerts")
    for receiver in (refusing, erroring):
        assert sorted(titles(receiver)) == expected
    assert all(a["delivered_at"] for a in alerts) and len(alerts) == 2
    for alert in alerts:  # the evidence of delivery: every route, how many tries it took
        assert {d["route"]: d["status"] for d in alert["routes"]} == {"pager": "delivered", "chat": "delivered"}
        assert all(d["attempts"] > 10 for d in alert["routes"])


def test_a_slow_route_holds_neither_the_checks_nor_the_healthy_route(tmp_path: Path, vendors: Path) -> None:
    with AlertReceiver() as slow, AlertReceiver() as fast:
        slow.delay_s = 6
        routes = [{"url": slow.url, "name": "slow"}, {"url": fast.url, "name": "fast"}]
        with serve(tmp_path, vendors, routes, read_timeout_s=20) as running:
            write_vendor(vendors, requires_withdraw=True)
            started = time.monotonic()
            api(running, "POST", "/api/checks/run")
            checked = time.monotonic() - started
            wait_for(lambda: fast.received)
            healthy_after = time.monotonic() - started
            slow_pending = not slow.received
    assert checked < slow.delay_s  # the check cycle never waited for delivery
    assert healthy_after < slow.delay_s and slow_pending  # the healthy route got it while the slow one hung


def test_an_alert_past_its_give_up_age_goes_to_the_fallback_and_degrades_health(
    tmp_path: Path, vendors: Path
) -> None:
    with AlertReceiver() as pager, AlertReceiver() as fallback:
        pager.down()
        routes = [{"url": pager.url, "name": "pager"}, {"url": fallback.url, "name": "phone", "fallback": True}]
        with serve(tmp_path, vendors, routes, give_up_s=1, backoff_base_s=0.1, backoff_cap_s=0.3) as running:
            write_vendor(vendors, requires_withdraw=True)
            api(running, "POST", "/api/checks/run")
            wait_for(lambda: "NEW CRITICAL KG-VEN-101 on vendor/tradebot-cloud" in titles(fallback))
            # ... and the fallback is told why: alerting itself is broken.
            wait_for(lambda: "NEW HIGH KG-SVC-003 on route:pager" in titles(fallback))
            assert httpx.get(running.url + "/health").json()["status"] == "degraded"
            undelivered = api(running, "GET", "/api/alerts?undelivered=true")
            [owed] = [a for a in undelivered if a["rule_id"] == "KG-VEN-101"]  # visible until the pager has it
            by_route = {d["route"]: d for d in owed["routes"]}
            assert by_route["pager"]["status"] == "pending" and by_route["pager"]["gave_up_at"]
            assert by_route["pager"]["attempts"] >= 2 and by_route["pager"]["last_error"]
            assert by_route["phone"]["status"] == "delivered" and by_route["phone"]["fallback_for"] == "pager"
            pager.up()
            wait_for(lambda: "NEW CRITICAL KG-VEN-101 on vendor/tradebot-cloud" in titles(pager))
            wait_for(lambda: httpx.get(running.url + "/health").json()["status"] == "ok", 30)
            wait_for(lambda: all(a["delivered_at"] for a in api(running, "GET", "/api/alerts")), 30)


@pytest.fixture
def pagerduty_api(monkeypatch: pytest.MonkeyPatch) -> Iterator[AlertReceiver]:
    """A PagerDuty Events v2 receiver on loopback: apprise's own plugin is used, only its endpoint moved."""
    with AlertReceiver() as receiver:
        for region in list(pagerduty.PAGERDUTY_API_LOOKUP):
            monkeypatch.setitem(pagerduty.PAGERDUTY_API_LOOKUP, region,
                                f"http://127.0.0.1:{receiver.port}/v2/enqueue")
        yield receiver


@pytest.fixture
def opsgenie_api(monkeypatch: pytest.MonkeyPatch) -> Iterator[AlertReceiver]:
    with AlertReceiver() as receiver:
        for region in list(opsgenie.OPSGENIE_API_LOOKUP):
            monkeypatch.setitem(opsgenie.OPSGENIE_API_LOOKUP, region, f"http://127.0.0.1:{receiver.port}/v2/alerts")
        yield receiver


def test_pagerduty_and_opsgenie_see_one_dedup_key_per_finding_trigger_then_resolve(
    tmp_path: Path, vendors: Path, pagerduty_api: AlertReceiver, opsgenie_api: AlertReceiver
) -> None:
    routes = [{"url": "pagerduty://integration0123456789@apikey0123456789", "name": "pd"},
              {"url": "opsgenie://genie0123456789abcdef", "name": "og"}]
    with serve(tmp_path, vendors, routes) as running:
        pagerduty_api.fail_next = 1  # a retry must not open a second incident
        write_vendor(vendors, requires_withdraw=True)
        api(running, "POST", "/api/checks/run")
        [finding] = api(running, "GET", "/api/findings")
        write_vendor(vendors)
        for _ in range(2):  # two clean observations resolve it
            api(running, "POST", "/api/checks/run")
        wait_for(lambda: len(pagerduty_api.received) >= 2 and len(opsgenie_api.received) >= 2)
        time.sleep(0.5)
    events = [r["body"] for r in pagerduty_api.requests]
    assert [e["event_action"] for e in events] == ["trigger", "trigger", "resolve"]
    assert {e["dedup_key"] for e in events} == {finding["fingerprint"]}
    assert all(e["routing_key"] == "integration0123456789" for e in events)
    assert "KG-VEN-101" in events[0]["payload"]["summary"] and events[0]["payload"]["severity"]
    created, closed = opsgenie_api.requests
    assert created["path"] == "/v2/alerts" and created["body"]["alias"] == finding["fingerprint"]
    assert created["headers"]["Authorization"] == "GenieKey genie0123456789abcdef"
    assert closed["path"] == f"/v2/alerts/{finding['fingerprint']}/close"
    assert closed["query"] == "identifierType=alias"
    assert closed["headers"]["Authorization"] == "GenieKey genie0123456789abcdef"
