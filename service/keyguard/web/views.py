"""The reads behind the dashboard's pages: each takes a store session (and the clock) and returns plain values the
templates lay out. Every value is read from the store or from a running worker's published document; none is a
restated default."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Integer, case, func
from sqlmodel import Session, col, select

from keyguard.exchanges.keystate import from_iso
from keyguard.policy.models import Severity
from keyguard.redact import redact_value
from keyguard.store.models import (
    AlertDelivery,
    AlertRecord,
    CheckRun,
    CheckSchedule,
    DeliveryAttempt,
    FindingRecord,
    Incident,
    ObservationRecord,
    as_utc,
)
from keyguard.web.charts import Chart, Series, line_chart

SEVERITIES = [s.value for s in sorted(Severity, key=lambda s: -s.rank)]
CHART_POINTS = 48
CHART_SPAN_MAX = timedelta(days=7)
WEIGHT_SPAN = timedelta(hours=6)
ALERTS_PER_PAGE = 25
KEYS_PER_PAGE = 100
KEYS_SCOPE = "keys"


def age_text(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"


def number_text(value: Any) -> str:
    """A reported number as people read it: 8 significant digits, no float noise (-0.18, not -0.180000000007)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "–" if value is None else str(value)
    return f"{value:.8g}" if isinstance(value, float) else str(value)


# -- overview ---------------------------------------------------------------------------------------------------
@dataclass
class CheckLine:
    scope: str
    last_ok_at: datetime | None
    age: str
    stale: bool
    error: str | None


@dataclass
class DeliveryHealth:
    pending: int
    failing: int
    gave_up: int
    oldest_pending_at: datetime | None
    oldest_age: str


@dataclass
class Overview:
    counts: dict[str, int]
    top_findings: list[FindingRecord]
    awaiting_ack: list[Incident]
    acknowledged: list[Incident]
    delivery: DeliveryHealth
    checks: list[CheckLine]


def open_counts(session: Session) -> dict[str, int]:
    rows = session.exec(select(FindingRecord.severity, func.count()).where(FindingRecord.status == "open")
                        .group_by(FindingRecord.severity)).all()
    counts = dict.fromkeys(SEVERITIES, 0)
    counts.update({severity: int(n) for severity, n in rows})
    return counts


def overview(session: Session, now: datetime, interval_s: float) -> Overview:
    top = list(session.exec(select(FindingRecord).where(FindingRecord.status == "open",
                                                        col(FindingRecord.severity).in_(("critical", "high")))
                            .order_by(col(FindingRecord.last_seen).desc()).limit(10)).all())
    top.sort(key=lambda f: -Severity(f.severity).rank)
    incidents = session.exec(select(Incident).where(col(Incident.status).in_(("open", "acknowledged")))
                             .order_by(col(Incident.opened_at))).all()
    return Overview(open_counts(session), top, [i for i in incidents if i.status == "open"],
                    [i for i in incidents if i.status == "acknowledged"], delivery_health(session, now),
                    check_lines(session, now, interval_s))


def delivery_health(session: Session, now: datetime) -> DeliveryHealth:
    pending = session.exec(select(func.count()).select_from(AlertDelivery)
                           .where(AlertDelivery.status == "pending")).one()
    failing = session.exec(select(func.count()).select_from(AlertDelivery)
                           .where(AlertDelivery.status == "pending", col(AlertDelivery.last_error).is_not(None))).one()
    gave_up = session.exec(select(func.count()).select_from(AlertDelivery)
                           .where(AlertDelivery.status == "pending", col(AlertDelivery.gave_up_at).is_not(None))).one()
    # Alerts not fanned out to their routes yet are owed too.
    unrouted = session.exec(select(func.count()).select_from(AlertRecord).where(
        col(AlertRecord.fanned_out).is_(False), col(AlertRecord.delivered_at).is_(None),
        col(AlertRecord.silenced_by).is_(None))).one()
    oldest = session.exec(select(func.min(AlertRecord.created_at)).where(
        col(AlertRecord.delivered_at).is_(None), col(AlertRecord.silenced_by).is_(None))).one()
    oldest_at = as_utc(oldest) if oldest else None
    return DeliveryHealth(int(pending) + int(unrouted), int(failing), int(gave_up), oldest_at,
                          age_text((now - oldest_at).total_seconds()) if oldest_at else "none owed")


