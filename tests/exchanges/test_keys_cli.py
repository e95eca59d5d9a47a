"""`keyguard keys inspect` end to end: the real command, a sandbox over HTTP, the managed OPA for --check."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from keyguard.exchanges.cli import app
from keyguard.sandbox import SandboxHandle

REPO = Path(__file__).resolve().parents[2]


def keyguard(*args: str, env: dict[str, str] | None = None) -> Any:
    """`keyguard keys ...` in-process (importing the whole CLI per test costs seconds)."""
    assert args[0] == "keys"
    return CliRunner().invoke(app, list(args[1:]), env={"COLUMNS": "250", **(env or {})})


def write_inventory(tmp_path: Path, sandbox: SandboxHandle, keys: list[dict[str, Any]]) -> Path:
    path = tmp_path / "keyguard.yaml"
    path.write_text(yaml.safe_dump({
        "hosts": [{"name": "exec-1", "ip": "127.0.0.1", "authorized": True}],
        "exchange_urls": {"binance": sandbox.url, "okx": sandbox.url, "bybit": sandbox.url},
        "probe": {"source_ip": "127.0.0.1", "from": "127.0.0.2"},
        "keys": keys,
    }))
    return path


def bot_entry(env_prefix: str, key_id: str = "bot-exec-1") -> dict[str, Any]:
    return {"id": key_id, "exchange": "binance", "purpose": "execution", "services": ["worker"],
            "credentials": {"api_key_env": f"{env_prefix}_KEY", "secret_env": f"{env_prefix}_SECRET"},
            "allowed_ips": [{"value": "127.0.0.1", "reason": "exec-1 static EIP"}],
            "storage": {"backend": "env", "kms": "none", "host_locked": True}}


def test_inspect_json_reports_what_the_exchange_says(sandbox: SandboxHandle, tmp_path: Path) -> None:
    key = sandbox.create_key(flags={"enableSpotAndMarginTrading": True}, ip_restrict=True, ips=["127.0.0.1"])
    inventory = write_inventory(tmp_path, sandbox, [bot_entry("KG_T1")])
    result = keyguard("keys", "inspect", "-i", str(inventory), "--json",
                      env={"KG_T1_KEY": key["api_key"], "KG_T1_SECRET": key["secret"]})
    assert result.exit_code == 0, result.output
    (entry,) = json.loads(result.stdout)["keys"]
    assert entry["permissions"] == {"read": True, "trade": True, "transfer": False, "withdraw": False}
    assert entry["ip_binding_source"] == "probed"
    assert entry["inspection_error"] is None


def test_inspect_table_marks_an_unreachable_secret_as_unknown(sandbox: SandboxHandle, tmp_path: Path) -> None:
    inventory = write_inventory(tmp_path, sandbox, [bot_entry("KG_UNSET_VAR")])
    result = keyguard("keys", "inspect", "-i", str(inventory))
    assert result.exit_code == 0, result.output
    assert "binance/bot-exec-1" in result.stdout
    assert "KG_UNSET_VAR_KEY" in result.stdout and "not set" in result.stdout


def test_malformed_inventory_is_a_clear_error_without_traceback(tmp_path: Path) -> None:
    path = tmp_path / "keyguard.yaml"
    path.write_text("keys:\n  - id: k1\n    exchange: binance\n")
    # The real entry point, so the exit code and the absence of a traceback are what a user sees.
    result = subprocess.run([sys.executable, "-m", "keyguard.cli", "keys", "inspect", "-i", str(path)],
                            capture_output=True, text=True, env={**os.environ, "COLUMNS": "250"}, cwd=REPO,
                            timeout=120)
    assert result.returncode == 2
    assert "field keys[0].credentials" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.usefixtures("policy_engine")
def test_check_on_a_withdraw_enabled_bot_key_reports_the_critical_finding_and_fails(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    key = sandbox.create_key(flags={"enableSpotAndMarginTrading": True, "enableWithdrawals": True},
                             ip_restrict=True, ips=["127.0.0.1"])
    inventory = write_inventory(tmp_path, sandbox, [bot_entry("KG_T2")])
    result = keyguard("keys", "inspect", "-i", str(inventory), "--check", "--json",
                      env={"KG_T2_KEY": key["api_key"], "KG_T2_SECRET": key["secret"]})
    assert result.exit_code == 1, result.output
    findings = json.loads(result.stdout)["findings"]
    withdraw = [f for f in findings if f["severity"] == "critical" and "withdraw" in f["message"]]
    assert [f["id"] for f in withdraw] == ["KG-KEY-101"]
    assert withdraw[0]["resource"] == "binance/bot-exec-1"


@pytest.mark.usefixtures("policy_engine")
def test_check_passes_a_trade_only_key_bound_and_probed(sandbox: SandboxHandle, tmp_path: Path) -> None:
    key = sandbox.create_key(flags={"enableSpotAndMarginTrading": True}, ip_restrict=True, ips=["127.0.0.1"])
    inventory = write_inventory(tmp_path, sandbox, [bot_entry("KG_T3")])
    result = keyguard("keys", "inspect", "-i", str(inventory), "--check", "--json",
                      env={"KG_T3_KEY": key["api_key"], "KG_T3_SECRET": key["secret"]})
    findings = json.loads(result.stdout)["findings"]
    assert [f for f in findings if f["severity"] in ("critical", "high")] == []
    assert result.exit_code == 0


def test_the_example_inventory_parses_and_names_secrets_only_by_variable() -> None:
    from keyguard.exchanges.inventory import load_inventory

    inventory = load_inventory(REPO / "examples" / "keyguard.yaml")
    assert [k.id for k in inventory.keys] == ["bot-exec-1", "portfolio-okx"]
    assert all(k.credentials.secret_env for k in inventory.keys)
    assert inventory.probe.from_ip == "127.0.0.2"


def test_inspect_from_flags_without_an_inventory(sandbox: SandboxHandle) -> None:
    key = sandbox.create_key(exchange="okx", ip_restrict=True, ips=["127.0.0.1"])
    result = keyguard(
        "keys", "inspect", "--exchange", "okx", "--key-id", "okx-mon", "--purpose", "monitoring",
        "--api-key-env", "KG_F_KEY", "--secret-env", "KG_F_SECRET", "--passphrase-env", "KG_F_PASS",
        "--allowed-ip", "127.0.0.1=exec-1 static EIP", "--exchange-url", sandbox.url,
        "--source-ip", "127.0.0.1", "--probe-from", "127.0.0.2", "--json",
        env={"KG_F_KEY": key["api_key"], "KG_F_SECRET": key["secret"], "KG_F_PASS": key["passphrase"]},
    )
    assert result.exit_code == 0, result.output
    (entry,) = json.loads(result.output)["keys"]
    assert entry["purpose"] == "monitoring" and entry["ip_binding_source"] == "probed"
    assert entry["allowed_ips"] == [{"value": "127.0.0.1", "reason": "exec-1 static EIP", "source": "probed"}]


def test_incomplete_flags_and_bad_fail_on_are_config_errors_naming_the_fix() -> None:
    from keyguard.errors import ConfigError

    missing = keyguard("keys", "inspect", "--exchange", "binance")
    assert isinstance(missing.exception, ConfigError) and "--api-key-env" in str(missing.exception)
    bad = keyguard("keys", "inspect", "--fail-on", "severe", "--exchange", "binance")
    assert isinstance(bad.exception, ConfigError) and "low, medium, high, critical" in str(bad.exception)
