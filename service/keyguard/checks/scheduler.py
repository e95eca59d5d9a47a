"""Runs every collector on a schedule: collect -> evaluate -> transitions -> alert.

A collector or evaluation failure keeps the last good findings (nothing is resolved by a blind spot) and
raises its own finding, because what cannot be verified is never safe. Several replicas may share one
PostgreSQL: each scope has a schedule row, and a replica runs a due scope only while it holds that row's lock
(SELECT ... FOR UPDATE SKIP LOCKED), so each cycle runs once; a replica that dies drops its lock with its
connection and the next one takes the scope over."""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import or_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from keyguard.checks.transitions import apply_findings
from keyguard.errors import KeyguardError
from keyguard.policy.engine import PolicyEngine
from keyguard.policy.models import Finding, Severity
from keyguard.redact import redact_text, redact_value
from keyguard.store.db import session_scope
from keyguard.store.models import CheckRun, CheckSchedule, FindingRecord, ObservationRecord, as_utc

log = logging.getLogger(__name__)

CHECK_FAILED_RULE = "KG-SVC-001"
HEALTH_SUFFIX = ":health"


@dataclass
class Observation:
    """What one collection saw: the policy input, and which of its resources could not be observed.

    `unobserved`: resource -> why (its open findings stay open, it is unverified). `health`: the service's own
    findings about the collection (an exchange that did not answer). `inhibited`: resource -> the health
    finding that already pages for it. `resources`: every resource tried, for each one's observation age."""

    document: dict[str, Any]
    unobserved: dict[str, str] = field(default_factory=dict)
    health: list[Finding] = field(default_factory=list)
    inhibited: dict[str, str] = field(default_factory=dict)
    resources: list[str] = field(default_factory=list)
    # resource -> its part of the document (a key's KeyState), kept with its observation for the dashboard.
    facts: dict[str, dict[str, Any]] = field(default_factory=dict)
    # What this collection measured (the worker's weight used and limit), kept with its check run.
    gauges: dict[str, Any] | None = None


@dataclass
class Collector:
    """Produces one policy input document (keys, execution, infra, vendors) for one scope. `collect` gets the
    wall-clock deadline (time.time) of this run and returns a document, or an Observation for partial views."""

    scope: str
    collect: Callable[..., dict[str, Any] | Observation]
    takes_deadline: bool = False


@dataclass
class CheckResult:
    scope: str
    ok: bool
    findings: list[Finding] = field(default_factory=list)
    transitions: list[str] = field(default_factory=list)
    error: str | None = None
    unverified: int = 0
    # (kind, rule_id, resource, scope) of each transition, for what acts on them (containment).
    changes: list[tuple[str, str, str, str]] = field(default_factory=list)


def check_failed_finding(scope: str, error: str) -> Finding:
    return Finding(
        id=CHECK_FAILED_RULE,
        severity=Severity.high,
        resource=scope,
        message=f"check {scope} could not run, so its state is unknown: {error}",
        remediation=f"Restore what the {scope} check needs (exchange reachability, credentials, OPA, "
        "config); treat everything it covers as unsafe until it runs again.",
    )


