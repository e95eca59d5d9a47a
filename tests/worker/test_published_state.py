"""The worker publishes its live state; the service's execution check reads it and judges it by its own clock."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from keyguard.checks.scheduler import CheckService
from keyguard.policy import PolicyEngine
from keyguard.runtime import worker_state_collector
from keyguard.sandbox import Fault, SandboxHandle
from keyguard.store import create_store_engine, init_store
from tests.worker.conftest import WorkerFactory


def store(tmp_path: Path) -> Engine:
    engine = create_store_engine(f"sqlite:///{tmp_path}/svc.db")
    init_store(engine)
    return engine


def test_service_checks_the_state_the_worker_publishes(make_worker: WorkerFactory, policy_engine: PolicyEngine,
                                                       tmp_path: Path) -> None:
    worker = make_worker()
    worker.start()
    worker.heartbeat()
    published = json.loads(worker.live_state_file.read_text())
    assert published["kind"] == "execution" and published["state"]["heartbeat_at"]
    service = CheckService(policy_engine, store(tmp_path), [worker_state_collector(worker.live_state_file)])
    [result] = service.run_once()
    assert result.ok, result.error
    ids = {f.id for f in result.findings}
    assert "KG-EXE-207" not in ids  # fresh heartbeat
    assert "KG-EXE-106" in ids  # the kill switch has never been tested: a drill is due


def test_a_dead_workers_last_state_reads_as_a_stale_heartbeat(make_worker: WorkerFactory,
                                                              policy_engine: PolicyEngine, tmp_path: Path) -> None:
    worker = make_worker()
    worker.start()
    worker.heartbeat()
    doc = json.loads(worker.live_state_file.read_text())
    doc["state"]["heartbeat_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 600))
    doc["now"] = doc["state"]["heartbeat_at"]  # the file agrees with itself; only the service's clock does not
    worker.live_state_file.write_text(json.dumps(doc))
    service = CheckService(policy_engine, store(tmp_path), [worker_state_collector(worker.live_state_file)])
    [result] = service.run_once()
    assert "KG-EXE-207" in {f.id for f in result.findings}


def test_missing_state_file_is_a_failed_check_not_a_pass(policy_engine: PolicyEngine, tmp_path: Path) -> None:
    service = CheckService(policy_engine, store(tmp_path), [worker_state_collector(tmp_path / "nope.json")])
    [result] = service.run_once()
    assert not result.ok and "is the execution worker running" in (result.error or "")


@pytest.mark.parametrize(("setting", "rule"), [
    ({"order_retry": {"lookup_attempts": 0}}, "KG-EXE-108"),
    ({"data_retry": {"backoff": "constant", "jitter": False}}, "KG-EXE-110"),
    ({"reconnect": {"backoff": "none"}}, "KG-EXE-111"),
    ({"kill_switch": {"enabled": False}}, "KG-EXE-105"),
])
def test_a_running_worker_with_a_flawed_setting_is_reported(make_worker: WorkerFactory, policy_engine: PolicyEngine,
                                                            tmp_path: Path, setting: dict[str, object],
                                                            rule: str) -> None:
    worker = make_worker(**setting)
    worker.start()
    worker.heartbeat()
    service = CheckService(policy_engine, store(tmp_path), [worker_state_collector(worker.live_state_file)])
    [result] = service.run_once()
    fired = {f.id for f in result.findings}
    assert rule in fired
    assert not fired & ({"KG-EXE-105", "KG-EXE-108", "KG-EXE-110", "KG-EXE-111"} - {rule}), fired


def test_a_worker_without_look_ups_leaves_a_lost_answer_unknown_as_its_document_says(
        make_worker: WorkerFactory, sandbox: SandboxHandle) -> None:
    from keyguard.worker.journal import OrderStatus
    from keyguard.worker.orders import OrderIntent

    worker = make_worker(order_retry={"lookup_attempts": 0})
    worker.start()
    sandbox.set_faults(Fault(endpoint="POST /api/v3/order", kind="drop", when="after", times=1, hold_s=2.0))
    result = worker.submit(OrderIntent("BTCUSDT", "BTC", "BUY", 0.001, reference_price=60000.0))
    assert result.status is OrderStatus.UNKNOWN
    assert worker.live_state().to_policy_input()["config"]["order_retry"]["status_lookup"] is False