def check_lines(session: Session, now: datetime, interval_s: float) -> list[CheckLine]:
    lines = []
    for row in session.exec(select(CheckSchedule).order_by(col(CheckSchedule.scope))):
        last_ok = as_utc(row.last_ok_at) if row.last_ok_at else None
        age = (now - last_ok).total_seconds() if last_ok else None
        lines.append(CheckLine(row.scope, last_ok, age_text(age), age is None or age > 2 * interval_s,
                               row.last_error))
    return lines


def _bucket(session: Session, column: Any, start: datetime, step: float) -> Any:
    """The sample a timestamp falls after: trunc((t - start) / step), -1 before the chart starts; computed in the
    database, so no timestamp is parsed in Python."""
    if session.get_bind().dialect.name == "sqlite":
        seconds = (func.julianday(column) - func.julianday(start.astimezone(UTC).replace(tzinfo=None))) * 86400.0
    else:
        seconds = func.extract("epoch", column) - start.timestamp()
    return case((seconds < 0, -1), else_=func.cast(seconds / step, Integer))


def findings_chart(session: Session, now: datetime) -> Chart:
    """Open findings by severity over time, from each finding's first-seen and resolved times (a waived finding
    has no time it was waived, so it is left out). Counted in the database, one row per severity and sample."""
    charted = col(FindingRecord.status).in_(("open", "resolved"))
    earliest = session.exec(select(func.min(FindingRecord.first_seen)).where(charted)).one()
    if earliest is None:
        return line_chart("Open findings by severity", [])
    start = max(as_utc(earliest), now - CHART_SPAN_MAX)
    step = max((now - start).total_seconds() / (CHART_POINTS - 1), 1.0)
    times = [t for t in (start + timedelta(seconds=step * i) for i in range(CHART_POINTS)) if t <= now]
    deltas: dict[str, list[int]] = defaultdict(lambda: [0] * (len(times) + 1))
    for column, sign, where in ((FindingRecord.first_seen, 1, charted),
                                (FindingRecord.resolved_at, -1, FindingRecord.status == "resolved")):
        bucket = _bucket(session, column, start, step)
        query = select(FindingRecord.severity, bucket, func.count()).where(where, col(column).is_not(None))
        for severity, b, n in session.exec(query.group_by(FindingRecord.severity, bucket)).all():
            # Counted from the sample after its bucket on (a finding before the chart starts, from the first).
            deltas[severity][min(max(int(b) + 1, 0), len(times))] += sign * int(n)
    series = []
    for severity in SEVERITIES:
        if severity not in deltas:
            continue
        running, points = 0, []
        for i, t in enumerate(times):
            running += deltas[severity][i]
            points.append((t, float(running)))
        series.append(Series(severity, f"sev-{severity}", points))
    return line_chart("Open findings by severity", series)


def weight_chart(session: Session, now: datetime) -> Chart:
    """Request weight used in the last minute, against the worker's limit, as each execution check of the last six
    hours read it."""
    since = now - WEIGHT_SPAN
    runs = session.exec(select(CheckRun.started_at, CheckRun.gauges).where(
        col(CheckRun.gauges).is_not(None), col(CheckRun.started_at) >= since).order_by(col(CheckRun.pk))).all()
    used: dict[str, list[tuple[datetime, float]]] = defaultdict(list)
    limit: dict[str, list[tuple[datetime, float]]] = defaultdict(list)
    for started_at, gauges in runs:
        if not isinstance(gauges, dict) or "used_weight_1m" not in gauges:
            continue
        worker = str(gauges.get("worker", "worker"))
        used[worker].append((as_utc(started_at), float(gauges["used_weight_1m"])))
        if gauges.get("weight_limit_1m") is not None:
            limit[worker].append((as_utc(started_at), float(gauges["weight_limit_1m"])))
    series = []
    for worker in sorted(used):
        series.append(Series(f"{worker} used", "weight", used[worker]))
        if limit[worker]:
            series.append(Series(f"{worker} limit", "limit", limit[worker]))
    return line_chart("Request weight per minute, used and limit", series)


