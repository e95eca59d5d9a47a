"""Apprise delivery with severity routing: each route receives alerts at or above its minimum severity.

Each route is its own Apprise object, so a partial failure retries only the routes that did not accept."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import apprise
from pydantic import BaseModel
from sqlalchemy.engine import Engine
from sqlmodel import select

from keyguard.errors import ConfigError
from keyguard.policy.models import Severity
from keyguard.redact import redact_text
from keyguard.store.db import session_scope
from keyguard.store.models import AlertRecord

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 10
SEND_TIMEOUT_S = 15.0


class AlertRoute(BaseModel):
    url: str
    min_severity: Severity = Severity.low


class Notifier:
    def __init__(self, routes: list[AlertRoute]) -> None:
        self.routes: list[tuple[AlertRoute, apprise.Apprise]] = []
        for index, route in enumerate(routes):
            target = apprise.Apprise()
            if not target.add(route.url):
                raise ConfigError(
                    f"alerts.routes[{index}].url is not a URL apprise understands "
                    f"({redact_text(route.url)!r}); see apprise's URL formats, e.g. json://host:port/path"
                )
            self.routes.append((route, target))

    def send(self, alert: AlertRecord, skip: set[int]) -> tuple[list[int], list[str]]:
        """Deliver to every route that wants this severity and has not accepted it yet.

        Returns (indexes of routes that accepted now, errors of those that did not)."""
        accepted: list[int] = []
        errors: list[str] = []
        severity = Severity(alert.severity)
        notify_type = apprise.NotifyType.SUCCESS if alert.transition == "resolved" else apprise.NotifyType.FAILURE
        for index, (route, target) in enumerate(self.routes):
            if index in skip or severity.rank < route.min_severity.rank:
                continue
            result = target.notify(
                title=redact_text(alert.title), body=redact_text(alert.body), notify_type=notify_type,
                timeout=SEND_TIMEOUT_S,
            )
            # AppriseResult is truthy only on success (anchors.md: its truth is success only).
            if result:
                accepted.append(index)
            else:
                errors.append(f"route {index}: {getattr(result, 'status', 'failed')}")
        return accepted, errors


def deliver_pending(engine: Engine, notifier: Notifier) -> tuple[int, int]:
    """Send undelivered alerts oldest first; returns (delivered, failed). Failures stay queued for retry.

    Each alert is claimed with SELECT ... FOR UPDATE SKIP LOCKED and held while it is sent, so with several
    replicas on one PostgreSQL each alert is sent by one of them; the others pass it by."""
    delivered = failed = 0
    with session_scope(engine) as session:
        pending = session.exec(
            select(AlertRecord.pk)
            .where(AlertRecord.delivered_at.is_(None), AlertRecord.attempts < MAX_ATTEMPTS)  # type: ignore[union-attr]
            .order_by(AlertRecord.pk)  # type: ignore[arg-type]
        ).all()
    for pk in pending:
        with session_scope(engine) as session:
            alert = session.exec(
                select(AlertRecord)
                .where(AlertRecord.pk == pk, AlertRecord.delivered_at.is_(None))  # type: ignore[union-attr]
                .with_for_update(skip_locked=True)
            ).first()
            if alert is None:  # another replica has it, or has delivered it
                continue
            alert.attempts += 1
            try:
                accepted, errors = notifier.send(alert, skip=set(alert.delivered_routes))
            except Exception as exc:  # a broken route must not stop the others or the service
                accepted, errors = [], [redact_text(f"{exc.__class__.__name__}: {exc}")[:500]]
            alert.delivered_routes = sorted({*alert.delivered_routes, *accepted})
            if errors:
                alert.last_error = "; ".join(errors)[:500]
                failed += 1
                log.warning("alert %s for %s not delivered (attempt %d)", alert.rule_id, alert.resource, alert.attempts)
            else:
                alert.delivered_at, alert.last_error = datetime.now(UTC), None
                delivered += 1
            session.add(alert)
    return delivered, failed
