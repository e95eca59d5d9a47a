"""A recognisable secret goes through every path (success, refusal, timeout, CLI, admin API, debug logs)
and must never come out anywhere."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from keyguard.exchanges import IPRefused, KeyDeclaration
from keyguard.exchanges.cli import app
from keyguard.sandbox import SandboxHandle

from .conftest import AdapterFactory

CANARY_SECRET = "CANARYsecret7f3a9cDoNotLeak0000000000000000000000000000000000000001"


def test_canary_secret_never_appears_in_logs_errors_states_or_admin_responses(
    sandbox: SandboxHandle, adapter: AdapterFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    created = sandbox.create_key(secret=CANARY_SECRET, ip_restrict=True, ips=["127.0.0.1"],
                                 flags={"enableWithdrawals": True})
    assert created["secret"] == CANARY_SECRET  # shown once, at creation
    okx = sandbox.create_key(exchange="okx", ip_restrict=True, ips=["127.0.0.2"])
    declared = KeyDeclaration(id="canary", exchange="binance", purpose="execution")

    texts = []
    ok = adapter(created, timeout_ms=500)
    texts.append(ok.inspect(declared, probe_from="127.0.0.2").model_dump_json())
    with pytest.raises(IPRefused) as refused:
        other = adapter(created, source_ip="127.0.0.3")
        other.probe_call(other.host_client)
    texts += [str(refused.value), repr(refused.value)]
    sandbox.set_faults({"endpoint": "GET /sapi/v1/account/apiRestrictions", "kind": "drop", "hold_s": 3})
    texts.append(adapter(created, timeout_ms=300).inspect(declared).model_dump_json())
    sandbox.exchange.set_faults([])
    okx_state = adapter(okx, exchange="okx").inspect(KeyDeclaration(id="okx-canary", exchange="okx"))
    assert okx_state.error_kind == "IPRefused"
    texts.append(okx_state.model_dump_json())
    with sandbox.admin() as admin:
        texts += [admin.get("/keys").text, admin.get(f"/keys/{created['api_key']}").text,
                  admin.patch(f"/keys/{created['api_key']}", json={"label": "x"}).text]

    for text in [*texts, caplog.text]:
        assert CANARY_SECRET not in text
        assert okx["secret"] not in text
        assert okx["passphrase"] not in text
    # The logs did record the calls, so the check above had something to look at.
    assert "apiRestrictions" in caplog.text


def test_canary_secret_never_appears_in_cli_output(sandbox: SandboxHandle, tmp_path: Path) -> None:
    created = sandbox.create_key(secret=CANARY_SECRET, ip_restrict=True, ips=["127.0.0.2"])
    inventory = tmp_path / "keyguard.yaml"
    inventory.write_text(yaml.safe_dump({
        "exchange_urls": {"binance": sandbox.url},
        "keys": [{"id": "canary", "exchange": "binance", "purpose": "execution",
                  "credentials": {"api_key_env": "KG_CANARY_KEY", "secret_env": "KG_CANARY_SECRET"}}],
    }))
    env = {"KG_CANARY_KEY": created["api_key"], "KG_CANARY_SECRET": CANARY_SECRET, "COLUMNS": "250"}
    for extra in ([], ["--json"]):
        # From 127.0.0.1 the key is refused: the error path is the one most likely to echo a request.
        result = CliRunner().invoke(app, ["inspect", "-i", str(inventory), "--source-ip", "127.0.0.1", *extra],
                                    env=env)
        assert result.exit_code == 0, result.output
        assert "canary" in result.output and "-2015" in result.output
        assert CANARY_SECRET not in result.output