def replica_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class CheckService:
    def __init__(self, engine: PolicyEngine, store: Engine, collectors: list[Collector],
                 alerts_queued: Callable[[], None] | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC), *,
                 interval_s: float = 60.0, deadline_s: float | None = None, resolve_after: int = 2,
                 replica: str | None = None,
                 on_transitions: Callable[[list[tuple[str, str, str, str]]], None] | None = None) -> None:
        self.engine, self.store, self.collectors, self.clock = engine, store, collectors, clock
        # Called, once a check's transitions are committed, with (kind, rule_id, resource, scope) of each.
        self.on_transitions = on_transitions
        # Delivery runs apart from checking (alerts.delivery): a check only tells it that alerts are queued.
        self.alerts_queued = alerts_queued
        self.interval_s = interval_s
        # A run that is not finished by then leaves what it did not reach unverified.
        self.deadline_s = deadline_s if deadline_s is not None else min(max(0.5, 0.8 * interval_s), 120.0)
        self.resolve_after = resolve_after
        self.replica = replica or replica_name()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._run_lock = threading.Lock()
        self.last_results: dict[str, CheckResult] = {}
        # Row locks are only real on PostgreSQL; SQLite is the single-process embedded store.
        self._locking = store.dialect.name == "postgresql"

    # -- running --------------------------------------------------------------------------------------------
    def run_once(self) -> list[CheckResult]:
        """Run every check now (an operator's trigger): waits for a replica already running one to finish."""
        return self._run(due_only=False)

    def run_due(self) -> list[CheckResult]:
        """Run the checks that are due and that no other replica is running."""
        return self._run(due_only=True)

    def _run(self, due_only: bool) -> list[CheckResult]:
        with self._run_lock:  # a manual trigger and the schedule never interleave in one process
            results = []
            for collector in self.collectors:
                with self._claim(collector.scope, due_only) as claimed:
                    if claimed is None:
                        continue
                    result = self._run_collector(collector)
                    finished = self.clock()
                    started = claimed.last_started_at or finished
                    claimed.next_due_at = started + timedelta(seconds=self.interval_s)
                    claimed.last_finished_at, claimed.last_runner = finished, self.replica
                    claimed.last_error = result.error
                    if result.ok:
                        claimed.last_ok_at = finished
                results.append(result)
                if self.alerts_queued is not None and result.transitions:
                    self.alerts_queued()
                if self.on_transitions is not None and result.changes:
                    self.on_transitions(result.changes)
            return results

    @contextmanager
    def _claim(self, scope: str, due_only: bool) -> Iterator[CheckSchedule | None]:
        """The scope's schedule row, locked for the run (None: not due, or another replica has it)."""
        now = self.clock()
        self._ensure_schedule_row(scope)
        with Session(self.store, expire_on_commit=False) as session:
            query = select(CheckSchedule).where(CheckSchedule.scope == scope)
            if due_only:
                due = col(CheckSchedule.next_due_at)
                query = query.where(or_(due.is_(None), due <= now))
            if self._locking:
                query = query.with_for_update(skip_locked=due_only)
            row = session.exec(query).first()
            if row is None:
                yield None
                return
            row.last_started_at = now
            if not self._locking:
                session.commit()  # SQLite: no lock to hold; the run lock serialises this process
            try:
                yield row
            finally:
                session.add(row)
                session.commit()  # releases the row lock

    def _ensure_schedule_row(self, scope: str) -> None:
        with session_scope(self.store) as session:
            module: Any = postgresql if self.store.dialect.name == "postgresql" else sqlite
            session.execute(module.insert(CheckSchedule).values(scope=scope).on_conflict_do_nothing(
                index_elements=["scope"]))

    def _run_collector(self, collector: Collector) -> CheckResult:
        now = self.clock()
        run = CheckRun(scope=collector.scope, started_at=now, runner=self.replica)
        observation: Observation | None = None
        try:
            deadline = time.time() + self.deadline_s
            produced = collector.collect(deadline) if collector.takes_deadline else collector.collect()
            observation = produced if isinstance(produced, Observation) else Observation(produced)
            findings = self.engine.evaluate(observation.document, source=collector.scope)
        except KeyguardError as exc:
            result = CheckResult(collector.scope, ok=False, error=redact_text(str(exc)))
        except Exception as exc:  # a collector bug is still a blind spot, reported like any other
            result = CheckResult(collector.scope, ok=False, error=redact_text(f"{exc.__class__.__name__}: {exc}"))
        else:
            result = CheckResult(collector.scope, ok=True, findings=findings,
                                 unverified=len(observation.unobserved))
        health = list(observation.health) if result.ok and observation is not None else []
        if not result.ok:
            health.append(check_failed_finding(collector.scope, result.error or "unknown error"))
        with session_scope(self.store) as session:
            if result.ok and observation is not None:
                changed = apply_findings(
                    session, collector.scope, result.findings, now, resolve_after=self.resolve_after,
                    unobserved=observation.unobserved, inhibited=observation.inhibited)
                result.transitions = [t.kind for t in changed]
                result.changes = [(t.kind, t.record.rule_id, t.record.resource, collector.scope) for t in changed]
                self._record_observations(session, collector.scope, observation, now)
            else:
                self._record_failure(session, collector.scope, result.error or "unknown error", now)
            result.transitions += [t.kind for t in apply_findings(
                session, collector.scope + HEALTH_SUFFIX, health, now, resolve_after=self.resolve_after)]
            run.finished_at, run.ok, run.error = self.clock(), result.ok, result.error
            run.findings = len(result.findings)
            run.gauges = observation.gauges if result.ok and observation is not None else None
            session.add(run)
        if not result.ok:
            log.warning("check %s failed; keeping its last good findings: %s", collector.scope, result.error)
        elif result.unverified:
            log.warning("check %s: %d resource(s) unverified this cycle; their findings stay open",
                        collector.scope, result.unverified)
        self.last_results[collector.scope] = result
        return result

    def _record_observations(self, session: Session, scope: str, observation: Observation, now: datetime) -> None:
        rows = session.exec(select(ObservationRecord).where(ObservationRecord.scope == scope))
        stored = {r.resource: r for r in rows}
        for resource in observation.resources or [scope]:
            record = stored.get(resource) or ObservationRecord(scope=scope, resource=resource, last_attempt_at=now)
            record.last_attempt_at = now
            record.last_error = observation.unobserved.get(resource)
            if record.last_error is None:
                record.last_ok_at = now
            if resource in observation.facts:
                record.facts = redact_value(observation.facts[resource])
            session.add(record)

    def _record_failure(self, session: Session, scope: str, error: str, now: datetime) -> None:
        for record in session.exec(select(ObservationRecord).where(ObservationRecord.scope == scope)):
            record.last_attempt_at, record.last_error = now, f"check failed: {error}"
            session.add(record)

    # -- what the API reports -------------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """Degraded when a check failed, has not succeeded for two intervals (or never), or the service has an open
        finding about itself (an exchange that did not answer). Read from the store, so every replica agrees."""
        now = self.clock()
        stale_after = 2 * self.interval_s
        with session_scope(self.store) as session:
            rows = {r.scope: r for r in session.exec(select(CheckSchedule))}
            problems = session.exec(select(FindingRecord).where(
                FindingRecord.status == "open", FindingRecord.scope.endswith(HEALTH_SUFFIX))).all()  # type: ignore[attr-defined]
        checks: dict[str, Any] = {}
        for collector in self.collectors:
            row = rows.get(collector.scope)
            last_ok = as_utc(row.last_ok_at) if row is not None and row.last_ok_at else None
            age = (now - last_ok).total_seconds() if last_ok else None
            checks[collector.scope] = {
                "ok": row is not None and row.last_error is None and row.last_finished_at is not None,
                "stale": age is None or age > stale_after,
                "last_ok_age_s": None if age is None else round(age, 1),
                "error": row.last_error if row is not None else "never ran",
                "runner": row.last_runner if row is not None else None,
            }
        open_problems = [{"rule_id": p.rule_id, "resource": p.resource} for p in problems]
        degraded = bool(open_problems) or any(not c["ok"] or c["stale"] for c in checks.values())
        bundle = self.engine.bundle
        policy = {"revision": bundle.revision, "modules": len(bundle.modules)} if bundle else {"revision": None}
        return {"status": "degraded" if degraded else "ok", "checks": checks, "problems": open_problems,
                "policy": policy}

    # -- the schedule ---------------------------------------------------------------------------------------
    def start(self) -> None:
        """Poll for due checks; a due check runs within one poll (at most a second) of falling due."""
        poll_s = min(1.0, max(0.05, self.interval_s / 10))

        def loop() -> None:
            while not self._stop.is_set():
                try:
                    self.run_due()
                except Exception:  # the loop must survive anything (a store outage included)
                    log.exception("check cycle failed")
                self._stop.wait(poll_s)

        self._thread = threading.Thread(target=loop, name="keyguard-checks", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
