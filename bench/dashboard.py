"""Dashboard page times: each page's server time with 500 inspected keys and 5,000 findings in the store (plus a
day of execution checks, 200 incidents, 1,000 alerts with their deliveries and attempts, and a gateway's live
document on the worker page).

Keyguard: each dashboard page, rendered by the service's own app (real managed OPA for the bundle's thresholds,
a SQLite store), timed from the request entering the app to the last byte of the response. Baseline: what an
on-call person reads today, the API's JSON for the same facts (GET /api/findings, /api/incidents, /api/alerts,
/api/observations), timed the same way. Target: every page under 200 ms.

    uv run python -m bench.dashboard [--keys 500 --findings 5000 --runs 30]
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from fastapi.testclient import TestClient

from keyguard.api.access import ENV_TOKEN_NAME, Principal, Role
from keyguard.api.app import create_app
from keyguard.checks.scheduler import CheckService
from keyguard.incidents.containment import ContainmentService
from keyguard.policy import PolicyEngine
from keyguard.store.db import create_store_engine, init_store, session_scope
from keyguard.store.models import (
    AlertDelivery,
    AlertRecord,
    CheckRun,
    CheckSchedule,
    DeliveryAttempt,
    FindingRecord,
    Incident,
    IncidentEvent,
    ObservationRecord,
)
from keyguard.web.sessions import SESSION_COOKIE, open_session

TOKEN = "bench-token-0123456789abcdef"
TARGET_MS = 200.0
RULES = [("KG-KEY-101", "critical"), ("KG-IP-101", "critical"), ("KG-ROT-101", "high"), ("KG-STO-101", "high"),
         ("KG-ROT-102", "medium"), ("KG-CLK-101", "medium"), ("KG-ACT-105", "low"), ("KG-STO-103", "low")]

Scope = MutableMapping[str, Any]
App = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class ServerTimer:
    """ASGI wrapper: the time from the request entering the app to the response's last body chunk."""

    def __init__(self, app: App) -> None:
        self.app, self.last_ms = app, 0.0

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Any]],
                       send: Callable[[Any], Awaitable[None]]) -> None:
        started = time.perf_counter()

        async def timed_send(message: Any) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                self.last_ms = (time.perf_counter() - started) * 1000

        await self.app(scope, receive, timed_send)


def fill(tmp: Path, keys: int, findings: int) -> tuple[Any, Path]:
    store = create_store_engine(f"sqlite:///{tmp / 'keyguard.db'}")
    init_store(store)
    now = datetime.now(UTC)
    rng = random.Random(15)
    state_dir = tmp / "gateway"
    state_dir.mkdir()
    (tmp / "gateway.yaml").write_text(yaml.safe_dump({
        "gateway": "bench-gateway", "state_dir": str(state_dir), "listen": {"port": 0},
        "exchange": {"base_url": "http://127.0.0.1:9", "api_key_env": "BENCH_KEY", "api_secret_env": "BENCH_SECRET"},
        "bots": {"alpha": {"max_order_notional": 500}, "beta": {"max_order_notional": 500}}}))
    (state_dir / "live_state.json").write_text(json.dumps({
        "kind": "execution", "worker": "bench-gateway", "now": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "config": {"max_order_notional": 1500.0, "max_orders_per_minute": 30, "max_position": {"BTC": 0.5},
                   "daily_loss_limit": 2000.0, "rate_limit_budget_fraction": 0.9, "stage": "sandbox"},
        "state": {"heartbeat_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"), "kill_switch_engaged": False,
                  "trading_state": "ACTIVE", "orders_last_minute": 12, "largest_order_notional_today": 60.0,
                  "positions": {"BTC": 0.01}, "daily_pnl": -3.5, "used_weight_1m": 675, "weight_limit_1m": 6000,
                  "bots": {b: {"kill_switch_engaged": False, "held_reason": None, "trading_state": "ACTIVE",
                               "orders_last_minute": 6, "refusals": {}, "positions": {"BTC": 0.005},
                               "daily_pnl": -1.75} for b in ("alpha", "beta")}}}))
    inventory_keys = []
    with session_scope(store) as session:
        for i in range(keys):
            resource = f"binance/bot-{i}"
            created = now - timedelta(days=rng.randint(1, 120))
            inventory_keys.append({
                "id": f"bot-{i}", "exchange": "binance", "purpose": "execution", "services": [f"svc-{i}"],
                "credentials": {"api_key_env": "BENCH_KEY", "secret_env": "BENCH_SECRET"},
                "allowed_ips": [{"value": "127.0.0.1", "reason": "execution host"}],
                **({"workers": ["gateway.yaml"]} if i == 0 else {})})
            session.add(ObservationRecord(
                scope="keys", resource=resource, last_attempt_at=now, last_ok_at=now,
                facts={"id": f"bot-{i}", "exchange": "binance", "purpose": "execution", "services": [f"svc-{i}"],
                       "permissions": {"read": True, "trade": True, "transfer": False, "withdraw": i % 50 == 0},
                       "permissions_source": "reported", "ip_restricted": True,
                       "allowed_ips": [{"value": "127.0.0.1"}], "ip_binding_source": "probed",
                       "created_at": created.strftime("%Y-%m-%dT%H:%M:%SZ"), "expires_at": None,
                       "storage": {"backend": "env", "kms": "none", "host_locked": True}}))
        for n in range(findings):
            rule, severity = RULES[n % len(RULES)]
            first = now - timedelta(minutes=rng.randint(1, 7 * 1440))
            resolved = n % 3 == 0
            session.add(FindingRecord(
                scope="keys", fingerprint=f"{rule}:{n}", rule_id=rule, severity=severity,
                resource=f"binance/bot-{n % keys}", message=f"{rule} fires on bot-{n % keys}",
                remediation="Fix it.", evidence={"key": {"id": f"bot-{n % keys}", "ip_restricted": True}},
                status="resolved" if resolved else "open", first_seen=first, last_seen=now,
                resolved_at=first + timedelta(minutes=30) if resolved else None))
        for n in range(200):
            session.add(Incident(scope="keys", fingerprint=f"KG-KEY-101:{n}", rule_id="KG-KEY-101",
                                 severity="critical", resource=f"binance/bot-{n}", title=f"NEW CRITICAL KG-KEY-101 {n}",
                                 status=("open", "acknowledged", "resolved")[n % 3], opened_at=now - timedelta(hours=n),
                                 last_notified_at=now))
        for minute in range(1440):
            session.add(CheckRun(scope="execution", started_at=now - timedelta(minutes=minute), ok=True,
                                 finished_at=now - timedelta(minutes=minute),
                                 gauges={"worker": "bench-gateway", "used_weight_1m": rng.randint(100, 5000),
                                         "weight_limit_1m": 6000}))
        for scope in ("keys", "execution"):
            session.add(CheckSchedule(scope=scope, last_ok_at=now, last_finished_at=now))
    with session_scope(store) as session:
        for n in range(1, 201):
            session.add(IncidentEvent(incident_pk=n, at=now, kind="opened", actor="keyguard", detail="new"))
        for n in range(1000):
            alert = AlertRecord(transition="new", scope="keys", fingerprint=f"KG-KEY-101:{n % 200}",
                                rule_id="KG-KEY-101", severity="critical", resource=f"binance/bot-{n % 200}",
                                title="NEW CRITICAL KG-KEY-101", body="...", created_at=now, fanned_out=True,
                                delivered_at=now if n % 10 else None, incident_pk=n % 200 + 1)
            session.add(alert)
            session.flush()
            for route in ("route-0", "route-1"):
                delivery = AlertDelivery(alert_pk=alert.pk or 0, route=route,
                                         status="delivered" if n % 10 else "pending", attempts=2)
                session.add(delivery)
                session.flush()
                for ok in (False, True):
                    session.add(DeliveryAttempt(delivery_pk=delivery.pk or 0, at=now, ok=ok, duration_ms=12,
                                                detail="accepted" if ok else "HTTP 500"))
    inventory = tmp / "inventory.json"
    inventory.write_text(json.dumps({"hosts": [{"name": "exec", "ip": "127.0.0.1"}],
                                     "exchange_urls": {"binance": "http://127.0.0.1:9"}, "keys": inventory_keys}))
    return store, inventory


