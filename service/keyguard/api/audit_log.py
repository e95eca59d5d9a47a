"""The audit log: every operator action and every refused attempt at one, with who, what, on what, and how it
ended. A detail is redacted and cut short before it is stored; a token never reaches it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from keyguard.redact import redact_text
from keyguard.store.db import session_scope
from keyguard.store.models import AuditEntry

DETAIL_MAX = 300


class AuditResult(StrEnum):
    ok = "ok"
    refused = "refused"  # not allowed: wrong role, rate limit
    failed = "failed"  # allowed, tried, did not succeed


def record_action(store: Engine, actor: str, role: str, action: str, target: str, result: AuditResult,
                  detail: str = "", at: datetime | None = None) -> None:
    """Write one entry in its own transaction, so a refusal is kept even though the request then fails."""
    detail = redact_text(detail)
    if len(detail) > DETAIL_MAX:
        detail = detail[: DETAIL_MAX - 3] + "..."
    with session_scope(store) as session:
        session.add(AuditEntry(at=at or datetime.now(UTC), actor=actor, role=role, action=action, target=target,
                               result=result.value, detail=detail))


def audit_entries(session: Session, limit: int, actor: str | None = None, action: str | None = None,
                  result: AuditResult | None = None) -> list[AuditEntry]:
    """Newest first."""
    query = select(AuditEntry)
    if actor:
        query = query.where(AuditEntry.actor == actor)
    if action:
        query = query.where(AuditEntry.action == action)
    if result:
        query = query.where(AuditEntry.result == result.value)
    return list(session.exec(query.order_by(col(AuditEntry.pk).desc()).limit(limit)).all())


@dataclass
class OperatorAction:
    """One operator action in progress: the route reports its outcome once, and whatever it does not report is
    recorded when the request ends (ok, or failed with the error's type)."""

    store: Engine
    actor: str
    role: str
    action: str
    target: str
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    recorded: bool = False

    def _record(self, result: AuditResult, detail: str) -> None:
        if not self.recorded:
            self.recorded = True
            record_action(self.store, self.actor, self.role, self.action, self.target, result, detail, self.clock())

    def ok(self, detail: str = "") -> None:
        self._record(AuditResult.ok, detail)

    def failed(self, detail: str) -> None:
        self._record(AuditResult.failed, detail)

    def refused(self, detail: str) -> None:
        self._record(AuditResult.refused, detail)
