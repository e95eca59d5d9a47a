"""Drift transitions and alert delivery, on SQLite (embedded) and a real PostgreSQL (production path)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import select
from tests.servers import AlertReceiver

from keyguard.alerts import AlertRoute, DeliveryService, Notifier
from keyguard.checks.transitions import apply_findings
from keyguard.errors import ConfigError, StoreError
from keyguard.policy.models import Finding
from keyguard.store import AlertRecord, FindingRecord, create_store_engine, init_store, session_scope
from keyguard.store.models import AlertDelivery, DeliveryAttempt, Incident, IncidentEvent, Silence

CANARY = "CANARY-SECRET-9f8e7d6c5b4a"
T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/keyguard.db"
    else:
        url = request.getfixturevalue("postgres_url")
    engine = create_store_engine(url)
    init_store(engine)
    with session_scope(engine) as s:  # isolate from earlier tests sharing the PostgreSQL database
        for model in (AlertRecord, FindingRecord, AlertDelivery, DeliveryAttempt, Incident, IncidentEvent, Silence):
            for row in s.exec(select(model)):
                s.delete(row)
    yield engine
    engine.dispose()


def withdraw_finding(resource: str = "binance/bot-1", message: str = "bot key can withdraw") -> Finding:
    return Finding(id="KG-KEY-101", severity="critical", resource=resource, message=message,
                   remediation="Disable withdrawals on the key.", evidence={"permissions": {"withdraw": True}})


def run_check(engine: Engine, findings: list[Finding], now: datetime) -> list[str]:
    with session_scope(engine) as s:
        return [t.kind for t in apply_findings(s, "keys:binance", findings, now)]


def test_alerts_fire_on_new_resolved_and_regressed_only(store: Engine) -> None:
    assert run_check(store, [withdraw_finding()], T0) == ["new"]
    assert run_check(store, [withdraw_finding()], T0 + timedelta(minutes=1)) == []
    assert run_check(store, [], T0 + timedelta(minutes=2)) == ["resolved"]
    assert run_check(store, [], T0 + timedelta(minutes=3)) == []
    assert run_check(store, [withdraw_finding()], T0 + timedelta(minutes=4)) == ["regressed"]
    with session_scope(store) as s:
        records = s.exec(select(FindingRecord)).all()
        alerts = s.exec(select(AlertRecord).order_by(AlertRecord.pk)).all()
    assert len(records) == 1 and records[0].status == "open"
    assert records[0].first_seen.replace(tzinfo=UTC) == T0
    assert [a.transition for a in alerts] == ["new", "resolved", "regressed"]


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def delivery(store: Engine, *routes: AlertRoute, clock: Clock | None = None) -> DeliveryService:
    return DeliveryService(store, Notifier(list(routes)), clock=clock or Clock(), seed=1)


def test_alert_reaches_receiver_with_rule_severity_remediation_and_dedup_key(store: Engine,
                                                                            alert_receiver: AlertReceiver) -> None:
    run_check(store, [withdraw_finding()], T0)
    service = delivery(store, AlertRoute(url=alert_receiver.url))
    assert service.run_once() == 1
    [sent] = alert_receiver.received
    assert "KG-KEY-101" in sent["title"] and "CRITICAL" in sent["title"] and "binance/bot-1" in sent["title"]
    assert "Disable withdrawals on the key." in sent["message"]
    with session_scope(store) as s:
        [finding] = s.exec(select(FindingRecord)).all()
    assert sent["dedup_key"] == finding.fingerprint and sent["transition"] == "new"
    assert service.run_once() == 0  # delivered once
    assert len(alert_receiver.received) == 1


def test_failed_delivery_is_retried_on_backoff_in_time_not_cycles(store: Engine,
                                                                   alert_receiver: AlertReceiver) -> None:
    run_check(store, [withdraw_finding()], T0)
    alert_receiver.fail_next = 3
    clock = Clock()
    service = delivery(store, AlertRoute(url=alert_receiver.url), clock=clock)
    assert service.run_once() == 1 and alert_receiver.received == []
    assert service.run_once() == 0  # not due yet: the backoff is measured in time
    for _ in range(3):
        clock.now += timedelta(minutes=1)  # past any backoff step (capped at 60 s)
        service.run_once()
    assert len(alert_receiver.received) == 1
    with session_scope(store) as s:
        attempts = s.exec(select(DeliveryAttempt).order_by(DeliveryAttempt.pk)).all()
        [alert] = s.exec(select(AlertRecord)).all()
    assert [a.ok for a in attempts] == [False, False, False, True]  # every attempt is on record
    assert alert.delivered_at is not None


def test_severity_routing_sends_only_at_or_above_route_minimum(store: Engine) -> None:
    with AlertReceiver() as pager, AlertReceiver() as chat:
        service = delivery(store, AlertRoute(url=pager.url, min_severity="critical"), AlertRoute(url=chat.url))
        low = Finding(id="KG-IP-104", severity="low", resource="binance/bot-1", message="no reason documented",
                      remediation="Document why the IP is allowed.")
        run_check(store, [withdraw_finding(), low], T0)
        service.run_once()
    assert [m["title"].split()[3] for m in pager.received] == ["KG-KEY-101"]
    assert sorted(m["title"].split()[3] for m in chat.received) == ["KG-IP-104", "KG-KEY-101"]


def test_partial_delivery_does_not_resend_to_the_route_that_accepted(store: Engine) -> None:
    clock = Clock()
    with AlertReceiver() as ok, AlertReceiver() as flaky:
        flaky.fail_next = 1
        service = delivery(store, AlertRoute(url=ok.url), AlertRoute(url=flaky.url), clock=clock)
        run_check(store, [withdraw_finding()], T0)
        service.run_once()
        clock.now += timedelta(minutes=2)
        service.run_once()
    assert len(ok.received) == 1 and len(flaky.received) == 1


def test_with_no_route_configured_alerts_go_to_the_log(store: Engine, caplog: pytest.LogCaptureFixture) -> None:
    run_check(store, [withdraw_finding()], T0)
    with caplog.at_level("WARNING", logger="keyguard.alerts"):
        assert delivery(store).run_once() == 1
    assert "NEW CRITICAL KG-KEY-101 on binance/bot-1" in caplog.text
    with session_scope(store) as s:
        [alert] = s.exec(select(AlertRecord)).all()
    assert alert.delivered_at is not None


def test_canary_secret_never_reaches_store_or_alert(store: Engine, alert_receiver: AlertReceiver) -> None:
    from keyguard.redact import register_secret

    register_secret(CANARY)
    leaky = Finding(id="KG-KEY-101", severity="critical", resource="binance/bot-1",
                    message=f"request failed: https://x/api?signature={CANARY}&timestamp=1 secret={CANARY}",
                    remediation="Disable withdrawals.", evidence={"api_secret": CANARY, "note": f"saw {CANARY}"})
    run_check(store, [leaky], T0)
    delivery(store, AlertRoute(url=alert_receiver.url)).run_once()
    with session_scope(store) as s:
        stored = repr(s.exec(select(FindingRecord)).all()) + repr(s.exec(select(AlertRecord)).all())
    assert CANARY not in stored
    assert CANARY not in repr(alert_receiver.received)
    assert "binance/bot-1" in stored


def test_bad_alert_url_and_store_url_are_clear_errors() -> None:
    with pytest.raises(ConfigError, match=r"alerts.routes\[0\].url is not a URL apprise understands"):
        Notifier([AlertRoute(url="nonsense-scheme://what")])
    with pytest.raises(StoreError, match="expected sqlite:///path or postgresql://"):
        create_store_engine("mysqlx://nope")
