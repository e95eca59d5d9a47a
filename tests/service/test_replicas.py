"""Several service replicas on one real PostgreSQL: each cycle runs on one of them, each transition is one alert
sent once, concurrent triggers never fail, and a replica killed with SIGKILL mid-cycle hands its work over."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import yaml
from sqlalchemy import text
from tests.sandbox import fixtures
from tests.servers import AlertReceiver
from tests.service.live import make_inventory, wait_for

from keyguard.config import load_settings
from keyguard.runtime import document_collector, run_service
from keyguard.sandbox import SandboxHandle
from keyguard.store import create_store_engine
from keyguard.store.models import as_utc
from keyguard.tools import PROJECT_ROOT

sandbox_config = fixtures.sandbox_config
sandbox = fixtures.sandbox

TOKEN = "test-token-0123456789abcdef"
VENDOR = {"name": "tradebot-cloud", "requires_withdraw": False, "supports_ip_restriction": True, "audit_log": True,
          "instant_revocation": True, "two_factor": True, "incidents_disclosed": True}


def write_vendor(path: Path, **facts: Any) -> None:
    """Replaced whole (as `mv` does): what replicas do with a file caught mid-save is test_files_being_saved's."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(yaml.safe_dump({"kind": "vendors", "vendors": [{**VENDOR, **facts}]}))
    os.replace(tmp, path)


def runs(store_url: str, scope: str) -> list[tuple[datetime, datetime, str]]:
    engine = create_store_engine(store_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT started_at, finished_at, runner FROM check_runs WHERE scope = :s "
                                     "ORDER BY started_at"), {"s": scope}).all()
    finally:
        engine.dispose()
    return [(r[0], r[1], r[2]) for r in rows]


def test_two_replicas_run_each_cycle_once_and_page_each_transition_once(
    tmp_path: Path, pg_store_url: str, alert_receiver: AlertReceiver
) -> None:
    vendors = tmp_path / "vendors.yaml"
    write_vendor(vendors)
    # Operators pressing "run now" in a tight loop: far over the per-token run limit, which is not under test here.
    settings = load_settings(store={"url": pg_store_url}, service={"port": 0, "run_rate_per_minute": 100_000},
                             checks={"interval_s": 0.5}, alerts={"routes": [{"url": alert_receiver.url}]})
    statuses: list[int] = []
    stop = threading.Event()

    def trigger(urls: list[str]) -> None:  # operators pressing "run now" on both replicas meanwhile
        with httpx.Client(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) as client:
            while not stop.is_set():
                for url in urls:
                    statuses.append(client.post(url + "/api/checks/run").status_code)

    with ExitStack() as stack:
        replicas = [stack.enter_context(run_service(settings, [document_collector(vendors)], TOKEN))
                    for _ in range(2)]
        hammer = threading.Thread(target=trigger, args=([r.url for r in replicas],))
        hammer.start()
        try:
            write_vendor(vendors, requires_withdraw=True)
            time.sleep(4)
            write_vendor(vendors)
            time.sleep(4)
        finally:
            stop.set()
            hammer.join()
        alerts = httpx.get(replicas[0].url + "/api/alerts", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert statuses and set(statuses) == {200}
    titles = [m["title"] for m in alert_receiver.received]
    assert titles == ["[keyguard] NEW CRITICAL KG-VEN-101 on vendor/tradebot-cloud",
                      "[keyguard] RESOLVED CRITICAL KG-VEN-101 on vendor/tradebot-cloud"]
    assert sorted(a["transition"] for a in alerts) == ["new", "resolved"]
    cycles = runs(pg_store_url, "file:vendors.yaml")
    assert len({runner for _, _, runner in cycles}) == 2  # both replicas did share the work
    for (_, finished, _), (started, _, _) in zip(cycles, cycles[1:], strict=False):
        assert started >= finished  # no two runs of the scope ever overlapped


def serve(config: Path, env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "keyguard.cli", "serve", "--config", str(config)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, cwd=PROJECT_ROOT)
    assert proc.stderr is not None
    for line in proc.stderr:
        match = re.search(r"serving on (http://127\.0\.0\.1:\d+)", line)
        if match:
            threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep draining its log
            return proc, match.group(1)
    raise AssertionError(f"keyguard serve exited with {proc.wait()} before serving")


def test_a_replica_killed_mid_cycle_hands_the_check_to_another(
    tmp_path: Path, pg_store_url: str, sandbox: SandboxHandle
) -> None:
    inventory, _ = make_inventory(tmp_path, sandbox, 2)
    # Each keys run takes about 1.5 s (exchange latency), every 2 s: the working replica is almost always mid-run.
    sandbox.set_faults({"endpoint": "GET /sapi/v1/account/apiRestrictions", "kind": "latency", "latency_ms": 1500})
    config = tmp_path / "keyguard.yaml"
    config.write_text(yaml.safe_dump({
        "service": {"port": 0}, "store": {"url": pg_store_url}, "inventory": str(inventory),
        "checks": {"interval_s": 2, "deadline_s": 6, "request_timeout_s": 5},
    }))
    env = {**os.environ, "KEYGUARD_API_TOKEN": TOKEN}
    first, _ = serve(config, env)
    second = None
    try:
        wait_for(lambda: [r for r in runs(pg_store_url, "keys") if f":{first.pid}:" in r[2]], 30)
        second, url = serve(config, env)
        # Kill the first replica while it holds the keys check (its run is in flight, not yet recorded).
        time.sleep(0.5)
        started = {r[0] for r in runs(pg_store_url, "keys")}
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        killed_at = datetime.now(UTC)
        taken = wait_for(lambda: [r for r in runs(pg_store_url, "keys")
                                  if f":{second.pid}:" in r[2] and r[0] not in started], 30)
        health = httpx.get(url + "/health", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=30)
    # The survivor's next run started within one interval (plus its one-second poll) of the kill.
    assert (as_utc(taken[0][0]) - killed_at).total_seconds() < 2 + 1 + 1
    # The survivor answers for the whole service from the shared store: it is the one running the keys check.
    assert health["checks"]["keys"]["runner"].split(":")[1] == str(second.pid)
