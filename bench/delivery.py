"""Delivery: detection-to-delivery latency at a healthy route while another route is black-holed (it accepts the
connection and never answers, the worst way a webhook fails).

Keyguard: the service's durable delivery (one loop per route, real connect/read timeouts, retries apart from
checking). Baseline: the delivery the service had before: after each check cycle, every undelivered alert is
sent to every route in order, through apprise with its default timeouts, in the check thread.
Each flip turns a vendor finding on and runs the check; latency = arrival at the healthy receiver minus the
start of that check run.

    uv run python -m bench.delivery [--flips 10]
"""

from __future__ import annotations

import argparse
import logging
import socket
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import apprise
import httpx
import yaml
from sqlmodel import select
from tests.servers import AlertReceiver

from keyguard.config import load_settings
from keyguard.runtime import RunningService, document_collector, run_service
from keyguard.store.db import session_scope
from keyguard.store.models import AlertRecord

TOKEN = "bench-token-0123456789abcdef"
VENDOR = {"name": "tradebot-cloud", "requires_withdraw": False, "supports_ip_restriction": True, "audit_log": True,
          "instant_revocation": True, "two_factor": True, "incidents_disclosed": True}


def black_hole() -> socket.socket:
    """A listening socket that never accepts: connections complete in the kernel, no answer ever comes."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(512)
    return sock


LEGACY_MAX_ATTEMPTS = 10


def legacy_deliver(running: RunningService, urls: list[str], sent: dict[int, set[int]],
                   attempts: dict[int, int]) -> None:
    """The old loop: every undelivered alert (up to 10 attempts each) to every route in order, in the caller's
    thread."""
    with session_scope(running.store) as session:
        alerts = session.exec(select(AlertRecord).order_by(AlertRecord.pk)).all()  # type: ignore[arg-type]
    for alert in alerts:
        done = sent.setdefault(alert.pk or 0, set())
        if len(done) == len(urls) or attempts.get(alert.pk or 0, 0) >= LEGACY_MAX_ATTEMPTS:
            continue
        attempts[alert.pk or 0] = attempts.get(alert.pk or 0, 0) + 1
        for index, url in enumerate(urls):
            if index in done:
                continue
            target = apprise.Apprise()
            target.add(url)
            if target.notify(title=alert.title, body=alert.body):
                done.add(index)


def run(name: str, flips: int, legacy: bool) -> list[float]:
    hole = black_hole()
    broken_url = f"json://127.0.0.1:{hole.getsockname()[1]}/alerts"
    latencies: list[float] = []
    with tempfile.TemporaryDirectory() as tmp, AlertReceiver() as healthy:
        vendors = Path(tmp) / "vendors.yaml"
        vendors.write_text(yaml.safe_dump({"kind": "vendors", "vendors": [VENDOR]}))
        routes = [] if legacy else [{"url": broken_url, "name": "broken"}, {"url": healthy.url, "name": "healthy"}]
        settings = load_settings(store={"url": f"sqlite:///{tmp}/kg.db"},
                                 service={"port": 0, "run_rate_per_minute": 10_000},
                                 checks={"interval_s": 3600, "resolve_after": 1}, alerts={"routes": routes})
        sent: dict[int, set[int]] = {}
        tries: dict[int, int] = {}
        with run_service(settings, [document_collector(vendors)], TOKEN) as running, \
                httpx.Client(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120) as client:
            def check() -> None:
                client.post(running.url + "/api/checks/run").raise_for_status()
                if legacy:
                    legacy_deliver(running, [broken_url, healthy.url], sent, tries)

            for i in range(flips):
                for facts in ({"requires_withdraw": True}, {}):
                    vendors.write_text(yaml.safe_dump({"kind": "vendors", "vendors": [{**VENDOR, **facts}]}))
                    seen = len(healthy.received)
                    started = time.perf_counter()
                    check()
                    arrived = wait(lambda s=seen: len(healthy.received) > s, 120)
                    if facts:
                        latencies.append(arrived - started)
                print(f"  {name}: flip {i + 1}/{flips}", end="\r", flush=True)
    hole.close()
    print()
    return latencies


def wait(predicate: Callable[[], Any], timeout_s: float) -> float:
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        if predicate():
            return time.perf_counter()
        time.sleep(0.002)
    return float("inf")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench.delivery")
    parser.add_argument("--flips", type=int, default=10)
    args = parser.parse_args(argv)
    logging.getLogger("keyguard").setLevel(logging.CRITICAL)
    logging.getLogger("apprise").setLevel(logging.CRITICAL)
    print(f"{args.flips} findings opened, one route black-holed, one healthy; seconds from the check run to "
          "arrival at the healthy route")
    rows = [("Keyguard: a loop per route, apart from checks", run("keyguard", args.flips, legacy=False)),
            ("baseline: every route in order, in the check", run("baseline", args.flips, legacy=True))]
    print(f"{'variant':<48}{'p50 s':>8}{'p99 s':>8}{'max s':>8}")
    for name, lat in rows:
        ordered = sorted(lat)
        p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
        print(f"{name:<48}{statistics.median(lat):>8.3f}{p99:>8.3f}{max(lat):>8.3f}")


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