# -- keys -------------------------------------------------------------------------------------------------------
@dataclass
class KeyLine:
    resource: str
    exchange: str
    key_id: str
    purpose: str
    permissions: dict[str, bool] | None
    permissions_source: str | None
    ip_restricted: bool | None
    allowed_ips: list[str]
    ip_binding_source: str | None
    created_at: datetime | None
    age: str
    rotation_due: datetime | None
    rotation_overdue: bool
    last_inspected_at: datetime | None
    last_attempt_at: datetime
    last_error: str | None
    open_findings: dict[str, int] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class KeyObservation:
    resource: str
    facts: dict[str, Any] | None
    last_ok_at: datetime | None
    last_attempt_at: datetime
    last_error: str | None


KEY_COLUMNS = (ObservationRecord.resource, ObservationRecord.facts, ObservationRecord.last_ok_at,
               ObservationRecord.last_attempt_at, ObservationRecord.last_error)


def key_line(record: KeyObservation, now: datetime, max_age_days: float | None,
             open_findings: dict[str, int]) -> KeyLine:
    facts = record.facts or {}
    exchange, _, key_id = record.resource.partition("/")
    created = from_iso(facts.get("created_at"))
    expires = from_iso(facts.get("expires_at"))
    due = created + timedelta(days=max_age_days) if created and max_age_days is not None else None
    if expires is not None and (due is None or expires < due):
        due = expires
    permissions = facts.get("permissions") if isinstance(facts.get("permissions"), dict) else None
    return KeyLine(
        resource=record.resource, exchange=str(facts.get("exchange", exchange)), key_id=str(facts.get("id", key_id)),
        purpose=str(facts.get("purpose", "")), permissions=permissions,
        permissions_source=facts.get("permissions_source"), ip_restricted=facts.get("ip_restricted"),
        allowed_ips=[str(ip.get("value", ip)) if isinstance(ip, dict) else str(ip)
                     for ip in facts.get("allowed_ips") or []],
        ip_binding_source=facts.get("ip_binding_source"), created_at=created,
        age=age_text((now - created).total_seconds()) if created else "not reported",
        rotation_due=due, rotation_overdue=due is not None and due <= now,
        last_inspected_at=as_utc(record.last_ok_at) if record.last_ok_at else None,
        last_attempt_at=as_utc(record.last_attempt_at), last_error=record.last_error,
        open_findings=open_findings, facts=facts)


def _open_by_resource(session: Session, resource: str | None = None) -> dict[str, dict[str, int]]:
    query = select(FindingRecord.resource, FindingRecord.severity, func.count()).where(
        FindingRecord.status == "open")
    if resource is not None:
        query = query.where(FindingRecord.resource == resource)
    out: dict[str, dict[str, int]] = defaultdict(dict)
    for res, severity, n in session.exec(query.group_by(FindingRecord.resource, FindingRecord.severity)).all():
        out[res][severity] = int(n)
    return out


def keys(session: Session, now: datetime, max_age_days: float | None, page: int = 1) -> tuple[list[KeyLine], int]:
    """One page of keys (by resource) and how many keys there are."""
    opened = _open_by_resource(session)
    total = session.exec(select(func.count()).select_from(ObservationRecord)
                         .where(ObservationRecord.scope == KEYS_SCOPE)).one()
    rows = session.exec(select(*KEY_COLUMNS).where(ObservationRecord.scope == KEYS_SCOPE)  # type: ignore[call-overload]
                        .order_by(col(ObservationRecord.resource))
                        .offset((page - 1) * KEYS_PER_PAGE).limit(KEYS_PER_PAGE)).all()
    return [key_line(KeyObservation(*r), now, max_age_days, opened.get(r[0], {})) for r in rows], int(total)


@dataclass
class KeyDetail:
    key: KeyLine
    findings: list[FindingRecord]
    evidence: dict[str, str]  # finding pk -> pretty JSON


