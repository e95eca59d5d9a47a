"""Containment as the on-call person meets it: `keyguard incident contain KEY` against a real sandbox exchange, a
real execution worker (its journal, its kill switch file) and moto's Secrets Manager over HTTP. Each step is
done and read back, or reported failed or not available, never assumed; --dry-run changes nothing."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import ccxt
import pytest
import yaml
from tests.sandbox import fixtures

from keyguard.sandbox import SandboxHandle
from keyguard.sandbox.server import BINANCE_SPOT_ONLY_OPTIONS
from keyguard.tools import PROJECT_ROOT
from keyguard.worker.config import WorkerConfig
from keyguard.worker.killswitch import KillSwitch
from keyguard.worker.orders import OrderIntent
from keyguard.worker.risk import KILL_SWITCH
from keyguard.worker.runtime import ExecutionWorker, build_worker

sandbox_config = fixtures.sandbox_config
sandbox = fixtures.sandbox

REGION = "eu-west-1"
TRADE = {"enableReading": True, "enableSpotAndMarginTrading": True}
PRICE = 60000.0


pytestmark = pytest.mark.usefixtures("aws_env")  # boto3 against moto (tests/conftest.py)


@dataclass
class Deployment:
    config: Path
    inventory: Path
    worker_config: Path
    worker: ExecutionWorker
    key: dict[str, Any]
    secret_id: str
    moto_url: str
    sandbox: SandboxHandle

    def outsider(self) -> ccxt.binance:
        """Someone else's client with the bot's key (from the allowed host: malware, or a leaked secret)."""
        return ccxt.binance({"apiKey": self.key["api_key"], "secret": self.key["secret"],
                             "urls": self.sandbox.ccxt_urls(), "options": dict(BINANCE_SPOT_ONLY_OPTIONS)})

    def kill_switch(self) -> KillSwitch:
        return KillSwitch(WorkerConfig.model_validate(yaml.safe_load(self.worker_config.read_text()))
                          .kill_switch_path)

    def secret_policy(self) -> dict[str, Any]:
        sm = boto3.client("secretsmanager", region_name=REGION, endpoint_url=self.moto_url)
        return dict(json.loads(sm.get_resource_policy(SecretId=self.secret_id).get("ResourcePolicy") or "{}"))

    def open_orders(self) -> list[Any]:
        return [o for o in self.sandbox.exchange.orders_of("main") if o.status in ("NEW", "PARTIALLY_FILLED")]


def write_deployment(tmp_path: Path, sandbox: SandboxHandle, moto_url: str, *, secret_id: str | None = None,
                     **key_extra: Any) -> Deployment:
    key = sandbox.create_key(label="bot-1", flags=TRADE, ip_restrict=True, ips=["127.0.0.1"])
    sm = boto3.client("secretsmanager", region_name=REGION, endpoint_url=moto_url)
    name = f"keyguard/{tmp_path.name}/bot-1"
    arn = str(sm.create_secret(Name=name, SecretString=json.dumps({"api_key": key["api_key"],
                                                                   "secret": key["secret"]}))["ARN"])
    worker_settings = {"worker": "exec-1", "state_dir": str(tmp_path / "worker"),
                       "exchange": {"base_url": sandbox.url, "timeout_s": 2},
                       "limiter": {"budget_path": str(tmp_path / "budget")}}
    worker_config = tmp_path / "worker.yaml"
    worker_config.write_text(yaml.safe_dump(worker_settings))
    worker = build_worker(WorkerConfig.model_validate(worker_settings), key["api_key"], key["secret"], sandbox.url)
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(yaml.safe_dump({
        "hosts": [{"name": "exec-1", "ip": "127.0.0.1"}],
        "exchange_urls": {"binance": sandbox.url},
        "probe": {"source_ip": "127.0.0.1", "from": "127.0.0.2"},
        "keys": [{
            "id": "bot-1", "exchange": "binance", "purpose": "execution", "services": ["worker"],
            "credentials": {"aws_secret": {"secret_id": secret_id or arn, "region": REGION, "endpoint_url": moto_url}},
            "allowed_ips": [{"value": "127.0.0.1", "reason": "execution host EIP"}],
            "workers": ["worker.yaml"], **key_extra,
        }],
    }))
    config = tmp_path / "keyguard.yaml"
    config.write_text(yaml.safe_dump({"store": {"url": f"sqlite:///{tmp_path}/kg.db"}, "inventory": "inventory.yaml"}))
    return Deployment(config, inventory, worker_config, worker, key, arn, moto_url, sandbox)


@pytest.fixture
def deployment(tmp_path: Path, sandbox: SandboxHandle, moto_url: str) -> Iterator[Deployment]:
    made = write_deployment(tmp_path, sandbox, moto_url)
    yield made
    made.worker.client.close()


def keyguard(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "keyguard.cli", *args], capture_output=True, text=True,
                          cwd=PROJECT_ROOT, timeout=120)


def resting(worker: ExecutionWorker) -> Any:
    return worker.submit(OrderIntent("BTCUSDT", "BTC", "BUY", 0.001, order_type="LIMIT", price=50000.0,
                                     reference_price=PRICE))


def test_contain_by_hand_stops_the_worker_cancels_orders_and_blocks_the_secret(deployment: Deployment) -> None:
    deployment.worker.start()
    assert resting(deployment.worker).status == "NEW"
    deployment.outsider().create_order("BTCUSDT", "limit", "buy", 0.002, 49000.0)
    assert len(deployment.open_orders()) == 2

    run = keyguard("incident", "contain", "bot-1", "--config", str(deployment.config), "--reason", "leak drill")
    assert run.returncode == 0, run.stdout + run.stderr
    for action in ("kill_switch", "cancel_open_orders", "cut_key", "block_secret"):
        assert action in run.stdout
    # The cut is not available on a Binance key without a master-account admin key: said, with the manual step.
    assert "not_available" in run.stdout and "API Management" in run.stdout

    assert deployment.kill_switch().engaged  # read by another process, as the worker reads it
    refused = resting(deployment.worker)
    assert refused.refusal_code == KILL_SWITCH  # the running worker stops at once
    assert deployment.open_orders() == []  # its orders and the outsider's are cancelled
    [deny] = [s for s in deployment.secret_policy()["Statement"] if s.get("Sid") == "KeyguardContainment"]
    assert deny["Effect"] == "Deny" and deny["Action"] == "secretsmanager:GetSecretValue"


def test_an_order_that_fills_while_being_cancelled_leaves_the_cancel_step_done(deployment: Deployment) -> None:
    """The resting order is read as open, then fills before the cancel reaches the exchange, which answers -2011
    ("Unknown order sent.", nothing left open). The step is judged by reading the orders back: done, not failed."""
    deployment.worker.start()
    assert resting(deployment.worker).status == "NEW"
    exchange = deployment.sandbox.exchange
    # The cancel is held 1.5 s at the exchange; the market reaches the bid while it waits.
    deployment.sandbox.set_faults({"endpoint": "DELETE /api/v3/openOrders", "kind": "latency", "latency_ms": 1500,
                                   "times": 1})

    def fill_when_the_cancel_is_held() -> None:
        deadline = time.monotonic() + 60
        while exchange.faults and time.monotonic() < deadline:  # taken when the cancel arrives
            time.sleep(0.01)
        exchange.set_price("BTCUSDT", 49000.0)

    filler = threading.Thread(target=fill_when_the_cancel_is_held, daemon=True)
    filler.start()
    run = keyguard("incident", "contain", "bot-1", "--config", str(deployment.config), "--reason", "race drill")
    filler.join(timeout=10)
    [order] = exchange.orders_of("main")
    assert order.status == "FILLED", "the order filled while the cancel was on its way"
    cancel_line = next(line for line in run.stdout.splitlines() if "cancel_open_orders" in line)
    assert "done" in cancel_line and "failed" not in cancel_line, run.stdout


def test_a_dry_run_says_what_it_would_do_and_changes_nothing(deployment: Deployment) -> None:
    deployment.worker.start()
    assert resting(deployment.worker).status == "NEW"
    run = keyguard("incident", "contain", "bot-1", "--dry-run", "--config", str(deployment.config))
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.count("planned") >= 4 and "dry run: nothing changed" in run.stdout
    assert not deployment.kill_switch().engaged
    assert len(deployment.open_orders()) == 1
    assert resting(deployment.worker).status == "NEW"
    assert "KeyguardContainment" not in json.dumps(deployment.secret_policy())


def test_a_step_that_fails_is_reported_failed_and_the_others_still_run(
        tmp_path: Path, sandbox: SandboxHandle, moto_url: str) -> None:
    made = write_deployment(tmp_path, sandbox, moto_url,
                            secret_id=f"arn:aws:secretsmanager:{REGION}:123456789012:secret:gone-AbCdEf")
    try:
        run = keyguard("incident", "contain", "bot-1", "--config", str(made.config))
        assert run.returncode == 1, run.stdout + run.stderr
        assert "partial" in run.stdout
        lines = run.stdout
        assert "kill_switch" in lines and made.kill_switch().engaged  # done and read back
        # Without its secret the key's orders cannot be cancelled, and the policy of a missing secret cannot be
        # written: both are failed, with the reason, never done.
        assert lines.count("failed") >= 2 and "ResourceNotFound" in lines
    finally:
        made.worker.client.close()


def test_an_unknown_key_is_a_clear_error(deployment: Deployment) -> None:
    run = keyguard("incident", "contain", "bot-9", "--config", str(deployment.config))
    assert run.returncode == 2 and "no key 'bot-9'" in run.stderr and "bot-1" in run.stderr


def bybit_deployment(tmp_path: Path, sandbox: SandboxHandle, admin: bool) -> tuple[Path, dict[str, Any]]:
    key = sandbox.create_key(exchange="bybit", account="bot", label="bot-b", flags=TRADE)
    entry: dict[str, Any] = {
        "id": "bot-b", "exchange": "bybit", "purpose": "execution", "services": ["worker"],
        "credentials": {"file": "bot-b.json"}, "allowed_ips": [{"value": "127.0.0.1", "reason": "EIP"}],
    }
    (tmp_path / "bot-b.json").write_text(json.dumps({"api_key": key["api_key"], "secret": key["secret"]}))
    if admin:  # the master account's key, with the wallet permission Bybit requires to manage sub-account keys
        master = sandbox.create_key(exchange="bybit", account="master", label="admin",
                                    flags={**TRADE, "permitsUniversalTransfer": True})
        sandbox.add_sub_account("master", "bot", "bot-b@sub.example")
        (tmp_path / "admin.json").write_text(json.dumps({"api_key": master["api_key"], "secret": master["secret"]}))
        entry["containment"] = {"admin": {"credentials": {"file": "admin.json"}}}
    else:
        sandbox.add_sub_account("master", "bot", "bot-b@sub.example")
    (tmp_path / "inventory.yaml").write_text(yaml.safe_dump({
        "hosts": [{"name": "exec-1", "ip": "127.0.0.1"}], "exchange_urls": {"bybit": sandbox.url},
        "probe": {"source_ip": "127.0.0.1"}, "keys": [entry]}))
    config = tmp_path / "keyguard.yaml"
    config.write_text(yaml.safe_dump({"store": {"url": f"sqlite:///{tmp_path}/kg.db"}, "inventory": "inventory.yaml"}))
    return config, key


def revoked(sandbox: SandboxHandle, api_key: str) -> bool:
    with sandbox.admin() as admin:  # the exchange's own view of the key
        return bool(admin.get(f"/keys/{api_key}").json()["revoked"])


def test_a_bybit_key_is_deleted_by_the_master_account(tmp_path: Path, sandbox: SandboxHandle) -> None:
    config, key = bybit_deployment(tmp_path, sandbox, admin=True)
    run = keyguard("incident", "contain", "bot-b", "--config", str(config))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "deleted by the master account" in run.stdout and revoked(sandbox, key["api_key"])
    # What Keyguard cannot do on Bybit is said, with the manual step.
    assert "cancel_open_orders" in run.stdout and "not_available" in run.stdout


def test_a_bybit_key_that_may_not_delete_itself_is_a_failed_step_with_the_manual_one(
        tmp_path: Path, sandbox: SandboxHandle) -> None:
    config, key = bybit_deployment(tmp_path, sandbox, admin=False)
    run = keyguard("incident", "contain", "bot-b", "--config", str(config))
    assert run.returncode == 1, run.stdout + run.stderr
    assert "failed" in run.stdout and "delete the key in Bybit's API management now" in run.stdout
    assert not revoked(sandbox, key["api_key"])  # and nothing claims it was done


def test_an_okx_sub_account_key_is_made_read_only_and_bound_away_by_the_master(
        tmp_path: Path, sandbox: SandboxHandle) -> None:
    sandbox.add_sub_account("main", "desk", "desk@sub.example")
    master = sandbox.create_key(exchange="okx", flags=TRADE, ip_restrict=True, ips=["127.0.0.1"], label="admin")
    key = sandbox.create_key(exchange="okx", account="desk", flags=TRADE, label="bot-o")
    for name, made in (("bot-o.json", key), ("admin.json", master)):
        (tmp_path / name).write_text(json.dumps({"api_key": made["api_key"], "secret": made["secret"],
                                                 "passphrase": made["passphrase"]}))
    (tmp_path / "inventory.yaml").write_text(yaml.safe_dump({
        "hosts": [{"name": "exec-1", "ip": "127.0.0.1"}], "exchange_urls": {"okx": sandbox.url},
        "probe": {"source_ip": "127.0.0.1"},
        "keys": [{"id": "bot-o", "exchange": "okx", "purpose": "execution", "credentials": {"file": "bot-o.json"},
                  "containment": {"admin": {"credentials": {"file": "admin.json"}, "sub_account": "desk"}}}]}))
    config = tmp_path / "keyguard.yaml"
    config.write_text(yaml.safe_dump({"store": {"url": f"sqlite:///{tmp_path}/kg.db"}, "inventory": "inventory.yaml"}))
    run = keyguard("incident", "contain", "bot-o", "--config", str(config))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "made read-only and bound to 192.0.2.1 by the master account" in run.stdout
    with sandbox.admin() as admin:  # the exchange's own view of the key
        view = admin.get(f"/keys/{key['api_key']}").json()
    assert view["ip_restrict"] and view["ips"] == ["192.0.2.1"] and not view["flags"].get("enableSpotAndMarginTrading")
