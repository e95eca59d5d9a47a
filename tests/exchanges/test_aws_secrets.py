"""Production secrets: the inventory reads a key's credentials from AWS Secrets Manager (moto's server over
HTTP here), and the storage rules judge how the real secret is encrypted."""

from __future__ import annotations

import json
import logging
from typing import Any

import boto3
import pytest

from keyguard.exchanges.inventory import Inventory, inspect_inventory, keys_document
from keyguard.policy import PolicyEngine
from keyguard.redact import install_log_redaction
from keyguard.sandbox.server import SandboxHandle

REGION = "eu-west-1"
CANARY = "CANARY-aws-secret-5e1f0c9d7b"


pytestmark = pytest.mark.usefixtures("aws_env")  # boto3 against moto (tests/conftest.py)


def store_secret(moto_url: str, name: str, value: dict[str, Any], cmk: bool) -> str:
    sm = boto3.client("secretsmanager", region_name=REGION, endpoint_url=moto_url)
    extra = {}
    if cmk:
        kms = boto3.client("kms", region_name=REGION, endpoint_url=moto_url)
        extra["KmsKeyId"] = kms.create_key(Description="vault")["KeyMetadata"]["Arn"]
    return str(sm.create_secret(Name=name, SecretString=json.dumps(value), **extra)["ARN"])


def inventory(sandbox: SandboxHandle, moto_url: str, secret_id: str) -> Inventory:
    return Inventory.model_validate({
        "hosts": [{"name": "exec-1", "ip": "127.0.0.1"}],
        "exchange_urls": {"binance": sandbox.url},
        "probe": {"source_ip": "127.0.0.1", "from": "127.0.0.2"},
        "keys": [{
            "id": "bot-exec", "exchange": "binance", "purpose": "execution", "services": ["worker"],
            "credentials": {"aws_secret": {"secret_id": secret_id, "region": REGION, "endpoint_url": moto_url}},
            "allowed_ips": [{"value": "127.0.0.1", "reason": "exec-1 EIP"}],
        }],
    })


def exchange_key(sandbox: SandboxHandle) -> dict[str, Any]:
    return sandbox.create_key(flags={"enableReading": True, "enableSpotAndMarginTrading": True},
                              ip_restrict=True, ips=["127.0.0.1"], secret=CANARY)


def test_key_read_from_secrets_manager_with_a_cmk_passes_storage_rules(
        sandbox: SandboxHandle, moto_url: str, policy_engine: PolicyEngine) -> None:
    key = exchange_key(sandbox)
    arn = store_secret(moto_url, "kg/bot-exec-cmk", {"api_key": key["api_key"], "secret": key["secret"]}, cmk=True)
    [state] = inspect_inventory(inventory(sandbox, moto_url, arn))
    assert state.inspection_error is None
    assert state.permissions.trade is True and state.permissions.withdraw is False
    assert state.storage.backend == "aws_secretsmanager" and state.storage.kms == "customer_managed"
    ids = {f.id for f in policy_engine.evaluate(keys_document([state], inventory(sandbox, moto_url, arn).hosts))}
    assert not {i for i in ids if i.startswith("KG-STO-")}


def test_secret_without_a_customer_managed_key_is_a_storage_finding(
        sandbox: SandboxHandle, moto_url: str, policy_engine: PolicyEngine) -> None:
    key = exchange_key(sandbox)
    arn = store_secret(moto_url, "kg/bot-exec-default", {"api_key": key["api_key"], "secret": key["secret"]},
                       cmk=False)
    inv = inventory(sandbox, moto_url, arn)
    [state] = inspect_inventory(inv)
    assert state.storage.kms == "aws_managed"
    assert "KG-STO-101" in {f.id for f in policy_engine.evaluate(keys_document([state], inv.hosts))}


def test_missing_secret_leaves_the_key_unknown_and_names_the_secret(
        sandbox: SandboxHandle, moto_url: str, policy_engine: PolicyEngine, caplog: pytest.LogCaptureFixture) -> None:
    inv = inventory(sandbox, moto_url, "kg/does-not-exist")
    [state] = inspect_inventory(inv)
    assert "kg/does-not-exist" in (state.inspection_error or "")
    assert "ResourceNotFoundException" in (state.inspection_error or "")
    assert "KG-KEY-106" in {f.id for f in policy_engine.evaluate(keys_document([state], inv.hosts))}


def test_secret_value_never_leaks_into_state_or_logs(sandbox: SandboxHandle, moto_url: str,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    key = exchange_key(sandbox)
    arn = store_secret(moto_url, "kg/bot-exec-canary", {"api_key": key["api_key"], "secret": key["secret"]},
                       cmk=True)
    install_log_redaction()  # as `keyguard serve` and every CLI command do at start
    caplog.set_level(logging.DEBUG)
    [state] = inspect_inventory(inventory(sandbox, moto_url, arn))
    assert CANARY not in state.model_dump_json()
    assert CANARY not in json.dumps(state.to_policy_input())
    assert CANARY not in caplog.text
