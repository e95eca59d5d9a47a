"""Rotation without touching a bot: `keyguard keys rotate` checks the new key at the exchange and by the key rules,
the running gateway swaps it in while a bot keeps trading, and the old key is recorded as superseded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import ccxt
import pytest
import yaml

from keyguard.exchanges.inventory import inspect_inventory, keys_document, load_inventory
from keyguard.gateway.config import load_gateway_config
from keyguard.gateway.server import GatewayHandle, run_gateway
from keyguard.policy.engine import evaluate_documents
from keyguard.sandbox import SandboxHandle
from tests.gateway.conftest import TRADER_FLAGS, bot_key, ccxt_bot

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def key_file(path: Path, key: dict[str, Any]) -> Path:
    path.write_text(json.dumps({"api_key": key["api_key"], "secret": key["secret"]}))
    os.chmod(path, 0o600)
    return path


def setup(tmp: Path, sandbox: SandboxHandle) -> tuple[Path, Path, dict[str, Any]]:
    old = sandbox.create_key(label="old", flags=TRADER_FLAGS, ip_restrict=True, ips=["127.0.0.1"])
    key_file(tmp / "old-key.json", old)
    gateway = tmp / "gateway.yaml"
    gateway.write_text(yaml.safe_dump({
        "gateway": "gw-rot", "listen": {"port": 0}, "state_dir": "state",
        "exchange": {"base_url": sandbox.url, "credentials_file": "old-key.json", "timeout_s": 2},
        "limiter": {"backend": "memory"}, "housekeeping_interval_s": 0.5,
        "account": {"max_orders_per_minute": 10000, "max_order_share_of_portfolio": None},
        "bots": {"alpha": {}},
    }))
    inventory = tmp / "keyguard.yaml"
    inventory.write_text(yaml.safe_dump({
        "hosts": [{"name": "exec", "ip": "127.0.0.1"}],
        "exchange_urls": {"binance": sandbox.url},
        "probe": {"source_ip": "127.0.0.1", "from": "127.0.0.2"},
        "keys": [{"id": "bot-exec", "exchange": "binance", "purpose": "execution",
                  "credentials": {"file": "old-key.json"},
                  "allowed_ips": [{"value": "127.0.0.1", "reason": "execution host"}],
                  "storage": {"backend": "aws_secretsmanager", "kms": "customer_managed", "host_locked": True},
                  "workers": ["gateway.yaml"]}],
    }))
    return gateway, inventory, old


def rotate(inventory: Path, source: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "keyguard.cli", "keys", "rotate", "bot-exec", "--inventory",
                           str(inventory), "--new-secret-from", source], capture_output=True, text=True,
                          cwd=PROJECT_ROOT, timeout=120)


class TradingBot:
    """An unmodified ccxt bot trading through the gateway in a thread: every answer and every error it sees."""

    def __init__(self, handle: GatewayHandle) -> None:
        self.client = ccxt_bot(handle, bot_key(handle, "alpha"))
        self.client.load_markets()
        self.orders: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run)

    def run(self) -> None:
        side = "buy"
        deadline = time.monotonic() + 60
        while not self.stop.is_set() and time.monotonic() < deadline:
            try:
                self.orders.append(self.client.create_order("BTC/USDT", "market", side, 0.001))
                side = "sell" if side == "buy" else "buy"
            except ccxt.BaseError as exc:
                self.errors.append(str(exc))
            time.sleep(0.02)


def test_rotation_under_load_loses_and_duplicates_nothing_and_the_bot_sees_no_error(
        tmp_path: Path, sandbox: SandboxHandle) -> None:
    gateway_path, inventory, old = setup(tmp_path, sandbox)
    new = sandbox.create_key(label="new", flags=TRADER_FLAGS, ip_restrict=True, ips=["127.0.0.1"])
    key_file(tmp_path / "new-key.json", new)
    config = load_gateway_config(gateway_path)
    with run_gateway(config) as handle:
        bot = TradingBot(handle)
        resting = bot.client.create_order("ETH/USDT", "limit", "sell", 0.1, 9999)
        bot.thread.start()
        time.sleep(1.0)
        result = rotate(inventory, f"file:{tmp_path / 'new-key.json'}")
        assert result.returncode == 0, result.stderr + result.stdout
        time.sleep(1.0)
        # The old key is gone at the exchange: every order from here on is the new key's work.
        sandbox.exchange.revoke_key(old["api_key"])
        before = len(bot.orders)
        time.sleep(1.0)
        bot.stop.set()
        bot.thread.join(timeout=30)
        after_revoke = len(bot.orders) - before
        open_now = [o["id"] for o in bot.client.fetch_open_orders("ETH/USDT")]
        cancelled = bot.client.cancel_order(resting["id"], "ETH/USDT")

    assert bot.errors == [], "the bot saw an error during the rotation"
    assert after_revoke > 0, "the bot kept trading on the new key"
    market_orders = [o for o in sandbox.exchange.orders.values() if o.type == "MARKET"]
    assert len(market_orders) == len(bot.orders), "one exchange order per answer: none lost, none duplicated"
    assert {str(o.order_id) for o in market_orders} == {o["id"] for o in bot.orders}
    assert open_now == [resting["id"]] and cancelled["status"] == "canceled", "the old key's open order stays ours"
    assert "Delete the old key bot-exec at the exchange before" in result.stdout
    assert old["secret"] not in result.stdout + result.stderr and new["secret"] not in result.stdout + result.stderr

    updated = yaml.safe_load(inventory.read_text())
    old_entry, new_entry = updated["keys"]
    assert old_entry["id"] == "bot-exec" and old_entry["superseded_at"] and "workers" not in old_entry
    assert new_entry["id"].startswith("bot-exec-r") and new_entry["workers"] == ["gateway.yaml"]
    assert new_entry["credentials"] == {"file": str(tmp_path / "new-key.json")}
    # A restarted gateway keeps the new key (the rotation remembered where it lives).
    with run_gateway(load_gateway_config(gateway_path)) as restarted:
        assert ccxt_bot(restarted, bot_key(restarted, "alpha")).create_order(
            "BTC/USDT", "market", "buy", 0.001)["status"] == "closed"


def test_the_old_key_left_alive_past_the_grace_period_is_a_finding(tmp_path: Path, sandbox: SandboxHandle) -> None:
    gateway_path, inventory, _old = setup(tmp_path, sandbox)
    new = sandbox.create_key(label="new", flags=TRADER_FLAGS, ip_restrict=True, ips=["127.0.0.1"])
    key_file(tmp_path / "new-key.json", new)
    with run_gateway(load_gateway_config(gateway_path)):
        assert rotate(inventory, f"file:{tmp_path / 'new-key.json'}").returncode == 0
    loaded = load_inventory(inventory)
    states = inspect_inventory(loaded)

    def rotation_findings(now: datetime) -> set[tuple[str, str]]:
        findings = evaluate_documents([("keys", keys_document(states, loaded.hosts, now=now))])
        return {(f.id, f.resource) for f in findings if f.id == "KG-ROT-104"}

    assert rotation_findings(datetime.now(UTC)) == set()
    assert rotation_findings(datetime.now(UTC) + timedelta(hours=25)) == {("KG-ROT-104", "binance/bot-exec")}


@pytest.mark.parametrize(("flags", "account", "why"), [
    ({**TRADER_FLAGS, "enableWithdrawals": True}, "main", "KG-KEY-101"),
    (TRADER_FLAGS, "other", "belongs to another account"),
])
def test_a_new_key_that_fails_a_check_is_refused_and_the_gateway_keeps_the_old_one(
        tmp_path: Path, sandbox: SandboxHandle, flags: dict[str, bool], account: str, why: str) -> None:
    gateway_path, inventory, _old = setup(tmp_path, sandbox)
    bad = sandbox.create_key(label="bad", flags=flags, ip_restrict=True, ips=["127.0.0.1"], account=account)
    key_file(tmp_path / "bad-key.json", bad)
    before = inventory.read_text()
    with run_gateway(load_gateway_config(gateway_path)) as handle:
        result = rotate(inventory, f"file:{tmp_path / 'bad-key.json'}")
        assert result.returncode == 1, result.stdout + result.stderr
        assert why in result.stdout + result.stderr
        assert handle.gateway.client.api_key_id == _old["api_key"]
    assert inventory.read_text() == before, "a refused rotation changes nothing"
    assert bad["secret"] not in result.stdout + result.stderr
