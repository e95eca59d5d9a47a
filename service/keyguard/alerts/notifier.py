"""Alert routes: where alerts go (apprise URLs with a minimum severity), with real timeouts and dedup keys.

Each route is sent to on its own; a route that cannot be reached holds only its own deliveries. PagerDuty and
Opsgenie routes get the finding's fingerprint as `dedup_key` / `alias` and trigger or resolve with the
transition, so retries, crashes and replicas fold into one incident there; JSON webhooks get both as fields."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import apprise
import requests

from keyguard.config import AlertRoute
from keyguard.errors import ConfigError
from keyguard.policy.models import Severity
from keyguard.redact import redact_text
from keyguard.store.models import AlertRecord

log = logging.getLogger("keyguard.alerts")
LOG_ROUTE = "log"


@dataclass(frozen=True)
class SendResult:
    ok: bool
    duration_ms: int
    detail: str


class Route:
    """One configured route. `send` makes one attempt; the caller records it and schedules the next."""

    def __init__(self, name: str, url: str | None, min_severity: Severity, fallback: bool,
                 connect_timeout_s: float = 4.0, read_timeout_s: float = 10.0, tier: int = 0) -> None:
        self.name, self.min_severity, self.fallback, self.tier = name, min_severity, fallback, tier
        self.url = _with_timeouts(url, connect_timeout_s, read_timeout_s) if url else None
        self.scheme = url.split("://", 1)[0].lower() if url else LOG_ROUTE

    def wants(self, severity: str) -> bool:
        return Severity(severity).rank >= self.min_severity.rank

    def takes(self, alert: AlertRecord) -> bool:
        """Whether this (primary) route is owed `alert`: its severity, its tier, and a transition the receiver can
        act on (PagerDuty and Opsgenie have no acknowledge through apprise: a trigger there would re-open)."""
        if not self.wants(alert.severity) or self.tier > alert.tier:
            return False
        return not (alert.transition == "acknowledged" and self.scheme in ("pagerduty", "opsgenie"))

    def send(self, alert: AlertRecord) -> SendResult:
        started = time.monotonic()
        title, body = redact_text(alert.title), redact_text(alert.body)
        if self.url is None:  # no route configured: the log is the route, as the README promises
            log.warning("ALERT %s\n%s\n(dedup key %s)", title, body, alert.dedup_key)
            return SendResult(True, 0, "written to the service log")
        target = apprise.Apprise()
        if not target.add(self.url_for(alert)):
            return SendResult(False, 0, "apprise refused the route URL for this alert")
        notify_type = {"resolved": apprise.NotifyType.SUCCESS, "acknowledged": apprise.NotifyType.INFO}.get(
            alert.transition, apprise.NotifyType.FAILURE)
        if self.scheme == "pagerduty":
            body = body.split("\n", 1)[0][:900]  # the event's summary: PagerDuty keeps 1024 characters
        try:
            if self.scheme == "opsgenie" and alert.transition == "resolved":
                ok = self._opsgenie_close(alert.dedup_key, body)
            else:
                ok = bool(target.notify(title=title, body=f"{body}\n\ndedup key: {alert.dedup_key}",
                                        notify_type=notify_type))
        except Exception as exc:  # a plugin bug is a failed attempt, never a crashed delivery loop
            return SendResult(False, _ms(started), redact_text(f"{exc.__class__.__name__}: {exc}")[:300])
        # AppriseResult is truthy only on success (anchors.md: its truth is success only).
        return SendResult(ok, _ms(started), "accepted" if ok else "not accepted (refused, error status or timeout)")

    def _opsgenie_close(self, alias: str, note: str) -> bool:
        """Close the Opsgenie alert by its alias (POST /v2/alerts/{alias}/close?identifierType=alias). apprise's
        plugin closes by the request id it kept in memory, which is not an alert id and is gone after a restart
        or on another replica: the alias is what every replica and restart agree on."""
        from apprise.plugins.opsgenie import OPSGENIE_API_LOOKUP

        assert self.url is not None
        plugin: Any = apprise.Apprise.instantiate(self.url)
        response = requests.post(
            f"{OPSGENIE_API_LOOKUP[plugin.region_name]}/{quote(alias, safe='')}/close",
            params={"identifierType": "alias"}, json={"source": "keyguard", "note": note[:25000]},
            headers={"Authorization": f"GenieKey {plugin.apikey}"},
            timeout=(plugin.socket_connect_timeout, plugin.socket_read_timeout),
        )
        return response.status_code in (200, 201, 202)

    def url_for(self, alert: AlertRecord) -> str:
        """The route URL for this alert, carrying its dedup key and what the receiver should do with it."""
        assert self.url is not None
        resolve = alert.transition == "resolved"
        extra: dict[str, str] = {}
        if self.scheme == "pagerduty":
            extra = {"dedup": alert.dedup_key, "action": "resolve" if resolve else "trigger"}
        elif self.scheme == "opsgenie":
            extra = {"alias": alert.dedup_key, "action": "close" if resolve else "new"}
        elif self.scheme in ("json", "jsons"):
            extra = {":dedup_key": alert.dedup_key, ":transition": alert.transition}
        if not extra:
            return self.url
        return f"{self.url}{'&' if '?' in self.url else '?'}{urlencode(extra)}"


class Notifier:
    """The configured routes; with none, the service log is the one route (and the fallback)."""

    def __init__(self, routes: list[AlertRoute], connect_timeout_s: float = 4.0, read_timeout_s: float = 10.0):
        self.routes: list[Route] = []
        names: set[str] = set()
        for index, route in enumerate(routes):
            if not _understood(route.url):
                # Neither the URL nor apprise's complaint is shown: apprise URLs carry tokens in any part.
                raise ConfigError(
                    f"alerts.routes[{index}].url is not a URL apprise understands (the URL is not repeated: it holds "
                    "credentials); see apprise's URL formats, e.g. json://host:port/path"
                )
            name = route.name or f"route-{index}"
            if name in names or name == LOG_ROUTE:
                raise ConfigError(f"alerts.routes[{index}].name {name!r} is used twice (or is the reserved 'log')")
            names.add(name)
            self.routes.append(Route(name, route.url, route.min_severity, route.fallback, connect_timeout_s,
                                     read_timeout_s, route.tier))
        if not any(not r.fallback for r in self.routes):
            self.routes.append(Route(LOG_ROUTE, None, Severity.low, fallback=False))
        if not any(r.fallback for r in self.routes):
            # What no route delivered in time is at least in the log, and the alerting finding says why.
            self.routes.append(Route(LOG_ROUTE + "-fallback", None, Severity.low, fallback=True))

    def route(self, name: str) -> Route | None:
        return next((r for r in self.routes if r.name == name), None)

    @property
    def primary(self) -> list[Route]:
        return [r for r in self.routes if not r.fallback]

    @property
    def fallbacks(self) -> list[Route]:
        return [r for r in self.routes if r.fallback]

    @property
    def tiers(self) -> list[int]:
        """The escalation tiers the primary routes form, lowest first."""
        return sorted({r.tier for r in self.primary})


def _understood(url: str) -> bool:
    apprise_log = logging.getLogger("apprise")
    level = apprise_log.level
    apprise_log.setLevel(logging.CRITICAL + 1)
    try:
        return bool(apprise.Apprise().add(url))
    finally:
        apprise_log.setLevel(level)


def _with_timeouts(url: str, connect_s: float, read_s: float) -> str:
    """apprise's own default read timeout is 4 s whatever the caller wants: set both explicitly (cto, rto)."""
    query = url.split("?", 1)[1] if "?" in url else ""
    given = {part.split("=", 1)[0] for part in query.split("&") if part}
    extra = {k: f"{v:g}" for k, v in (("cto", connect_s), ("rto", read_s)) if k not in given}
    if not extra:
        return url
    return f"{url}{'&' if '?' in url else '?'}{urlencode(extra)}"


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
