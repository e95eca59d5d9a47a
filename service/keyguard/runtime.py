"""Assembling a running Keyguard: policy engine, store, notifier, collectors, scheduler and HTTP API."""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import uvicorn
from sqlalchemy.engine import Engine

from keyguard.alerts import DeliveryService, Notifier
from keyguard.api.app import create_app
from keyguard.checks.activity import ActivityLedger
from keyguard.checks.scheduler import CheckService, Collector, Observation
from keyguard.config import ChecksSettings, InfraSettings, KeyguardSettings
from keyguard.errors import ConfigError, KeyguardError, ToolError
from keyguard.incidents.containment import ContainmentService
from keyguard.incidents.lifecycle import EscalationPolicy
from keyguard.loading import file_stamp
from keyguard.policy.documents import load_document
from keyguard.policy.engine import PolicyEngine
from keyguard.store.db import create_store_engine, init_store

log = logging.getLogger(__name__)


SETTLE_WINDOW_S = 2.0  # a file changed this recently may be half saved
SETTLE_PAUSE_S = 0.2
T = TypeVar("T")


def read_settled(path: Path, read: Callable[[Path], T]) -> T:
    """`read(path)`, tried again when it fails on a file that is being written. An editor saving a file truncates it
    and then writes it: a check that reads in between sees an empty or torn file, and would page for a failed check
    that is only a save in progress. A failed read is tried again 0.2 s later for as long as the file keeps changing
    or changed within the last 2 s (at most 3 s in all); a failure that stands is the file's own, reported as it is
    (the check keeps its last good findings and says why)."""
    give_up = time.monotonic() + SETTLE_WINDOW_S + 1.0
    while True:
        before = file_stamp(path)
        try:
            return read(path)
        except KeyguardError:
            after = file_stamp(path)
            changing = after != before or (after is not None and time.time() - after[0] / 1e9 < SETTLE_WINDOW_S)
            if after is None or not changing or time.monotonic() >= give_up:
                raise
            time.sleep(SETTLE_PAUSE_S)


def document_collector(path: Path) -> Collector:
    """A declared document (vendors list, worker config as a policy input) re-read every cycle."""
    return Collector(scope=f"file:{path.name}", collect=lambda: read_settled(path, load_document))


@dataclass
class RunningService:
    service: CheckService
    url: str
    api_token: str
    store: Engine
    delivery: DeliveryService
    containment: ContainmentService | None = None


def api_token_from(settings: KeyguardSettings, generate: bool) -> str:
    """The operator token named `env`: from the Secrets Manager secret when one is configured (no fallback: a
    secret that cannot be read stops the service), else from the environment variable."""
    secret = settings.service.api_token_secret
    if secret is not None:
        token = secret.read_string().strip()
        if len(token) < 16:
            raise ConfigError(f"Secrets Manager secret {secret.secret_id} (service.api_token_secret) must hold an "
                              "API token of at least 16 characters")
        return token
    token = os.environ.get(settings.service.api_token_env, "")
    if token:
        if len(token) < 16:
            raise ConfigError(f"{settings.service.api_token_env} must hold at least 16 characters")
        return token
    if generate:
        return secrets.token_urlsafe(24)
    raise ConfigError(f"set {settings.service.api_token_env} to the API bearer token (at least 16 characters)")


@contextlib.contextmanager
def policy_engine_for(settings: KeyguardSettings) -> Iterator[PolicyEngine]:
    """The settings' OPA: the external one at opa.url, else one keyguard starts and stops."""
    if settings.opa.url:
        yield PolicyEngine.external(settings.opa.url, policy_root=settings.opa.policy_dir, load=True)
    else:
        with PolicyEngine.managed(policy_root=settings.opa.policy_dir) as engine:
            yield engine


def escalation_policy(settings: KeyguardSettings) -> EscalationPolicy:
    incidents = settings.incidents
    return EscalationPolicy(renotify_s=incidents.renotify_s, escalate_after_s=incidents.escalate_after_s,
                            renotify_min_severity=incidents.renotify_min_severity)


@contextlib.contextmanager
def run_service(settings: KeyguardSettings, collectors: list[Collector], api_token: str,
                run_first_check: bool = True) -> Iterator[RunningService]:
    """Start everything; the block runs while the service serves; everything stops when it exits."""
    store = create_store_engine(settings.store.url)
    init_store(store)
    alerts = settings.alerts
    delivery = DeliveryService(store, Notifier(alerts.routes, alerts.connect_timeout_s, alerts.read_timeout_s),
                               give_up_s=alerts.give_up_s, backoff_base_s=alerts.backoff_base_s,
                               backoff_cap_s=alerts.backoff_cap_s, escalation=escalation_policy(settings))
    containment = None
    if settings.inventory is not None:
        containment = ContainmentService(store, settings.inventory, settings.containment,
                                         alerts_queued=delivery.wake)
    with policy_engine_for(settings) as engine:
        checks = settings.checks
        service = CheckService(engine, store, collectors, delivery.wake, interval_s=checks.interval_s,
                               deadline_s=checks.deadline_s, resolve_after=checks.resolve_after,
                               on_transitions=containment.consider if containment is not None else None)
        delivery.start()
        if run_first_check:
            service.run_once()  # before serving; the schedule then waits one interval, so start-up runs once
        service.start()
        app = create_app(service, api_token, settings.service, settings.incidents, containment, settings.checks)
        server = uvicorn.Server(uvicorn.Config(app, host=settings.service.host, port=settings.service.port,
                                               log_level="warning", access_log=False, lifespan="off"))
        thread = threading.Thread(target=server.run, name="keyguard-api", daemon=True)
        thread.start()
        deadline = time.monotonic() + 15
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                service.stop()
                delivery.stop()
                raise ToolError(f"the API could not listen on {settings.service.host}:{settings.service.port}")
            time.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        try:
            yield RunningService(service, f"http://{settings.service.host}:{port}", api_token, store, delivery,
                                 containment)
        finally:
            server.should_exit = True
            thread.join(timeout=10)
            service.stop()
            if containment is not None:
                containment.stop()
            delivery.stop()
            store.dispose()


