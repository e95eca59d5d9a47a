"""Live keys check: cycle time and rate-budget use for many keys, and detection latency at the receiver.

1. Cycle: N keys (default 500) on one host, every exchange request delayed by 20 ms (injected latency), the
   IP probe from a second address on. Keyguard: the service's KeyInspector (concurrent, clients and connections
   kept between cycles, one clock read per exchange, the host's shared budget under a 20% share).
   Baseline: the sequential path the service used before (per key: two new ccxt clients, a time call, the
   restrictions read, the probe from both addresses), as `inspect_inventory` did it.
   Counted at the exchange: weight charged to the host IP (REQUEST_WEIGHT and SAPI pools), 429s and 418s.
2. Detection: the service on its schedule (interval 10 s), a key gains withdraw at the exchange at a random
   moment, 20 times (a different key each time); latency = the alert's arrival at a local HTTP receiver minus the
   moment of the change. Keyguard's service vs the same service running the baseline's sequential inspection.

    uv run python -m bench.live_checks [--keys 500] [--latency-ms 20] [--flips 20] [--interval 10]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from keyguard.exchanges import adapter_for, sandbox_adapter_kwargs
from keyguard.exchanges.inspector import KeyInspector
from keyguard.exchanges.inventory import Inventory, keys_document, load_inventory
from keyguard.exchanges.keystate import KeyState
from keyguard.sandbox import SandboxConfig, SandboxHandle, run_sandbox

TRADE = {"enableReading": True, "enableSpotAndMarginTrading": True}


def make_inventory(tmp: Path, sandbox: SandboxHandle, count: int) -> Path:
    keys = []
    for i in range(count):
        key = sandbox.create_key(label=f"bot-{i}", flags=TRADE, ip_restrict=True, ips=["127.0.0.1"])
        secret = tmp / f"bot-{i}.json"
        secret.write_text(json.dumps({"api_key": key["api_key"], "secret": key["secret"]}))
        keys.append({"id": f"bot-{i}", "exchange": "binance", "purpose": "execution", "services": [f"svc-{i}"],
                     "credentials": {"file": str(secret)}, "api_key_for_bench": key["api_key"],
                     "storage": {"backend": "aws_secretsmanager", "kms": "customer_managed"},
                     "allowed_ips": [{"value": "127.0.0.1", "reason": "execution host"}]})
    path = tmp / "inventory.json"
    api_keys = {k["id"]: k.pop("api_key_for_bench") for k in keys}
    (tmp / "api_keys.json").write_text(json.dumps(api_keys))
    path.write_text(json.dumps({"hosts": [{"name": "exec", "ip": "127.0.0.1"}],
                                "exchange_urls": {"binance": sandbox.url},
                                "probe": {"source_ip": "127.0.0.1", "from": "127.0.0.2"}, "keys": keys}))
    return path


def baseline_inspect(inventory: Inventory) -> list[KeyState]:
    """The sequential path the service ran before: a fresh adapter (two ccxt clients) per key, one by one."""
    states = []
    for key in inventory.keys:
        credentials = key.credentials.load()
        kwargs = dict(sandbox_adapter_kwargs(key.exchange, inventory.exchange_urls[key.exchange]))
        adapter = adapter_for(key.exchange, credentials, source_ip=inventory.probe.source_ip, timeout_ms=10000,
                              **kwargs)
        states.append(adapter.inspect(key.declaration(), probe_from=inventory.probe.from_ip))
    return states


def exchange_counts(sandbox: SandboxHandle) -> dict[str, float]:
    ex, now, ip = sandbox.exchange, sandbox.exchange.now(), "127.0.0.1"
    standing = ex.bans.standing(ip)
    return {"weight": ex.weight.used(ip, now), "sapi": ex.sapi_ip_used(ip),
            "backoffs": 1 if standing.backoff_since else 0, "bans": standing.bans}


# Binance's per-minute limits, counted over an hour so that no window rolls during a run: the counts are then
# the run's whole use, and a cycle's use is compared with one minute's limit.
HOUR_WINDOWS = SandboxConfig(weight_limit=6000 * 60, weight_window_s=3600, sapi_weight_limit=12000 * 60,
                             sapi_weight_window_s=3600, align_windows_to_start=True)


def cycle_run(name: str, keys: int, latency_ms: int, inspect: Any) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, run_sandbox(HOUR_WINDOWS) as sandbox:
        os.environ["KEYGUARD_BUDGET_DIR"] = str(Path(tmp) / "budget")
        inventory = load_inventory(make_inventory(Path(tmp), sandbox, keys))
        sandbox.set_faults({"endpoint": "*", "kind": "latency", "latency_ms": latency_ms})
        walls, verified = [], 0
        for _ in range(2):  # a cold cycle, then a warm one (what every later cycle costs)
            started = time.perf_counter()
            states = inspect(inventory)
            walls.append(time.perf_counter() - started)
            verified = sum(1 for s in states if s.inspection_error is None)
        counts = exchange_counts(sandbox)
    return {"name": name, "cold_s": walls[0], "warm_s": walls[1], "verified": verified, **counts}


def print_cycles(rows: list[dict[str, Any]], keys: int, latency_ms: int) -> None:
    print(f"{keys} keys, {latency_ms} ms injected per request, probe from a second address; two cycles each")
    print("weight and SAPI weight: charged to the host IP per cycle, and as a share of one minute's limit "
          "(6000 and 12000)")
    print(f"{'variant':<44}{'cold s':>8}{'warm s':>8}{'verified':>10}{'weight':>8}{'SAPI':>7}{'weight %':>10}"
          f"{'SAPI %':>8}{'429':>5}{'418':>5}")
    for r in rows:
        weight, sapi = r["weight"] / 2, r["sapi"] / 2
        print(f"{r['name']:<44}{r['cold_s']:>8.2f}{r['warm_s']:>8.2f}{r['verified']:>10}{weight:>8.0f}{sapi:>7.0f}"
              f"{100 * weight / 6000:>9.2f}%{100 * sapi / 12000:>7.2f}%{r['backoffs']:>5}{r['bans']:>5}")


def detection_run(name: str, flips: int, interval: float, keys: int, legacy: bool) -> list[float]:
    from tests.servers import AlertReceiver

    from keyguard.checks.scheduler import Collector, Observation
    from keyguard.config import load_settings
    from keyguard.runtime import keys_collector, run_service

    latencies: list[float] = []
    with tempfile.TemporaryDirectory() as tmp, run_sandbox(SandboxConfig(align_windows_to_start=True)) as sandbox, \
            AlertReceiver() as receiver:
        os.environ["KEYGUARD_BUDGET_DIR"] = str(Path(tmp) / "budget")
        path = make_inventory(Path(tmp), sandbox, keys)
        api_keys = json.loads((Path(tmp) / "api_keys.json").read_text())
        settings = load_settings(store={"url": f"sqlite:///{tmp}/kg.db"}, service={"port": 0},
                                 checks={"interval_s": interval}, alerts={"routes": [{"url": receiver.url}]})
        if legacy:
            def collect() -> dict[str, Any] | Observation:
                inventory = load_inventory(path)
                return keys_document(baseline_inspect(inventory), inventory.hosts)

            collector = Collector("keys", collect)
        else:
            collector = keys_collector(path, settings.checks)
        with run_service(settings, [collector], "bench-token-0123456789"):
            for i in range(flips):
                time.sleep(random.uniform(0.5, 1.5) * interval)
                key_id = f"bot-{i}"
                seen = len(receiver.received)
                with sandbox.admin() as admin:
                    flipped = time.perf_counter()
                    admin.patch(f"/keys/{api_keys[key_id]}", json={"flags": {"enableWithdrawals": True}})
                deadline = flipped + 10 * interval
                while time.perf_counter() < deadline:
                    titles = [m["title"] for m in receiver.received[seen:]]
                    if any(f"KG-KEY-101 on binance/{key_id}" in t for t in titles):
                        latencies.append(time.perf_counter() - flipped)
                        break
                    time.sleep(0.01)
                else:
                    latencies.append(float("inf"))
    return latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench.live_checks")
    parser.add_argument("--keys", type=int, default=500)
    parser.add_argument("--latency-ms", type=int, default=20)
    parser.add_argument("--flips", type=int, default=20)
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--detection-keys", type=int, default=25)
    parser.add_argument("--parts", default="cycle,detection", help="which halves to run (cycle, detection)")
    args = parser.parse_args(argv)
    import logging

    logging.getLogger("keyguard").setLevel(logging.ERROR)
    parts = set(args.parts.split(","))
    inspector = KeyInspector(concurrency=8)
    rows = [] if "cycle" not in parts else [
        cycle_run("Keyguard: KeyInspector (8 at once, shared)", args.keys, args.latency_ms,
                  lambda inv: inspector.inspect(inv, time.time() + 60)),
        cycle_run("baseline: sequential, new clients per key", args.keys, args.latency_ms, baseline_inspect),
    ]
    if rows:
        print_cycles(rows, args.keys, args.latency_ms)
    if "detection" not in parts:
        return
    print(f"\ndetection latency: {args.detection_keys} keys, interval {args.interval:g}s, {args.flips} flips "
          "(key gains withdraw -> NEW KG-KEY-101 at the receiver)")
    print(f"{'variant':<44}{'p50 s':>8}{'p99 s':>8}{'max s':>8}{'missed':>8}")
    for name, legacy in (("Keyguard service", False), ("baseline: sequential inspection", True)):
        lat = detection_run(name, args.flips, args.interval, max(args.detection_keys, args.flips), legacy)
        found = [x for x in lat if x != float("inf")]
        print(f"{name:<44}{statistics.median(found):>8.2f}{percentile(found, 0.99):>8.2f}{max(found):>8.2f}"
              f"{len(lat) - len(found):>8}", flush=True)


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
