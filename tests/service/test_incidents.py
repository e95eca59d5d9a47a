"""Incidents as the people on call meet them.

On an injected clock (SQLite and a real PostgreSQL): a critical finding opens an incident, is re-notified every
5 minutes and escalated to the next route tier after 15 until acknowledged; a high one opens an incident but is not
re-notified; a silence holds alerts (recorded, not sent) and re-notification, and when it expires it says so and
sends what is still open; a maintenance window holds nothing before it starts.

Over real HTTP, with a real sandbox exchange, real OPA and local receivers: the running service re-notifies and
escalates an unacknowledged key that can withdraw, a viewer cannot acknowledge, the CLI acknowledges as the
on-call person would, a resolve is refused while the key can still withdraw, the key fixed at the exchange resolves
the incident on every tier it reached, and the timeline and the audit log tell the whole story."""

from __future__ import annotations

import getpass
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy.engine import Engine
from sqlmodel import select
from tests.sandbox import fixtures
from tests.servers import AlertReceiver
from tests.service.live import make_inventory, wait_for

from keyguard.alerts import AlertRoute, DeliveryService, Notifier
from keyguard.api.access import create_token
from keyguard.checks.transitions import apply_findings
from keyguard.config import load_settings
from keyguard.incidents import lifecycle
from keyguard.policy.models import Finding
from keyguard.runtime import build_collectors, run_service
from keyguard.sandbox import SandboxHandle
from keyguard.store import create_store_engine, init_store, session_scope
from keyguard.store.models import AlertRecord, Incident, IncidentEvent
from keyguard.tools import PROJECT_ROOT