def run(keys: int, findings: int, runs: int) -> dict[str, list[float]]:
    timings: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp, PolicyEngine.managed() as engine:
        store, inventory = fill(Path(tmp), keys, findings)
        service = CheckService(engine, store, [])
        app = create_app(service, TOKEN, containment_service=ContainmentService(store, inventory))
        timer = ServerTimer(app)  # type: ignore[arg-type]
        session_id = open_session(store, Principal(ENV_TOKEN_NAME, Role.operator), datetime.now(UTC))
        pages = ["/ui/", "/ui/fragments/overview", "/ui/incidents", "/ui/incidents/1", "/ui/alerts", "/ui/keys",
                 "/ui/keys/binance/bot-0", "/ui/worker", "/ui/fragments/worker"]
        api = ["/api/findings", "/api/incidents?status=active&limit=1000", "/api/alerts?limit=1000",
               "/api/observations"]
        with TestClient(timer) as client:  # type: ignore[arg-type]
            client.cookies.set(SESSION_COOKIE, session_id)
            for path in pages + api:
                headers = {"Authorization": f"Bearer {TOKEN}"} if path.startswith("/api") else {}
                client.get(path, headers=headers)  # warm: templates compiled, caches filled
                timings[path] = []
                for _ in range(runs):
                    response = client.get(path, headers=headers)
                    if response.status_code != 200:
                        raise SystemExit(f"{path}: HTTP {response.status_code}: {response.text[:300]}")
                    timings[path].append(timer.last_ms)
        service.stop()
    return timings


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench.dashboard")
    parser.add_argument("--keys", type=int, default=500)
    parser.add_argument("--findings", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args(argv)
    for noisy in ("keyguard", "httpx"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    timings = run(args.keys, args.findings, args.runs)
    print(f"{args.keys} keys, {args.findings} findings, 200 incidents, 1,000 alerts on 2 routes, 1,440 execution "
          f"checks; {args.runs} requests per page, server time")
    print(f"{'page':<48}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}")
    for path, values in timings.items():
        label = ("baseline (API JSON) " if path.startswith("/api") else "Keyguard ") + path
        print(f"{label:<48}{statistics.median(values):>9.1f}{percentile(values, 0.95):>9.1f}{max(values):>9.1f}")
    slow = [p for p, v in timings.items() if not p.startswith("/api") and percentile(v, 0.95) >= TARGET_MS]
    print(f"target (every page p95 < {TARGET_MS:.0f} ms): " + ("met" if not slow else f"missed by {', '.join(slow)}"))


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
