"""`keyguard keys rotate`: the operator's side of a rotation. The new key is judged by the same key rules as every
live check (its permissions and IP binding as the exchange reports and the probe sees them) before the running
gateway is asked to switch; then the inventory records the old key as superseded."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import yaml

from keyguard.errors import ConfigError
from keyguard.exchanges.inventory import Inventory, InventoryKey, SecretSource, load_inventory
from keyguard.gateway.rotation import AdminChannel, RotationRefused, parse_source
from keyguard.redact import redact_text


def _gateway_config(key: InventoryKey, given: Path | None) -> Path:
    from keyguard.gateway.config import GatewayConfig, load_trading_config

    candidates = [given] if given is not None else list(key.workers)
    for path in candidates:
        if isinstance(load_trading_config(path), GatewayConfig):
            return path
    raise ConfigError(f"key {key.id}: no gateway trades with it (give --gateway, or list the gateway's config in "
                      "keys[].workers); rotating a key under a worker means restarting that worker")


def judge_new_key(inventory: Inventory, old: InventoryKey, new_id: str, source: SecretSource) -> None:
    """Inspect the new key at the exchange exactly as the live check would, and refuse it on any critical or high
    finding (withdraw, transfer, no IP binding, a probe that gets through from another address, ...)."""
    from keyguard.exchanges.inventory import inspect_inventory, keys_document
    from keyguard.policy.engine import evaluate_documents
    from keyguard.policy.models import Severity

    candidate = old.model_copy(update={"id": new_id, "credentials": source, "created_at": None,
                                       "superseded_at": None, "workers": [], "activity": None,
                                       "containment": None})
    trial = inventory.model_copy(update={"keys": [candidate]})
    states = inspect_inventory(trial)
    findings = [f for f in evaluate_documents([("keys", keys_document(states, trial.hosts))])
                if f.resource == candidate.resource and f.severity in (Severity.critical, Severity.high)]
    if findings:
        listed = "; ".join(f"{f.id} {f.message}" for f in findings)
        raise RotationRefused(f"the new key {new_id} fails the key rules, nothing was changed: {listed}")


def _write_inventory(path: Path, raw: dict[str, Any]) -> None:
    text = (yaml.safe_dump(raw, sort_keys=False) if path.suffix in (".yaml", ".yml")
            else json.dumps(raw, indent=2) + "\n")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _source_entry(source: SecretSource) -> dict[str, Any]:
    return json.loads(source.model_dump_json(exclude_none=True))


def rotate_inventory_key(key_id: str, inventory_path: Path, new_secret_from: str, gateway: Path | None,
                         new_id: str | None, aws_region: str | None) -> dict[str, Any]:
    from keyguard.gateway.config import load_gateway_config
    from keyguard.policy.documents import load_document

    inventory = load_inventory(inventory_path)
    old = next((k for k in inventory.keys if k.id == key_id), None)
    if old is None:
        raise ConfigError(f"{inventory_path}: no key with id {key_id}")
    now = datetime.now(UTC).replace(microsecond=0)
    new_id = new_id or f"{key_id}-r{now:%Y%m%d}"
    if any(k.id == new_id for k in inventory.keys):
        raise ConfigError(f"{inventory_path}: a key with id {new_id} exists already; give --new-id")
    source = parse_source(new_secret_from, aws_region)
    if source.api_key_env:
        raise ConfigError("--new-secret-from env:...: the running gateway cannot read this shell's environment; put "
                          "the new key in a file (mode 0600) or in Secrets Manager")
    gateway_path = _gateway_config(old, gateway)
    judge_new_key(inventory, old, new_id, source)

    url, token = AdminChannel(load_gateway_config(gateway_path).state_dir).read()
    if url.startswith("unix:"):
        client = httpx.Client(transport=httpx.HTTPTransport(uds=url.removeprefix("unix:")), base_url="http://gateway")
    else:
        client = httpx.Client(base_url=url)
    try:
        with client:
            answer = client.post("/keyguard/admin/rotate", json={"source": _source_entry(source)},
                                 headers={"Authorization": f"Bearer {token}"}, timeout=60)
    except httpx.HTTPError as exc:
        raise ConfigError(f"the gateway at {url} did not answer ({type(exc).__name__}); nothing was changed") from None
    body = answer.json() if answer.headers.get("content-type", "").startswith("application/json") else {}
    if answer.status_code == 409:
        raise RotationRefused(redact_text(str(body.get("msg", ""))).removeprefix("KEYGUARD_ROTATION_REFUSED: "))
    if answer.status_code != 200:
        raise ConfigError(f"the gateway refused the rotation: HTTP {answer.status_code} "
                          f"{redact_text(str(body.get('msg', '')))}")

    raw = load_document(inventory_path)
    entries = raw.get("keys", [])
    entry = next(e for e in entries if isinstance(e, dict) and e.get("id") == key_id)
    replacement = {k: v for k, v in entry.items() if k not in ("superseded_at", "created_at", "credentials")}
    replacement["id"] = new_id
    replacement["credentials"] = _source_entry(source)
    entry["superseded_at"] = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    entry.pop("workers", None)  # the gateway now trades with the new key
    entries.insert(entries.index(entry) + 1, replacement)
    _write_inventory(inventory_path, raw)
    from keyguard.policy.bundle import policy_data

    grace_h = float(policy_data("keys", "rotation", "superseded_grace_hours"))
    return {"old_id": key_id, "new_id": new_id, "gateway": str(gateway_path),
            "open_orders_settled": body.get("open_orders_settled", 0),
            "delete_by": (now + timedelta(hours=grace_h)).strftime("%Y-%m-%d %H:%M UTC")}