sandbox_config = fixtures.sandbox_config
sandbox = fixtures.sandbox

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
TOKEN = "incident-env-token-0123456789"


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    url = f"sqlite:///{tmp_path}/kg.db" if request.param == "sqlite" else request.getfixturevalue("pg_store_url")
    engine = create_store_engine(url)
    init_store(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def tier1() -> Iterator[AlertReceiver]:
    with AlertReceiver() as receiver:
        yield receiver


def finding(rule: str = "KG-KEY-101", severity: str = "critical", resource: str = "binance/bot-1") -> Finding:
    return Finding(id=rule, severity=severity, resource=resource, message=f"{rule} fires on {resource}",
                   remediation="Disable withdrawals on the key.", evidence={})


def check(store: Engine, findings: list[Finding], now: datetime) -> list[str]:
    with session_scope(store) as session:
        return [t.kind for t in apply_findings(session, "keys:binance", findings, now)]


def titles(receiver: AlertReceiver) -> list[str]:
    """Each received title, without the prefix and the incident label: 'NEW CRITICAL KG-KEY-101 on binance/bot-1'."""
    return [m["title"].removeprefix("[keyguard] ").split(" (incident")[0] for m in receiver.received]


def timeline_kinds(store: Engine, pk: int) -> list[str]:
    with session_scope(store) as session:
        return [e.kind for e in session.exec(select(IncidentEvent).where(IncidentEvent.incident_pk == pk)
                                             .order_by(IncidentEvent.pk))]


def the_incident(store: Engine) -> Incident:
    with session_scope(store) as session:
        [incident] = session.exec(select(Incident)).all()
        session.expunge(incident)
        return incident


def at(clock: Clock, service: DeliveryService, minutes: float) -> None:
    clock.now = T0 + timedelta(minutes=minutes)
    service.run_once()


def test_unacknowledged_critical_is_renotified_every_5_min_and_escalated_after_15_until_acked(
        store: Engine, alert_receiver: AlertReceiver, tier1: AlertReceiver) -> None:
    clock = Clock()
    first_line, second_line = alert_receiver, tier1
    service = DeliveryService(store, Notifier([AlertRoute(url=first_line.url, name="oncall"),
                                               AlertRoute(url=second_line.url, name="lead", tier=1)]),
                              clock=clock, seed=1)
    check(store, [finding()], T0)
    service.run_once()
    assert titles(first_line) == ["NEW CRITICAL KG-KEY-101 on binance/bot-1"] and second_line.received == []
    incident = the_incident(store)
    assert (incident.status, incident.tier) == ("open", 0)
    assert f"keyguard incident ack {incident.pk}" in first_line.received[0]["message"]

    at(clock, service, 4.9)
    assert len(first_line.received) == 1  # not yet
    at(clock, service, 5)
    assert titles(first_line)[-1] == "STILL UNACKNOWLEDGED CRITICAL KG-KEY-101 on binance/bot-1"
    at(clock, service, 10)
    assert len(first_line.received) == 3 and second_line.received == []
    at(clock, service, 15)
    assert titles(second_line) == ["ESCALATED CRITICAL KG-KEY-101 on binance/bot-1"]
    assert titles(first_line)[-1] == "ESCALATED CRITICAL KG-KEY-101 on binance/bot-1"  # the first line hears it too
    assert the_incident(store).tier == 1

    incident, changed = lifecycle.acknowledge(store, incident.pk or 0, "alice", clock(), "revoking the key now")
    assert changed and incident.status == "acknowledged" and incident.acknowledged_by == "alice"
    service.run_once()
    assert titles(second_line)[-1] == "ACKNOWLEDGED CRITICAL KG-KEY-101 on binance/bot-1"
    assert "alice" in second_line.received[-1]["message"]
    sent = (len(first_line.received), len(second_line.received))
    for minutes in (20, 25, 30, 45, 60):
        at(clock, service, minutes)
    assert (len(first_line.received), len(second_line.received)) == sent  # acknowledged: quiet

    clock.now = T0 + timedelta(minutes=61)
    assert check(store, [], clock.now) == ["resolved"]
    service.run_once()
    resolved = "RESOLVED CRITICAL KG-KEY-101 on binance/bot-1"
    assert titles(first_line)[-1] == resolved and titles(second_line)[-1] == resolved  # every tier it reached
    incident = the_incident(store)
    assert (incident.status, incident.resolved_by) == ("resolved", "keyguard")
    assert timeline_kinds(store, incident.pk or 0) == [
        "opened", "renotified", "renotified", "escalated", "acknowledged", "finding_resolved"]


def test_escalation_walks_every_tier_then_keeps_renotifying(store: Engine, alert_receiver: AlertReceiver,
                                                            tier1: AlertReceiver) -> None:
    clock = Clock()
    service = DeliveryService(store, Notifier([AlertRoute(url=alert_receiver.url, name="oncall"),
                                               AlertRoute(url=tier1.url, name="cto", tier=2)]),
                              clock=clock, seed=1)
    check(store, [finding()], T0)
    for minutes in range(0, 46, 5):
        at(clock, service, minutes)
    # Tiers 0 and 2 are configured: 15 min reaches tier 2 (the next that exists); after that, re-notification.
    assert titles(tier1) == ["ESCALATED CRITICAL KG-KEY-101 on binance/bot-1"] + \
        ["STILL UNACKNOWLEDGED CRITICAL KG-KEY-101 on binance/bot-1"] * 6
    assert the_incident(store).tier == 2


def test_high_findings_open_incidents_but_only_critical_ones_are_renotified(
        store: Engine, alert_receiver: AlertReceiver) -> None:
    clock = Clock()
    service = DeliveryService(store, Notifier([AlertRoute(url=alert_receiver.url)]), clock=clock, seed=1)
    check(store, [finding("KG-IP-104", "high"), finding("KG-KEY-110", "medium", "binance/bot-2")], T0)
    for minutes in (0, 5, 10, 20):
        at(clock, service, minutes)
    assert sorted(titles(alert_receiver)) == ["NEW HIGH KG-IP-104 on binance/bot-1",
                                              "NEW MEDIUM KG-KEY-110 on binance/bot-2"]
    incident = the_incident(store)  # the medium one opened none
    assert (incident.rule_id, incident.status) == ("KG-IP-104", "open")


def test_a_silence_holds_alerts_and_renotification_then_expires_and_says_so(
        store: Engine, alert_receiver: AlertReceiver) -> None:
    clock = Clock()
    service = DeliveryService(store, Notifier([AlertRoute(url=alert_receiver.url)]), clock=clock, seed=1)
    silence = lifecycle.add_silence(store, rule="KG-KEY-*", resource="binance/bot-*", reason="key rotation, ask bob",
                                    author="bob", ends_at=T0 + timedelta(hours=1), now=T0)
    check(store, [finding(), finding("KG-KEY-102", "critical", "binance/bot-2"),
                  finding("KG-IP-104", "high", "okx/bot-9")], T0)
    service.run_once()
    assert titles(alert_receiver) == ["NEW HIGH KG-IP-104 on okx/bot-9"]  # not matched: sent
    with session_scope(store) as session:
        held = session.exec(select(AlertRecord).where(AlertRecord.silenced_by == silence.pk)).all()
    assert sorted(a.rule_id for a in held) == ["KG-KEY-101", "KG-KEY-102"]  # recorded, not sent

    for minutes in (5, 10, 20, 40, 59):
        at(clock, service, minutes)
    assert len(alert_receiver.received) == 1  # no re-notification under the silence either
    clock.now = T0 + timedelta(minutes=59, seconds=30)
    check(store, [finding(), finding("KG-IP-104", "high", "okx/bot-9")], clock.now)  # KG-KEY-102 got fixed

    with session_scope(store) as session:
        [row] = session.exec(select(lifecycle.Silence)).all()
        assert lifecycle.silence_state(row, T0 + timedelta(minutes=59)) == "active"
    at(clock, service, 60)
    assert titles(alert_receiver)[1:] == ["SILENCE ENDED, STILL OPEN CRITICAL KG-KEY-101 on binance/bot-1"]
    assert "key rotation, ask bob" in alert_receiver.received[1]["message"]
    with session_scope(store) as session:
        [row] = session.exec(select(lifecycle.Silence)).all()
        assert lifecycle.silence_state(row, clock()) == "expired" and row.ended_by == "keyguard"
    incident = next(i for i in _incidents(store) if i.rule_id == "KG-KEY-101")
    assert timeline_kinds(store, incident.pk or 0) == ["opened", "silence_expired"]
    at(clock, service, 65)  # and the incident clock runs again from the end of the silence
    assert titles(alert_receiver)[-1] == "STILL UNACKNOWLEDGED CRITICAL KG-KEY-101 on binance/bot-1"


def _incidents(store: Engine) -> list[Incident]:
    with session_scope(store) as session:
        rows = list(session.exec(select(Incident)).all())
        for row in rows:
            session.expunge(row)
        return rows


def test_a_maintenance_window_holds_nothing_before_it_starts(store: Engine, alert_receiver: AlertReceiver) -> None:
    clock = Clock()
    service = DeliveryService(store, Notifier([AlertRoute(url=alert_receiver.url)]), clock=clock, seed=1)
    lifecycle.add_silence(store, rule="*", resource="binance/bot-1", reason="exchange maintenance 13:00-14:00",
                          author="ops", starts_at=T0 + timedelta(hours=1), ends_at=T0 + timedelta(hours=2), now=T0)
    check(store, [finding("KG-IP-104", "high")], T0)
    service.run_once()
    clock.now = T0 + timedelta(hours=1, minutes=1)
    check(store, [finding("KG-IP-104", "high"), finding()], clock.now)
    service.run_once()
    assert titles(alert_receiver) == ["NEW HIGH KG-IP-104 on binance/bot-1"]  # the later one fell in the window


@pytest.mark.parametrize(("rule", "resource", "reason", "hours", "problem"), [
    ("*", "*", "everything", 1, "every rule on every resource"),
    ("", "binance/bot-1", "x", 1, "needs both matchers"),
    ("KG-KEY-101", "binance/bot-1", "  ", 1, "needs a reason"),
    ("KG-KEY-101", "binance/bot-1", "too long", 24 * 8, "at most 168 h"),
    ("KG-KEY-101", "binance/bot-1", "backwards", -1, "before it starts"),
])
def test_a_silence_that_would_hide_too_much_or_never_end_is_refused(
        tmp_path: Path, rule: str, resource: str, reason: str, hours: int, problem: str) -> None:
    engine = create_store_engine(f"sqlite:///{tmp_path}/kg.db")
    init_store(engine)
    with pytest.raises(lifecycle.IncidentError, match=problem):
        lifecycle.add_silence(engine, rule=rule, resource=resource, reason=reason, author="x", now=T0,
                              ends_at=T0 + timedelta(hours=hours))


# -- the running service, as the on-call person meets it ---------------------------------------------------------
def keyguard(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "keyguard.cli", *args], capture_output=True, text=True,
                          cwd=PROJECT_ROOT, timeout=120)


