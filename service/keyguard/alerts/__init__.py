"""Alert delivery through apprise, from the outbox the drift step fills."""

from keyguard.alerts.notifier import AlertRoute, Notifier, deliver_pending

__all__ = ["AlertRoute", "Notifier", "deliver_pending"]
