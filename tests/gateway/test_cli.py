"""The gateway as its user runs it: `keyguard gateway keys create` and `keyguard gateway serve` from a config file,
an unmodified bot pointed at it, the kill switch and status commands, a Unix socket, and bad settings refused."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import ccxt
import httpx
import pytest
import yaml

from keyguard.sandbox import SandboxHandle
from tests.gateway.conftest import TRADER_FLAGS

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def keyguard(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "keyguard.cli", *args], capture_output=True, text=True,
                          cwd=PROJECT_ROOT, env=env, timeout=120)


def write_config(tmp: Path, sandbox: SandboxHandle, **extra: Any) -> Path:
    config = tmp / "gateway.yaml"
    config.write_text(yaml.safe_dump({
        "gateway": "gw-cli", "listen": {"port": 0}, "state_dir": "state",
        "exchange": {"base_url": sandbox.url, "api_key_env": "EXCHANGE_KEY", "api_secret_env": "EXCHANGE_SECRET"},
        "limiter": {"backend": "memory"},
        "bots": {"alpha": {"max_order_notional": 1000}},
        **extra,
    }))
    return config


def start_serving(config: Path, exchange: dict[str, Any]) -> tuple[subprocess.Popen[str], str]:
    """`keyguard gateway serve --config` in its own process with the exchange key in its environment, and the URL it
    says it serves on (its output keeps flowing to the pipe)."""
    env = {**os.environ, "EXCHANGE_KEY": exchange["api_key"], "EXCHANGE_SECRET": exchange["secret"]}
    proc = subprocess.Popen([sys.executable, "-m", "keyguard.cli", "gateway", "serve", "--config", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=PROJECT_ROOT, env=env)
    assert proc.stdout is not None
    for line in proc.stdout:
        match = re.search(r"serving on (http://127\.0\.0\.1:\d+)", line)
        if match:
            return proc, match.group(1)
    proc.kill()
    proc.wait(timeout=30)
    raise AssertionError("serve did not say where it listens")


def test_serve_from_a_config_file_and_an_unmodified_bot_trades_through_it(tmp_path: Path,
                                                                           sandbox: SandboxHandle) -> None:
    exchange = sandbox.create_key(label="gw", flags=TRADER_FLAGS, ip_restrict=True, ips=["127.0.0.1"])
    config = write_config(tmp_path, sandbox)
    created = keyguard("gateway", "keys", "create", "--config", str(config), "--bot", "alpha", "--json")
    assert created.returncode == 0, created.stderr
    bot = json.loads(created.stdout)
    assert (tmp_path / "state" / "gateway-keys.json").stat().st_mode & 0o077 == 0

    proc, url = start_serving(config, exchange)
    try:
        from keyguard.sandbox.server import sandbox_urls

        client = ccxt.binance({"apiKey": bot["api_key"], "secret": bot["secret"], "urls": sandbox_urls(url)})
        assert client.create_order("BTC/USDT", "market", "buy", 0.001)["status"] == "closed"

        held = keyguard("gateway", "kill-switch", "engage", "--config", str(config), "--bot", "alpha",
                        "--reason", "drill")
        assert held.returncode == 0, held.stderr
        with pytest.raises(ccxt.ExchangeError, match="KEYGUARD_KILL_SWITCH: bot alpha is held by its kill switch "
                                                     r"\(drill\)"):
            client.create_order("BTC/USDT", "market", "buy", 0.001)
        status = keyguard("gateway", "status", "--config", str(config), "--json")
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["worker"] == "gw-cli"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    output = proc.stdout.read() if proc.stdout else ""
    assert exchange["secret"] not in output and "Traceback" not in output


def test_unix_socket_listener_serves_bots_that_can_open_the_file(tmp_path: Path, sandbox: SandboxHandle) -> None:
    from keyguard.gateway.bot_keys import BotKeyStore
    from keyguard.gateway.config import load_gateway_config
    from keyguard.gateway.server import run_gateway

    exchange = sandbox.create_key(label="gw", flags=TRADER_FLAGS)
    config = load_gateway_config(write_config(tmp_path, sandbox, listen={"unix_socket": "gw.sock"}))
    with run_gateway(config, credentials=(exchange["api_key"], exchange["secret"])):
        key = BotKeyStore(config.keys_path).create("alpha")
        import hashlib
        import hmac
        import time

        query = f"symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.001&timestamp={int(time.time() * 1000)}"
        signature = hmac.new(key.secret.encode(), query.encode(), hashlib.sha256).hexdigest()
        transport = httpx.HTTPTransport(uds=str(tmp_path / "gw.sock"))
        with httpx.Client(transport=transport, base_url="http://gateway") as http:
            assert "serverTime" in http.get("/api/v3/time").json()
            answer = http.post(f"/api/v3/order?{query}&signature={signature}", headers={"X-MBX-APIKEY": key.api_key})
    assert answer.status_code == 200 and answer.json()["status"] == "FILLED"


@pytest.mark.parametrize(("change", "message"), [
    ({"listen": {"host": "0.0.0.0"}}, "field listen.host: the value given is not a loopback address"),
    ({"bots": {"Bad Name": {}}}, "bot name 'Bad Name' must match"),
    ({"bots": {"alpha": {"max_order_notional": -5}}}, "bots.alpha.max_order_notional"),
    ({"account": {"max_ordr_notional": 5}}, "field account.max_ordr_notional: unknown field"),
])
def test_bad_settings_are_refused_with_the_field_named(tmp_path: Path, sandbox: SandboxHandle,
                                                       change: dict[str, Any], message: str) -> None:
    config = write_config(tmp_path, sandbox, **change)
    result = keyguard("gateway", "serve", "--config", str(config))
    assert result.returncode == 2
    assert message in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_serve_without_exchange_credentials_names_what_is_missing(tmp_path: Path, sandbox: SandboxHandle) -> None:
    config = write_config(tmp_path, sandbox)
    env = {k: v for k, v in os.environ.items() if k not in ("EXCHANGE_KEY", "EXCHANGE_SECRET")}
    result = keyguard("gateway", "serve", "--config", str(config), env=env)
    assert result.returncode == 2
    assert "EXCHANGE_KEY" in result.stderr + result.stdout and "Traceback" not in result.stderr


def test_on_call_commands_cancel_the_resting_orders_they_cover_within_a_second_not_a_round(
        tmp_path: Path, sandbox: SandboxHandle) -> None:
    """Revoke first: whoever engages a kill switch or halts trading sees the resting orders it covers gone at the
    exchange at once, even with a long housekeeping interval (30 s here)."""
    import time

    from keyguard.sandbox.server import sandbox_urls

    exchange = sandbox.create_key(label="gw", flags=TRADER_FLAGS, ip_restrict=True, ips=["127.0.0.1"])
    config = write_config(tmp_path, sandbox, housekeeping_interval_s=30, bots={"alpha": {}, "beta": {}})
    keys = {}
    for bot in ("alpha", "beta"):
        created = keyguard("gateway", "keys", "create", "--config", str(config), "--bot", bot, "--json")
        assert created.returncode == 0, created.stderr
        keys[bot] = json.loads(created.stdout)
    proc, url = start_serving(config, exchange)
    try:
        alpha, beta = (ccxt.binance({"apiKey": keys[b]["api_key"], "secret": keys[b]["secret"],
                                     "urls": sandbox_urls(url)}) for b in ("alpha", "beta"))

        def rest(client: ccxt.binance) -> int:
            order = client.create_order("BTC/USDT", "limit", "buy", 0.001, 20000)
            assert order["status"] == "open"
            return int(order["id"])

        def gone_within(order_id: int, seconds: float) -> bool:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                if sandbox.exchange.orders[order_id].status == "CANCELED":
                    return True
                time.sleep(0.05)
            return False

        alpha_order, beta_order = rest(alpha), rest(beta)
        assert keyguard("gateway", "kill-switch", "engage", "--config", str(config), "--bot", "alpha",
                        "--reason", "drill").returncode == 0
        assert gone_within(alpha_order, 2.0)
        assert sandbox.exchange.orders[beta_order].status == "NEW"  # beta trades on

        assert keyguard("gateway", "trading-state", "HALTED", "--config", str(config)).returncode == 0
        assert gone_within(beta_order, 2.0)

        assert keyguard("gateway", "trading-state", "ACTIVE", "--config", str(config)).returncode == 0
        beta_again = rest(beta)
        assert keyguard("gateway", "kill-switch", "engage", "--config", str(config),
                        "--reason", "drill").returncode == 0
        assert gone_within(beta_again, 2.0)
        assert beta.fetch_open_orders("BTC/USDT") == []
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