def write_config(tmp_path: Path, inventory: Path, routes: list[dict[str, Any]], **incidents: Any) -> Path:
    config = tmp_path / "keyguard.yaml"
    config.write_text(yaml.safe_dump({
        "service": {"port": 0, "run_rate_per_minute": 60}, "store": {"url": f"sqlite:///{tmp_path}/kg.db"},
        "checks": {"interval_s": 3600, "resolve_after": 2}, "inventory": str(inventory),
        "alerts": {"routes": routes}, "incidents": incidents,
    }))
    return config


def call(url: str, method: str, path: str, token: str = TOKEN, **kwargs: Any) -> httpx.Response:
    return httpx.request(method, url + path, headers={"Authorization": f"Bearer {token}"}, timeout=60, **kwargs)


def test_on_call_flow_renotify_escalate_ack_from_the_cli_and_resolve_at_the_exchange(
        tmp_path: Path, sandbox: SandboxHandle, alert_receiver: AlertReceiver, tier1: AlertReceiver) -> None:
    inventory, created = make_inventory(tmp_path, sandbox, 2, withdraw={1})
    config = write_config(tmp_path, inventory, [{"url": alert_receiver.url, "name": "oncall"},
                                                {"url": tier1.url, "name": "lead", "tier": 1}],
                          renotify_s=1.0, escalate_after_s=3.0)
    settings = load_settings(config)
    with run_service(settings, build_collectors(settings), TOKEN) as running:
        url = running.url
        wait_for(lambda: any("NEW CRITICAL KG-KEY-101 on binance/bot-1" in t for t in titles(alert_receiver)))
        [incident] = call(url, "GET", "/api/incidents").json()
        assert (incident["rule_id"], incident["status"]) == ("KG-KEY-101", "open")
        pk = incident["pk"]
        wait_for(lambda: "STILL UNACKNOWLEDGED CRITICAL KG-KEY-101 on binance/bot-1" in titles(alert_receiver))
        wait_for(lambda: "ESCALATED CRITICAL KG-KEY-101 on binance/bot-1" in titles(tier1), timeout_s=15)

        viewer = create_token(running.store, "dashboard", "viewer")
        refused = call(url, "POST", f"/api/incidents/{pk}/ack", token=viewer)
        assert refused.status_code == 403 and call(url, "GET", "/api/incidents").json()[0]["status"] == "open"

        acked = keyguard("incident", "ack", str(pk), "--note", "revoking bot-1 now", "--config", str(config))
        assert acked.returncode == 0, acked.stderr
        wait_for(lambda: "ACKNOWLEDGED CRITICAL KG-KEY-101 on binance/bot-1" in titles(tier1))
        acked_at = (len(titles(alert_receiver)), len(titles(tier1)))
        refused_resolve = keyguard("incident", "resolve", str(pk), "--config", str(config))
        assert refused_resolve.returncode == 1 and "still fires" in refused_resolve.stderr

        with sandbox.admin() as admin:  # the on-call person fixes the key at the exchange
            admin.patch(f"/keys/{created[1]['api_key']}", json={"flags": {"enableWithdrawals": False}}
                        ).raise_for_status()
        # Acknowledged: no re-notification and no escalation after it (pages already on their way, such as the
        # acknowledgement's own or the containment's report, may still land).
        time.sleep(1.5)  # longer than renotify_s: an unacknowledged incident would have been re-notified by now
        later = titles(alert_receiver)[acked_at[0]:] + titles(tier1)[acked_at[1]:]
        assert not [t for t in later if t.startswith(("STILL UNACKNOWLEDGED", "ESCALATED"))], later
        for _ in range(2):  # resolve_after: 2 clean observations
            assert call(url, "POST", "/api/checks/run").status_code == 200
        resolved = "RESOLVED CRITICAL KG-KEY-101 on binance/bot-1"
        wait_for(lambda: resolved in titles(alert_receiver) and resolved in titles(tier1))

        detail = call(url, "GET", f"/api/incidents/{pk}").json()
        assert (detail["status"], detail["resolved_by"], detail["tier"]) == ("resolved", "keyguard", 1)
        kinds = [e["kind"] for e in detail["timeline"] if e["actor"] in ("keyguard", f"cli:{getpass.getuser()}")]
        assert kinds[0] == "opened" and "renotified" in kinds and "escalated" in kinds
        assert kinds[-2:] == ["acknowledged", "finding_resolved"]
        routes = {e["actor"] for e in detail["timeline"] if e["kind"] == "delivered"}
        assert routes == {"route:oncall", "route:lead"}  # the evidence of delivery is on the timeline
        audit = call(url, "GET", "/api/audit").json()
        assert {(a["action"], a["actor"], a["result"]) for a in audit} >= {
            ("incident.ack", "dashboard", "refused"), ("incident.ack", f"cli:{getpass.getuser()}", "ok"),
            ("incident.resolve", f"cli:{getpass.getuser()}", "failed")}
        listed = keyguard("incident", "list", "--status", "all", "--json", "--config", str(config))
        assert listed.returncode == 0 and '"status": "resolved"' in listed.stdout


