"""Runs every collector on a schedule: collect -> evaluate -> drift -> alert.

A collector or evaluation failure keeps the last good findings (nothing is resolved by a blind spot) and
raises its own finding, because what cannot be verified is never safe."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Engine

from keyguard.alerts.notifier import Notifier, deliver_pending
from keyguard.checks.drift import apply_findings
from keyguard.errors import KeyguardError
from keyguard.policy.engine import PolicyEngine
from keyguard.policy.models import Finding, Severity
from keyguard.redact import redact_text
from keyguard.store.db import session_scope
from keyguard.store.models import CheckRun

log = logging.getLogger(__name__)

CHECK_FAILED_RULE = "KG-SVC-001"


@dataclass
class Collector:
    """Produces one policy input document (keys, execution, infra, vendors) for one scope."""

    scope: str
    collect: Callable[[], dict[str, Any]]


@dataclass
class CheckResult:
    scope: str
    ok: bool
    findings: list[Finding] = field(default_factory=list)
    transitions: list[str] = field(default_factory=list)
    error: str | None = None


def check_failed_finding(scope: str, error: str) -> Finding:
    return Finding(
        id=CHECK_FAILED_RULE,
        severity=Severity.high,
        resource=scope,
        message=f"check {scope} could not run, so its state is unknown: {error}",
        remediation=f"Restore what the {scope} check needs (exchange reachability, credentials, OPA, "
        "config); treat everything it covers as unsafe until it runs again.",
    )


class CheckService:
    def __init__(self, engine: PolicyEngine, store: Engine, collectors: list[Collector],
                 notifier: Notifier | None = None, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.engine, self.store, self.collectors, self.notifier, self.clock = engine, store, collectors, notifier, clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._run_lock = threading.Lock()
        self.last_results: dict[str, CheckResult] = {}

    def run_once(self) -> list[CheckResult]:
        with self._run_lock:  # a manual trigger and the schedule never interleave
            results = [self._run_collector(c) for c in self.collectors]
            if self.notifier is not None:
                try:
                    deliver_pending(self.store, self.notifier)
                except Exception as exc:  # delivery trouble must not stop checking
                    log.error("alert delivery failed: %s", redact_text(str(exc)))
            return results

    def _run_collector(self, collector: Collector) -> CheckResult:
        now = self.clock()
        run = CheckRun(scope=collector.scope, started_at=now)
        try:
            document = collector.collect()
            findings = self.engine.evaluate(document, source=collector.scope)
        except KeyguardError as exc:
            result = CheckResult(collector.scope, ok=False, error=redact_text(str(exc)))
        except Exception as exc:  # a collector bug is still a blind spot, reported like any other
            result = CheckResult(collector.scope, ok=False, error=redact_text(f"{exc.__class__.__name__}: {exc}"))
        else:
            result = CheckResult(collector.scope, ok=True, findings=findings)
        health = [] if result.ok else [check_failed_finding(collector.scope, result.error or "unknown error")]
        with session_scope(self.store) as session:
            if result.ok:
                result.transitions = [t.kind for t in apply_findings(session, collector.scope, result.findings, now)]
            result.transitions += [t.kind for t in apply_findings(session, f"{collector.scope}:health", health, now)]
            run.finished_at, run.ok, run.error = self.clock(), result.ok, result.error
            run.findings = len(result.findings)
            session.add(run)
        if not result.ok:
            log.warning("check %s failed; keeping its last good findings: %s", collector.scope, result.error)
        self.last_results[collector.scope] = result
        return result

    def start(self, interval_s: float) -> None:
        def loop() -> None:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    self.run_once()
                except Exception:  # the loop must survive anything; the error is already logged per check
                    log.exception("check cycle failed")
                self._stop.wait(max(0.0, interval_s - (time.monotonic() - started)))

        self._thread = threading.Thread(target=loop, name="keyguard-checks", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
