"""A keys inventory on a real sandbox exchange, for the live-check tests: n bot keys, each bound to 127.0.0.1,
secrets in files beside the inventory; `withdraw` names the keys that can also withdraw."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from keyguard.sandbox import SandboxHandle

TRADE = {"enableReading": True, "enableSpotAndMarginTrading": True}


def make_inventory(tmp_path: Path, sandbox: SandboxHandle, count: int, withdraw: set[int] = frozenset(),
                   probe: bool = True) -> tuple[Path, list[dict[str, Any]]]:
    keys, created = [], []
    secrets = tmp_path / "secrets"
    secrets.mkdir(exist_ok=True)
    for i in range(count):
        flags = {**TRADE, "enableWithdrawals": i in withdraw}
        key = sandbox.create_key(label=f"bot-{i}", flags=flags, ip_restrict=True, ips=["127.0.0.1"])
        created.append(key)
        secret_file = secrets / f"bot-{i}.json"
        secret_file.write_text(json.dumps({"api_key": key["api_key"], "secret": key["secret"]}))
        keys.append({
            "id": f"bot-{i}", "exchange": "binance", "purpose": "execution", "services": [f"svc-{i}"],
            "credentials": {"file": str(secret_file)},
            "storage": {"backend": "aws_secretsmanager", "kms": "customer_managed"},
            "allowed_ips": [{"value": "127.0.0.1", "reason": "execution host EIP"}],
        })
    inventory = {
        "hosts": [{"name": "exec", "ip": "127.0.0.1"}],
        "exchange_urls": {"binance": sandbox.url},
        "probe": {"source_ip": "127.0.0.1", "from": "127.0.0.2"} if probe else {"source_ip": "127.0.0.1"},
        "keys": keys,
    }
    path = tmp_path / "inventory.json"
    path.write_text(json.dumps(inventory))
    return path, created


def wait_for(predicate: Callable[[], Any], timeout_s: float = 30, poll_s: float = 0.05) -> Any:
    """The predicate's first truthy value, polled until `timeout_s` (then the test fails)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll_s)
    raise AssertionError(f"not within {timeout_s}s")


def delivered_titles(service_url: str, token: str, receiver: Any, timeout_s: float = 30) -> list[str]:
    """The alert titles the receiver got, once the service has delivered everything it queued (delivery runs
    apart from the checks, so a check's alerts arrive a moment after it returns)."""
    def settled() -> bool:
        alerts = httpx.get(f"{service_url}/api/alerts", headers={"Authorization": f"Bearer {token}"}).json()
        return all(a["delivered_at"] for a in alerts)

    wait_for(settled, timeout_s)
    return [m["title"].removeprefix("[keyguard] ") for m in receiver.received]
