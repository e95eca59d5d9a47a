"""A stolen key, used from the allowed host, as the people on call meet it: the real service, a real sandbox exchange
(a master account and the bot's sub-account), a real execution worker with its journal and kill switch, moto's
Secrets Manager over HTTP, real OPA and a local alert receiver.

An order the worker did not send becomes KG-ACT-101 and is contained at once: the worker's kill switch engaged, the
orders cancelled, the key bound to an unroutable address by the master account, the secret denied; each step on
the incident's timeline and in the alert. A release is refused while the key is still unsafe (and leaves it cut),
and succeeds once it is safe, undoing each step. Withdrawals, transfers and new withdrawal addresses are findings
too; the exchange's records are the evidence."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import ccxt
import httpx
import pytest
import yaml
from tests.sandbox import fixtures
from tests.servers import AlertReceiver
from tests.service.live import wait_for

from keyguard.config import load_settings
from keyguard.runtime import RunningService, build_collectors, run_service
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
TOKEN = "activity-env-token-0123456789"
TRADE = {"enableReading": True, "enableSpotAndMarginTrading": True}
EMAIL = "bot-1@sub.example"


pytestmark = pytest.mark.usefixtures("aws_env")  # boto3 against moto (tests/conftest.py)


@dataclass
class Desk:
    """One trading desk: the bot's key on a sub-account, its worker, the master's admin key, the service."""

    sandbox: SandboxHandle
    config: Path
    key: dict[str, Any]
    worker: ExecutionWorker
    kill_switch_path: Path
    secret_arn: str
    moto_url: str
    running: RunningService

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        response = httpx.request(method, self.running.url + path, headers={"Authorization": f"Bearer {TOKEN}"},
                                 timeout=60, **kwargs)
        assert response.status_code == 200, response.text
        return response.json()

    def outsider(self) -> ccxt.binance:
        """Someone else's client holding the bot's key (malware on the host, or a leaked secret)."""
        return ccxt.binance({"apiKey": self.key["api_key"], "secret": self.key["secret"],
                             "urls": self.sandbox.ccxt_urls(), "options": dict(BINANCE_SPOT_ONLY_OPTIONS)})

    def open_orders(self) -> list[Any]:
        return [o for o in self.sandbox.exchange.orders_of("bot") if o.status in ("NEW", "PARTIALLY_FILLED")]

    def secret_denied(self) -> bool:
        sm = boto3.client("secretsmanager", region_name=REGION, endpoint_url=self.moto_url)
        policy = json.loads(sm.get_resource_policy(SecretId=self.secret_arn).get("ResourcePolicy") or "{}")
        return any(s.get("Sid") == "KeyguardContainment" and s.get("Effect") == "Deny"
                   for s in policy.get("Statement", []))

    def findings(self) -> set[str]:
        return {f["rule_id"] for f in self.api("GET", "/api/findings") if f["resource"] == "binance/bot-1"}

    def set_flags(self, **flags: bool) -> None:
        with self.sandbox.admin() as admin:
            admin.patch(f"/keys/{self.key['api_key']}", json={"flags": flags}).raise_for_status()


def resting(worker: ExecutionWorker, price: float = 50000.0) -> Any:
    return worker.submit(OrderIntent("BTCUSDT", "BTC", "BUY", 0.001, order_type="LIMIT", price=price,
                                     reference_price=60000.0))


@pytest.fixture
def desk(tmp_path: Path, sandbox: SandboxHandle, moto_url: str, alert_receiver: AlertReceiver) -> Iterator[Desk]:
    admin = sandbox.create_key(account="master", label="admin", flags={**TRADE})  # kept out of the bots' reach
    key = sandbox.create_key(account="bot", label="bot-1", flags=TRADE, ip_restrict=True, ips=["127.0.0.1"])
    sandbox.add_sub_account("master", "bot", EMAIL)
    sm = boto3.client("secretsmanager", region_name=REGION, endpoint_url=moto_url)
    cmk = boto3.client("kms", region_name=REGION, endpoint_url=moto_url).create_key()["KeyMetadata"]["Arn"]
    arn = str(sm.create_secret(Name=f"keyguard/{tmp_path.name}/bot-1", KmsKeyId=cmk,
                               SecretString=json.dumps({"api_key": key["api_key"], "secret": key["secret"]}))["ARN"])
    (tmp_path / "admin.json").write_text(json.dumps({"api_key": admin["api_key"], "secret": admin["secret"]}))
    worker_settings = {"worker": "exec-1", "state_dir": str(tmp_path / "worker"),
                       "exchange": {"base_url": sandbox.url, "timeout_s": 2},
                       "limiter": {"budget_path": str(tmp_path / "budget")}}
    (tmp_path / "worker.yaml").write_text(yaml.safe_dump(worker_settings))
    (tmp_path / "inventory.yaml").write_text(yaml.safe_dump({
        "hosts": [{"name": "exec-1", "ip": "127.0.0.1"}],
        "exchange_urls": {"binance": sandbox.url},
        "probe": {"source_ip": "127.0.0.1", "from": "127.0.0.2"},
        "keys": [{
            "id": "bot-1", "exchange": "binance", "purpose": "execution", "services": ["worker"],
            "credentials": {"aws_secret": {"secret_id": arn, "region": REGION, "endpoint_url": moto_url}},
            "allowed_ips": [{"value": "127.0.0.1", "reason": "execution host EIP"}],
            "workers": ["worker.yaml"],
            "activity": {"symbols": ["BTCUSDT"], "expected_withdrawal_addresses": []},
            "containment": {"admin": {"credentials": {"file": "admin.json"}, "sub_account_email": EMAIL}},
        }],
    }))
    config = tmp_path / "keyguard.yaml"
    config.write_text(yaml.safe_dump({
        "service": {"port": 0, "run_rate_per_minute": 60}, "store": {"url": f"sqlite:///{tmp_path}/kg.db"},
        "checks": {"interval_s": 3600, "resolve_after": 2}, "inventory": "inventory.yaml",
        "alerts": {"routes": [{"url": alert_receiver.url}]},
    }))
    worker = build_worker(WorkerConfig.model_validate(worker_settings), key["api_key"], key["secret"], sandbox.url)
    worker.start()
    assert resting(worker).status == "NEW"  # Keyguard's own order: never foreign
    settings = load_settings(config)
    with run_service(settings, build_collectors(settings), TOKEN) as running:
        yield Desk(sandbox, config, key, worker, tmp_path / "worker" / "killswitch.json", arn, moto_url, running)
    worker.client.close()


def keyguard(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "keyguard.cli", *args], capture_output=True, text=True,
                          cwd=PROJECT_ROOT, timeout=180)


def test_an_order_keyguard_did_not_send_is_found_and_contained_then_released_only_when_safe(
        desk: Desk, alert_receiver: AlertReceiver) -> None:
    assert desk.findings() == set()  # the worker's order is Keyguard's: the journal says so
    desk.outsider().create_order("BTCUSDT", "limit", "buy", 0.002, 49000.0)

    desk.api("POST", "/api/checks/run")
    [finding] = [f for f in desk.api("GET", "/api/findings") if f["rule_id"] == "KG-ACT-101"]
    assert finding["severity"] == "critical" and finding["resource"] == "binance/bot-1"
    [foreign] = finding["evidence"]["foreign_orders"]  # the exchange's record is the evidence
    assert (foreign["symbol"], foreign["side"], foreign["sent_by_keyguard"]) == ("BTCUSDT", "BUY", False)
    [incident] = [i for i in desk.api("GET", "/api/incidents") if i["rule_id"] == "KG-ACT-101"]

    def contained() -> list[dict[str, Any]]:
        timeline = desk.api("GET", f"/api/incidents/{incident['pk']}")["timeline"]
        steps = [e for e in timeline if e["kind"] == "contain"]
        return steps if len(steps) >= 5 else []

    steps = wait_for(contained, timeout_s=30)
    assert all(": done" in s["detail"] for s in steps), steps
    assert KillSwitch(desk.kill_switch_path).engaged  # the worker's switch, as its own process reads it
    assert resting(desk.worker).refusal_code == KILL_SWITCH
    assert desk.open_orders() == []  # the worker's order and the outsider's
    with pytest.raises(ccxt.AuthenticationError):  # -2015: the key answers no one now
        desk.outsider().fetch_balance()
    assert desk.secret_denied()
    report = wait_for(lambda: [m for m in alert_receiver.received if "CONTAINED" in m["title"]])[0]
    assert "kill_switch" in report["message"] and "Left to a person" in report["message"]

    # The evidence pack, read before the key was cut: both orders, the foreign one marked, the journal beside.
    pack = desk.api("GET", f"/api/incidents/{incident['pk']}/evidence")
    assert sorted(o["sent_by_keyguard"] for o in pack["orders"]) == [False, True]
    assert len(pack["journal"]) == 1 and pack["subject"]["reported"]["enableWithdrawals"] is False
    written = keyguard("incident", "evidence", str(incident["pk"]), "--out", str(desk.config.parent / "pack"),
                       "--config", str(desk.config))
    assert written.returncode == 0, written.stderr
    assert "Orders Keyguard did not send" in (desk.config.parent / "pack" / f"incident-{incident['pk']}.md").read_text()
    assert desk.key["secret"] not in (desk.config.parent / "pack" / f"incident-{incident['pk']}.json").read_text()

    # Withdrawals enabled on the key meanwhile: the release re-checks it, refuses, and leaves it cut.
    desk.set_flags(**TRADE, enableWithdrawals=True)
    refused = keyguard("incident", "release", "bot-1", "--reason", "reviewed the order", "--config", str(desk.config))
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "refused" in refused.stdout and "KG-KEY-101" in refused.stdout
    with pytest.raises(ccxt.AuthenticationError):
        desk.outsider().fetch_balance()
    assert KillSwitch(desk.kill_switch_path).engaged and desk.secret_denied()

    desk.set_flags(**TRADE, enableWithdrawals=False)
    released = keyguard("incident", "release", "bot-1", "--reason", "the order was ours: manual hedge by alice",
                        "--config", str(desk.config))
    assert released.returncode == 0, released.stdout + released.stderr
    assert not KillSwitch(desk.kill_switch_path).engaged
    assert not desk.secret_denied()
    desk.outsider().fetch_balance()  # bound to 127.0.0.1 again, as before the containment
    for _ in range(2):  # the reviewed order no longer keeps the finding open
        desk.api("POST", "/api/checks/run")
    assert "KG-ACT-101" not in desk.findings()
    kinds = [e["kind"] for e in desk.api("GET", f"/api/incidents/{incident['pk']}")["timeline"]
             if e["kind"] not in ("delivered", "not_delivered")]
    assert kinds.count("release") >= 2 and kinds[-1] == "finding_resolved"
    audit = desk.api("GET", "/api/audit?action=incident.release")
    assert [a["result"] for a in audit] == ["ok", "refused"]  # newest first


def test_a_withdrawal_a_transfer_and_a_new_address_are_findings_with_the_exchanges_records(desk: Desk) -> None:
    desk.sandbox.add_withdraw_address("bot", "USDT", "T-thief-address", network="TRX", name="cold")
    desk.sandbox.exchange.withdraw("bot", "USDT", 250.0, "T-thief-address", network="TRX")
    desk.sandbox.exchange.transfer("bot", "MAIN_FUNDING", "USDT", 100.0)
    desk.api("POST", "/api/checks/run")
    found = {f["rule_id"]: f for f in desk.api("GET", "/api/findings") if f["resource"] == "binance/bot-1"}
    assert {"KG-ACT-102", "KG-ACT-103", "KG-ACT-104"} <= set(found)
    [withdrawal] = found["KG-ACT-102"]["evidence"]["withdrawals"]
    assert (withdrawal["coin"], withdrawal["amount"], withdrawal["address"]) == ("USDT", 250.0, "T-thief-address")
    [transfer] = found["KG-ACT-103"]["evidence"]["transfers"]
    assert (transfer["type"], transfer["amount"]) == ("MAIN_FUNDING", 100.0)
    assert found["KG-ACT-104"]["evidence"]["withdrawal_addresses"][0]["address"] == "T-thief-address"


def test_operators_contain_through_the_api_viewers_cannot_and_every_run_is_listed(desk: Desk) -> None:
    from keyguard.api.access import create_token

    viewer = create_token(desk.running.store, "dashboard", "viewer")
    denied = httpx.post(desk.running.url + "/api/containment/bot-1/contain", json={"reason": "drill"},
                        headers={"Authorization": f"Bearer {viewer}"}, timeout=60)
    assert denied.status_code == 403
    planned = desk.api("POST", "/api/containment/bot-1/contain", json={"reason": "drill", "dry_run": True})
    assert planned["result"] == "planned" and {s["result"] for s in planned["steps"]} == {"planned"}
    assert not KillSwitch(desk.kill_switch_path).engaged and len(desk.open_orders()) == 1  # nothing changed
    not_contained = httpx.post(desk.running.url + "/api/containment/bot-1/release", json={"reason": "x"},
                               headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)
    assert not_contained.status_code == 409 and "not contained" in not_contained.text
    done = desk.api("POST", "/api/containment/bot-1/contain", json={"reason": "on-call saw a strange fill"})
    assert done["result"] == "done" and [s["action"] for s in done["steps"]] == [
        "kill_switch", "cancel_open_orders", "cut_key", "block_secret", "evidence"]
    assert [r["result"] for r in desk.api("GET", "/api/containment?resource=binance/bot-1")] == ["done", "planned"]
    audit = desk.api("GET", "/api/audit?action=incident.contain")
    assert [(a["actor"], a["result"]) for a in audit] == [("env", "ok"), ("env", "ok"), ("dashboard", "refused")]
