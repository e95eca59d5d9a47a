"""Containment latency: from the finding (a foreign order on a bot's account, KG-ACT-101) to the last containment
step done: the kill switch engaged and read back, the open orders cancelled and read back, the key bound to an
unroutable address by the master account and read back, the secret's deny statement written and read back.

Keyguard: the running service (sandbox exchange on loopback, moto's Secrets Manager over HTTP, real OPA); each run
places an order with one bot's key from outside Keyguard and runs the check. Baseline: the seed's manual "first
five minutes" checklist (revoke the key, freeze trading, cancel all open orders, check withdrawal addresses), which
it says takes a person five minutes at best.

    uv run python -m bench.containment [--runs 20]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path

import boto3
import ccxt
import httpx
import yaml
from moto.server import ThreadedMotoServer

from keyguard.config import load_settings
from keyguard.runtime import build_collectors, run_service
from keyguard.sandbox import run_sandbox
from keyguard.sandbox.server import BINANCE_SPOT_ONLY_OPTIONS

TOKEN = "bench-token-0123456789abcdef"
REGION = "eu-west-1"
TRADE = {"enableReading": True, "enableSpotAndMarginTrading": True}
MANUAL_S = 300.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run(runs: int) -> tuple[list[float], list[float]]:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    moto_url = f"http://{host}:{port}"
    latencies: list[float] = []
    from_check: list[float] = []
    try:
        with tempfile.TemporaryDirectory() as tmp, run_sandbox() as sandbox:
            os.environ["KEYGUARD_BUDGET_DIR"] = str(Path(tmp) / "budget")
            sm = boto3.client("secretsmanager", region_name=REGION, endpoint_url=moto_url)
            cmk = boto3.client("kms", region_name=REGION, endpoint_url=moto_url).create_key()["KeyMetadata"]["Arn"]
            admin = sandbox.create_key(account="master", label="admin", flags=TRADE)
            Path(tmp, "admin.json").write_text(json.dumps({"api_key": admin["api_key"], "secret": admin["secret"]}))
            keys, entries = [], []
            for i in range(runs):
                key = sandbox.create_key(account=f"bot{i}", label=f"bot-{i}", flags=TRADE, ip_restrict=True,
                                         ips=["127.0.0.1"])
                sandbox.add_sub_account("master", f"bot{i}", f"bot-{i}@sub.example")
                arn = sm.create_secret(Name=f"bench/bot-{i}", KmsKeyId=cmk, SecretString=json.dumps(
                    {"api_key": key["api_key"], "secret": key["secret"]}))["ARN"]
                Path(tmp, f"worker-{i}.yaml").write_text(yaml.safe_dump({
                    "worker": f"w{i}", "state_dir": str(Path(tmp) / f"w{i}"),
                    "exchange": {"base_url": sandbox.url}}))
                keys.append(key)
                entries.append({
                    "id": f"bot-{i}", "exchange": "binance", "purpose": "execution", "services": [f"w{i}"],
                    "credentials": {"aws_secret": {"secret_id": arn, "region": REGION, "endpoint_url": moto_url}},
                    "allowed_ips": [{"value": "127.0.0.1", "reason": "execution host EIP"}],
                    "workers": [f"worker-{i}.yaml"], "activity": {"symbols": ["BTCUSDT"]},
                    "containment": {"admin": {"credentials": {"file": "admin.json"},
                                              "sub_account_email": f"bot-{i}@sub.example"}},
                })
            Path(tmp, "inventory.yaml").write_text(yaml.safe_dump({
                "hosts": [{"name": "exec-1", "ip": "127.0.0.1"}], "exchange_urls": {"binance": sandbox.url},
                "probe": {"source_ip": "127.0.0.1"}, "keys": entries}))
            settings = load_settings(store={"url": f"sqlite:///{tmp}/kg.db"},
                                     service={"port": 0, "run_rate_per_minute": 10_000},
                                     checks={"interval_s": 3600, "resolve_after": 2},
                                     inventory=str(Path(tmp, "inventory.yaml")))
            with run_service(settings, build_collectors(settings), TOKEN) as running, \
                    httpx.Client(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120) as client:
                containment = running.containment
                assert containment is not None
                for i, key in enumerate(keys):
                    outsider = ccxt.binance({"apiKey": key["api_key"], "secret": key["secret"],
                                             "urls": sandbox.ccxt_urls(), "options": dict(BINANCE_SPOT_ONLY_OPTIONS)})
                    outsider.create_order("BTCUSDT", "limit", "buy", 0.001, 50000.0)
                    done = len(containment.finished)
                    started = time.time()
                    client.post(running.url + "/api/checks/run").raise_for_status()
                    deadline = time.time() + 60
                    while len(containment.finished) == done and time.time() < deadline:
                        time.sleep(0.005)
                    outcome = containment.finished[-1]
                    if outcome.resource != f"binance/bot-{i}" or outcome.result != "done":
                        raise SystemExit(f"run {i}: {outcome.resource} {outcome.result}: "
                                         + "; ".join(s.line() for s in outcome.steps))
                    assert outcome.detected_at is not None
                    seen = outcome.detected_at  # the finding committed and handed to containment
                    last = max(s.finished_at for s in outcome.steps).timestamp()
                    latencies.append(last - seen)
                    from_check.append(last - started)
                    print(f"  run {i + 1}/{runs}: {last - seen:.3f} s", end="\r", flush=True)
            print()
    finally:
        moto.stop()
    return latencies, from_check


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench.containment")
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args(argv)
    for noisy in ("keyguard", "apprise", "werkzeug", "botocore"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    latencies, from_check = run(args.runs)
    print(f"{args.runs} foreign orders, each contained in 5 steps (kill switch, evidence pack, cancel orders, cut "
          "the key, block the secret), every step read back")
    print(f"{'variant':<58}{'p50 s':>8}{'p99 s':>8}{'max s':>8}")
    print(f"{'Keyguard: finding committed -> last step done':<58}{statistics.median(latencies):>8.3f}"
          f"{percentile(latencies, 0.99):>8.3f}{max(latencies):>8.3f}")
    print(f"{'Keyguard: check run started (20 keys read) -> last step done':<58}{statistics.median(from_check):>8.3f}"
          f"{percentile(from_check, 0.99):>8.3f}{max(from_check):>8.3f}")
    print(f"{'baseline: the seed manual first five minutes':<58}{MANUAL_S:>8.0f}{MANUAL_S:>8.0f}{MANUAL_S:>8.0f}")


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
