"""Durable delivery, apart from checking: one loop per route, so a slow or dead route holds only itself.

Every alert gets one delivery row per route that wants its severity. A route's loop claims its due rows with
SELECT ... FOR UPDATE SKIP LOCKED (each alert is sent by one replica), makes one attempt with real connect and
read timeouts, records it, and on failure schedules the next on exponential backoff with jitter, measured in
time. Nothing is dropped: a delivery keeps retrying until its route accepts it. An alert a route has not
delivered by the give-up age also goes to the fallback routes, and the route gets a KG-SVC-003 finding
(alerting is broken), which turns /health degraded until the route delivers again."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import exists
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, func, select

from keyguard.alerts.notifier import Notifier, Route
from keyguard.incidents.lifecycle import EscalationPolicy, tick
from keyguard.policy.models import Finding, Severity
from keyguard.redact import redact_text
from keyguard.store.db import session_scope
from keyguard.store.models import AlertDelivery, AlertRecord, DeliveryAttempt

log = logging.getLogger(__name__)

ALERTING_BROKEN_RULE = "KG-SVC-003"
ALERTS_HEALTH_SCOPE = "alerts:health"


def backoff_s(attempts: int, base_s: float, cap_s: float, rng: random.Random) -> float:
    """Exponential in the attempts made, capped, with full jitter between half and the whole step."""
    step = min(cap_s, base_s * (2 ** max(0, attempts - 1)))
    return step * rng.uniform(0.5, 1.0)


class DeliveryService:
    def __init__(self, store: Engine, notifier: Notifier, *, give_up_s: float = 3600.0, backoff_base_s: float = 1.0,
                 backoff_cap_s: float = 60.0, poll_s: float = 0.5,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC), seed: int | None = None,
                 escalation: EscalationPolicy | None = None) -> None:
        self.store, self.notifier = store, notifier
        self.escalation = escalation or EscalationPolicy()
        self.give_up_s, self.backoff_base_s, self.backoff_cap_s, self.poll_s = give_up_s, backoff_base_s, \
            backoff_cap_s, poll_s
        self.clock = clock
        self._rng = random.Random(seed)
        self._locking = store.dialect.name == "postgresql"
        self._stop = threading.Event()
        self._wake: dict[str, threading.Event] = {r.name: threading.Event() for r in notifier.routes}
        self._queued = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- one pass, callable from tests with an injected clock -----------------------------------------------
    def run_once(self) -> int:
        """Tick the incident clock, fan out new alerts, give up on late ones, then attempt every due delivery on
        every route once."""
        self.tick()
        self.fan_out()
        self.give_up()
        return sum(self.deliver_due(route) for route in self.notifier.routes)

    def fan_out(self) -> int:
        """Make the per-route deliveries of alerts that have none yet (each alert once, whichever replica)."""
        now = self.clock()
        made = 0
        with session_scope(self.store) as session:
            query = select(AlertRecord).where(col(AlertRecord.fanned_out).is_(False)).order_by(col(AlertRecord.pk))
            if self._locking:
                query = query.with_for_update(skip_locked=True)
            for alert in session.exec(query.limit(500)).all():
                about_alerting = alert.rule_id == ALERTING_BROKEN_RULE
                routes = [r for r in self.notifier.routes if (r.wants(alert.severity) if r.fallback else r.takes(alert))
                          and (not r.fallback or about_alerting)]
                if alert.silenced_by is not None:
                    routes = []  # recorded and shown, not sent; the silence's end sends what is still open
                for route in routes:
                    made += self._insert_delivery(session, alert, route, now, fallback_for=None)
                alert.fanned_out = True
                if not routes and alert.silenced_by is None:
                    alert.delivered_at = now  # no route wants this severity: nothing is owed
                session.add(alert)
        return made

    def _insert_delivery(self, session: Session, alert: AlertRecord, route: Route, now: datetime,
                         fallback_for: str | None) -> int:
        module: Any = postgresql if self.store.dialect.name == "postgresql" else sqlite
        statement = module.insert(AlertDelivery).values(
            alert_pk=alert.pk, route=route.name, status="pending", attempts=0, next_attempt_at=now,
            fallback_for=fallback_for,
        ).on_conflict_do_nothing(index_elements=["alert_pk", "route"])
        return int(session.execute(statement).rowcount or 0)  # type: ignore[attr-defined]

    def deliver_due(self, route: Route) -> int:
        """Attempt every due delivery of `route` once; returns how many it attempted."""
        attempted = 0
        while not self._stop.is_set():
            with session_scope(self.store) as session:
                now = self.clock()
                # A finding's alerts reach a route in order: a resolve never overtakes the trigger still being
                # retried (the receiver would resolve nothing, then open an incident that never closes).
                earlier, earlier_alert = aliased(AlertDelivery), aliased(AlertRecord)
                overtakes = exists().where(
                    col(earlier.route) == route.name, col(earlier.status) == "pending",
                    col(earlier.alert_pk) < col(AlertDelivery.alert_pk), col(earlier_alert.pk) == col(earlier.alert_pk),
                    col(earlier_alert.fingerprint) == col(AlertRecord.fingerprint))
                query = (select(AlertDelivery)
                         .join(AlertRecord, col(AlertRecord.pk) == col(AlertDelivery.alert_pk))
                         .where(AlertDelivery.route == route.name, AlertDelivery.status == "pending",
                                col(AlertDelivery.next_attempt_at) <= now, ~overtakes)
                         .order_by(col(AlertDelivery.next_attempt_at), col(AlertDelivery.pk)).limit(1))
                if self._locking:
                    query = query.with_for_update(skip_locked=True, of=AlertDelivery)  # type: ignore[arg-type]
                delivery = session.exec(query).first()
                if delivery is None:
                    return attempted
                alert = session.get(AlertRecord, delivery.alert_pk)
                if alert is None:  # its alert is gone: nothing to send
                    delivery.status = "delivered"
                    session.add(delivery)
                    continue
                result = route.send(alert)
                attempted += 1
                finished = self.clock()
                delivery.attempts += 1
                delivery.last_attempt_at = finished
                session.add(DeliveryAttempt(delivery_pk=delivery.pk or 0, at=finished, ok=result.ok,
                                            duration_ms=result.duration_ms, detail=redact_text(result.detail)[:500]))
                alert.attempts += 1
                if result.ok:
                    delivery.status, delivery.delivered_at, delivery.last_error = "delivered", finished, None
                else:
                    delivery.last_error = result.detail[:500]
                    wait = backoff_s(delivery.attempts, self.backoff_base_s, self.backoff_cap_s, self._rng)
                    delivery.next_attempt_at = finished + timedelta(seconds=wait)
                    alert.last_error = f"{route.name}: {result.detail}"[:500]
                    log.warning("alert %s for %s not delivered to %s (attempt %d, next in %.1fs)", alert.rule_id,
                                alert.resource, route.name, delivery.attempts, wait)
                session.add(delivery)
                session.flush()
                if result.ok:
                    self._close_if_done(session, alert, finished)
        return attempted

    def _close_if_done(self, session: Session, alert: AlertRecord, now: datetime) -> None:
        """The alert is delivered when every primary route that owed it has it (a fallback stands in only
        until then)."""
        pending = session.exec(select(func.count()).select_from(AlertDelivery).where(
            AlertDelivery.alert_pk == alert.pk, AlertDelivery.status == "pending",
            col(AlertDelivery.fallback_for).is_(None))).one()
        if pending == 0 and alert.delivered_at is None:
            alert.delivered_at, alert.last_error = now, None
            session.add(alert)

    def give_up(self) -> list[str]:
        """Deliveries older than the give-up age go to the fallback routes too; routes holding such deliveries
        are reported as broken (KG-SVC-003), and stop being so once they deliver. Returns the broken routes."""
        from keyguard.checks.transitions import apply_findings

        now = self.clock()
        cutoff = now - timedelta(seconds=self.give_up_s)
        with session_scope(self.store) as session:
            query = (select(AlertDelivery, AlertRecord)
                     .join(AlertRecord, col(AlertRecord.pk) == col(AlertDelivery.alert_pk))
                     .where(AlertDelivery.status == "pending", col(AlertDelivery.gave_up_at).is_(None),
                            col(AlertDelivery.fallback_for).is_(None), col(AlertRecord.created_at) <= cutoff))
            if self._locking:
                query = query.with_for_update(skip_locked=True, of=AlertDelivery)  # type: ignore[arg-type]
            for delivery, alert in session.exec(query).all():
                delivery.gave_up_at = now
                session.add(delivery)
                for route in self.notifier.fallbacks:
                    if route.wants(alert.severity):
                        self._insert_delivery(session, alert, route, now, fallback_for=delivery.route)
                log.error("alert %s for %s not delivered to %s within %.0fs: sent to the fallback routes",
                          alert.rule_id, alert.resource, delivery.route, self.give_up_s)
            broken = sorted(set(session.exec(select(AlertDelivery.route).where(
                AlertDelivery.status == "pending", col(AlertDelivery.gave_up_at).is_not(None))).all()))
            findings = [alerting_broken_finding(route, self.give_up_s) for route in broken]
            apply_findings(session, ALERTS_HEALTH_SCOPE, findings, now)
        return broken

    @property
    def housekeeping_s(self) -> float:
        """How often the dispatcher gives up on late deliveries and ticks the incident clock: fine enough for the
        shortest configured period, at most every 5 s, never faster than it polls."""
        policy = self.escalation
        return max(self.poll_s, min(5.0, self.give_up_s / 10, policy.renotify_s / 4, policy.escalate_after_s / 4))

    def tick(self) -> int:
        """Re-notify and escalate unacknowledged incidents, end silences; returns how many alerts it queued."""
        with session_scope(self.store) as session:
            return len(tick(session, self.clock(), self.escalation, self.notifier.tiers))

    # -- the loops ------------------------------------------------------------------------------------------
    def wake(self) -> None:
        """New alerts were queued: fan them out now instead of at the next poll."""
        self._queued.set()

    def start(self) -> None:
        def dispatcher() -> None:  # fans new alerts out to the routes and gives up on late ones
            last_give_up = 0.0
            while not self._stop.is_set():
                self._queued.clear()
                try:
                    if self.fan_out():
                        for event in self._wake.values():
                            event.set()
                    if time.monotonic() - last_give_up >= self.housekeeping_s:
                        if self.tick():
                            self._queued.set()  # fan the re-notifications out on the next turn, without waiting
                        self.give_up()
                        last_give_up = time.monotonic()
                except Exception as exc:  # a store outage must not end delivery; it retries on the next poll
                    log.error("alert dispatch failed: %s", redact_text(str(exc)))
                self._queued.wait(self.poll_s)

        def route_loop(route: Route) -> None:  # one per route: a dead route holds only itself
            event = self._wake[route.name]
            while not self._stop.is_set():
                event.clear()
                try:
                    self.deliver_due(route)
                except Exception as exc:
                    log.error("delivery to %s failed: %s", route.name, redact_text(str(exc)))
                event.wait(self.poll_s)

        targets = [(dispatcher, (), "keyguard-alert-dispatch")] + [
            (route_loop, (route,), f"keyguard-deliver-{route.name}") for route in self.notifier.routes]
        for target, args, name in targets:
            thread = threading.Thread(target=target, args=args, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        self.wake()
        for event in self._wake.values():
            event.set()
        for thread in self._threads:
            thread.join(timeout=20)


def alerting_broken_finding(route: str, give_up_s: float) -> Finding:
    return Finding(
        id=ALERTING_BROKEN_RULE, severity=Severity.high, resource=f"route:{route}",
        message=(f"alert route {route} has alerts it has not delivered for more than {give_up_s:.0f}s; they went "
                 "to the fallback routes and are retried until the route accepts them"),
        remediation=(f"Restore the {route} receiver (URL, credentials, network); meanwhile watch the fallback "
                     "route and GET /api/alerts for what is undelivered."),
        evidence={"route": route},
    )