def key_detail(session: Session, resource: str, now: datetime, max_age_days: float | None) -> KeyDetail | None:
    row = session.exec(select(*KEY_COLUMNS).where(ObservationRecord.scope == KEYS_SCOPE,  # type: ignore[call-overload]
                                                  ObservationRecord.resource == resource)).first()
    if row is None:
        return None
    record = KeyObservation(*row)
    findings = list(session.exec(select(FindingRecord).where(FindingRecord.resource == resource)
                                 .order_by(col(FindingRecord.last_seen).desc()).limit(200)).all())
    findings.sort(key=lambda f: (f.status != "open", -Severity(f.severity).rank))
    evidence = {str(f.pk): json.dumps(redact_value(f.evidence), indent=2, sort_keys=True, default=str)
                for f in findings}
    return KeyDetail(key_line(record, now, max_age_days, _open_by_resource(session, resource).get(resource, {})),
                     findings, evidence)


# -- alerts -----------------------------------------------------------------------------------------------------
@dataclass
class RouteDelivery:
    delivery: AlertDelivery
    attempts: list[DeliveryAttempt]


@dataclass
class AlertLine:
    alert: AlertRecord
    routes: list[RouteDelivery]


def alert_lines(session: Session, limit: int, incident_pk: int | None = None,
                before: int | None = None) -> list[AlertLine]:
    """Newest first; `before` pages on to older alerts (those with a smaller pk)."""
    query = select(AlertRecord)
    if before is not None:
        query = query.where(col(AlertRecord.pk) < before)
    if incident_pk is not None:
        query = query.where(AlertRecord.incident_pk == incident_pk)
    alerts = list(session.exec(query.order_by(col(AlertRecord.pk).desc()).limit(limit)).all())
    if not alerts:
        return []
    deliveries = list(session.exec(select(AlertDelivery).where(
        col(AlertDelivery.alert_pk).in_([a.pk for a in alerts])).order_by(col(AlertDelivery.pk))).all())
    attempts: dict[int, list[DeliveryAttempt]] = defaultdict(list)
    if deliveries:
        for attempt in session.exec(select(DeliveryAttempt).where(
                col(DeliveryAttempt.delivery_pk).in_([d.pk for d in deliveries])).order_by(col(DeliveryAttempt.pk))):
            attempts[attempt.delivery_pk].append(attempt)
    by_alert: dict[int, list[RouteDelivery]] = defaultdict(list)
    for d in deliveries:
        by_alert[d.alert_pk].append(RouteDelivery(d, attempts.get(d.pk or 0, [])))
    return [AlertLine(a, by_alert.get(a.pk or 0, [])) for a in alerts]


# -- the worker -------------------------------------------------------------------------------------------------
@dataclass
class WorkerView:
    """One worker or gateway named in the inventory (keys[].workers): its published live document, as it is."""

    name: str
    config_path: Path
    kind: str  # gateway | worker
    document: dict[str, Any] | None
    error: str | None
    heartbeat_age: str
    stale: bool
    kill_switch_path: Path | None
    bots: list[str]


def read_live_document(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    try:
        return json.loads(path.read_text()), None
    except FileNotFoundError:
        return None, f"{path} does not exist: is it running?"
    except (OSError, ValueError) as exc:
        return None, f"{path} is not readable JSON ({exc.__class__.__name__})"


def worker_view(config_path: Path, now: datetime, stale_after_s: float) -> WorkerView:
    from keyguard.errors import KeyguardError
    from keyguard.gateway.config import GatewayConfig, load_trading_config

    try:
        config = load_trading_config(config_path)
    except KeyguardError as exc:
        return WorkerView(config_path.stem, config_path, "unknown", None, str(exc), "never", True, None, [])
    if isinstance(config, GatewayConfig):
        kind, name, bots = "gateway", config.gateway, sorted(config.bots)
    else:
        kind, name, bots = "worker", config.worker, []
    document, error = read_live_document(config.state_dir / "live_state.json")
    heartbeat = from_iso((document or {}).get("state", {}).get("heartbeat_at")) if document else None
    age = (now - heartbeat).total_seconds() if heartbeat else None
    return WorkerView(name, config_path, kind,
                      redact_value(document) if document else None, error, age_text(age),
                      age is None or age > stale_after_s, config.kill_switch_path, bots)