def test_a_silence_from_the_api_holds_the_page_shows_the_finding_and_its_expiry_sends_it(
        tmp_path: Path, sandbox: SandboxHandle, alert_receiver: AlertReceiver) -> None:
    inventory, created = make_inventory(tmp_path, sandbox, 2)
    config = write_config(tmp_path, inventory, [{"url": alert_receiver.url}])
    settings = load_settings(config)
    with run_service(settings, build_collectors(settings), TOKEN) as running:
        url = running.url
        canary = created[1]["secret"]  # a key's secret, pasted into the wrong field
        body = {"rule": "KG-KEY-101", "resource": "binance/bot-0", "duration_s": 3,
                "reason": f"planned permission change, ask ops (pasted by mistake: {canary})"}
        viewer = create_token(running.store, "dashboard", "viewer")
        assert call(url, "POST", "/api/silences", token=viewer, json=body).status_code == 403
        added = call(url, "POST", "/api/silences", json=body)
        assert added.status_code == 201, added.text
        silence = added.json()
        assert silence["state"] == "active" and silence["author"] == "env" and canary not in added.text

        with sandbox.admin() as admin:
            admin.patch(f"/keys/{created[0]['api_key']}", json={"flags": {"enableWithdrawals": True}}
                        ).raise_for_status()
        assert call(url, "POST", "/api/checks/run").status_code == 200
        [held] = [f for f in call(url, "GET", "/api/findings").json() if f["rule_id"] == "KG-KEY-101"]
        assert held["silenced_by"] == silence["pk"]  # shown
        alerts = call(url, "GET", "/api/alerts").json()
        # Recorded, the page and the report of its automatic containment alike.
        assert {a["silenced_by"] for a in alerts if a["rule_id"] == "KG-KEY-101"} == {silence["pk"]}
        assert call(url, "GET", "/api/alerts?undelivered=true").json() == []  # not owed
        assert not any("KG-KEY-101" in t for t in titles(alert_receiver))  # not sent

        wait_for(lambda: "SILENCE ENDED, STILL OPEN CRITICAL KG-KEY-101 on binance/bot-0" in titles(alert_receiver),
                 timeout_s=15)
        ended = call(url, "GET", "/api/silences?include_ended=true").json()
        assert [(s["pk"], s["state"]) for s in ended] == [(silence["pk"], "expired")]
        assert call(url, "GET", "/api/silences").json() == []
        assert canary not in repr(alert_receiver.received)
    listed = keyguard("silence", "list", "--all", "--json", "--config", str(config))
    assert listed.returncode == 0 and '"state": "expired"' in listed.stdout and canary not in listed.stdout