def keys_collector(inventory_path: Path, checks: ChecksSettings | None = None,
                   store_url: str | None = None) -> Collector:
    """Inspect every key of the inventory at its exchange, concurrently, on the host's shared rate budget, by the
    run's deadline. The inventory is re-read each cycle, so an edit takes effect without a restart and a broken
    edit fails this check instead of the service."""
    from keyguard.checks.key_checks import keys_observation
    from keyguard.exchanges.inspector import KeyInspector
    from keyguard.exchanges.inventory import load_inventory

    checks = checks or ChecksSettings()
    inspector = KeyInspector(checks.budget, concurrency=checks.concurrency,
                             request_timeout_s=checks.request_timeout_s)
    ledgers: list[ActivityLedger] = []

    def ledger() -> ActivityLedger:  # watched accounts' foreign activity is kept in the service's store
        if not ledgers:
            store = create_store_engine(store_url or "sqlite:///keyguard.db")
            init_store(store)
            ledgers.append(ActivityLedger(store))
        return ledgers[0]

    def collect(deadline: float) -> Observation:
        inventory = read_settled(inventory_path, load_inventory)
        states = inspector.inspect(inventory, deadline)
        now = datetime.now(UTC)
        for key, state in zip(inventory.keys, states, strict=True):
            if key.activity is not None and state.activity_raw is not None:
                state.activity = ledger().document(key, state.activity_raw, now)
        return keys_observation(states, inventory.hosts)

    return Collector(scope="keys", collect=collect, takes_deadline=True)


def worker_state_collector(path: Path) -> Collector:
    """The execution worker's published live state (config, counters, positions, kill switch, heartbeat); its
    weight used and limit are kept with each run, for the dashboard's chart."""

    def collect() -> Observation:
        if not path.is_file():
            raise ConfigError(f"worker live state {path} does not exist: is the execution worker running?")
        doc = read_settled(path, load_document)
        # Judge the heartbeat by the service's clock: a dead worker's last file must read as stale.
        doc["now"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        state: dict[str, Any] = doc["state"] if isinstance(doc.get("state"), dict) else {}
        gauges = {name: state[name] for name in ("used_weight_1m", "weight_limit_1m") if state.get(name) is not None}
        return Observation(doc, gauges={"worker": str(doc.get("worker", path)), **gauges} if gauges else None)

    return Collector(scope="execution", collect=collect)


def infra_collector(infra: InfraSettings, inventory_path: Path | None) -> Collector:
    """Live AWS drift: the deployed stack read with boto3, judged by the same infra rules as the Pulumi program.
    With a keys inventory, every key whose allowed IP is not the live EIP is a finding (a migration left it)."""
    from keyguard.infra.drift import LiveAws, StackOutputs, collect_live_infra

    aws = LiveAws(infra.region, infra.endpoint_url)

    def collect() -> dict[str, Any]:
        bindings = None
        if inventory_path is not None:
            from keyguard.exchanges.inventory import load_inventory

            bindings = [{"key": k.id, "ips": [ip.value for ip in k.allowed_ips]}
                        for k in read_settled(inventory_path, load_inventory).keys if k.allowed_ips]
        return collect_live_infra(StackOutputs.from_file(infra.outputs), aws, bindings)

    return Collector(scope="infra", collect=collect)


def build_collectors(settings: KeyguardSettings) -> list[Collector]:
    """Every check the settings ask for; each collector builds one policy input document."""
    collectors = [document_collector(path) for path in settings.documents]
    if settings.inventory is not None:
        collectors.append(keys_collector(settings.inventory, settings.checks, settings.store.url))
    if settings.worker_state is not None:
        collectors.append(worker_state_collector(settings.worker_state))
    if settings.infra is not None:
        collectors.append(infra_collector(settings.infra, settings.inventory))
    return collectors


def wait_for_shutdown(service: CheckService | None = None, ready: Callable[[], None] | None = None) -> None:
    """Block until SIGINT or SIGTERM; SIGHUP reloads the policies (a broken bundle is logged and refused).

    `ready` runs once the handlers are in place, so whatever it announces ("serving on ...") is safe to signal.

    The handlers only note the signal: a handler that takes a lock (Event.set) deadlocks when a second signal
    arrives while the first is still inside it, and the service then ignores every later SIGTERM."""
    import signal

    received: list[int] = []
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: received.append(signum))
    if ready is not None:
        ready()
    while True:
        while received:
            if received.pop(0) != signal.SIGHUP:
                return
            if service is not None:
                try:
                    service.engine.reload()
                except KeyguardError as exc:
                    log.error("policy reload refused, keeping the last good bundle: %s", exc)
        time.sleep(0.1)
