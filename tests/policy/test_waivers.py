"""Waivers accept a risk for a while, with a reason and an approver; they never silently become permanent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlmodel import select

from keyguard.checks.transitions import apply_findings
from keyguard.policy.models import Finding
from keyguard.policy.report import failing
from keyguard.policy.waivers import apply_waivers, parse_waivers
from keyguard.store import AlertRecord, create_store_engine, init_store, session_scope

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def finding(resource: str = "binance/monitor-1") -> Finding:
    return Finding(id="KG-IP-104", severity="high", resource=resource, message="no reason documented",
                   remediation="Document the reason.")


def waiver(**over: object) -> dict:
    return {"rule": "KG-IP-104", "resource": "binance/*", "reason": "documented in ticket SEC-42",
            "approver": "alice", "expires": (NOW + timedelta(days=3)).isoformat(), **over}


def test_active_waiver_marks_finding_waived_and_it_no_longer_fails_the_gate() -> None:
    waivers, notes = parse_waivers([waiver()])
    result, expired = apply_waivers([finding()], waivers, NOW)
    assert notes == [] and expired == []
    assert result[0].status == "waived"
    assert result[0].evidence["waiver"]["approver"] == "alice"
    assert failing(result, "high") == []


def test_expired_waiver_stops_applying_and_says_so() -> None:
    waivers, _ = parse_waivers([waiver(expires=(NOW - timedelta(hours=1)).isoformat())])
    result, expired = apply_waivers([finding()], waivers, NOW)
    assert result[0].status == "open"
    assert failing(result, "high") == result
    assert "expired" in expired[0].message and "alice" in expired[0].message


def test_malformed_waiver_is_reported_and_not_applied() -> None:
    entry = waiver()
    del entry["approver"]
    waivers, notes = parse_waivers([entry, waiver(reason="")])
    assert waivers == []
    assert "[0].approver: Field required; not applied" in notes[0].message
    assert "[1].reason" in notes[1].message
    result, _ = apply_waivers([finding()], waivers, NOW)
    assert result[0].status == "open"


def test_waiver_does_not_cover_other_rules_or_resources() -> None:
    waivers, _ = parse_waivers([waiver(resource="binance/monitor-1")])
    other = Finding(id="KG-KEY-101", severity="critical", resource="binance/monitor-1", message="m", remediation="r")
    result, _ = apply_waivers([other, finding("okx/monitor-1")], waivers, NOW)
    assert [f.status for f in result] == ["open", "open"]


def test_service_alerts_when_a_waiver_expires(tmp_path) -> None:
    store = create_store_engine(f"sqlite:///{tmp_path}/w.db")
    init_store(store)
    waivers, _ = parse_waivers([waiver(expires=(NOW + timedelta(hours=1)).isoformat())])
    for when in (NOW, NOW + timedelta(hours=2)):
        findings, _ = apply_waivers([finding()], waivers, when)
        with session_scope(store) as s:
            apply_findings(s, "keys", findings, when)
    with session_scope(store) as s:
        alerts = s.exec(select(AlertRecord)).all()
    assert [a.transition for a in alerts] == ["waiver_expired"]
    assert "WAIVER EXPIRED" in alerts[0].title
