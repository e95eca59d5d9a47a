"""Alert delivery through apprise, from the outbox the transitions fill: durable, per route, with dedup keys."""

from keyguard.alerts.delivery import DeliveryService
from keyguard.alerts.notifier import AlertRoute, Notifier

__all__ = ["AlertRoute", "DeliveryService", "Notifier"]
