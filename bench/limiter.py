"""Limiter: two processes on one IP saturate the sandbox's Binance rules (6000 weight per window, window
shortened to 5 s) for several windows. Reported from the exchange's side: share of the weight limit used by
accepted requests per window, and every 429 and 418 it sent.

Keyguard: each process has its own SharedRateLimiter over one FileBudgetStore (one budget for the IP).
Baselines: ccxt's async binance client with `rateLimiterAlgorithm` leakyBucket, then rollingWindow, one ccxt
instance per process as users run it, each configured for the exchange's full limit (it cannot know about
the other process).

    uv run python -m bench.limiter [--windows 6] [--window-s 5]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import tempfile
import time
from pathlib import Path
from typing import Any

from keyguard.sandbox import BINANCE_SPOT_ONLY_OPTIONS, SandboxConfig, run_sandbox, sandbox_urls
from keyguard.sandbox.state import SandboxRejection

WEIGHT_LIMIT = 6000
HEADROOM = 0.98  # the benchmark's setting; the worker's default is 0.9 (docs/benchmarks.md)
# One request mix for everyone: exchangeInfo (weight 20), depth limit 100 (5), account (20, signed).
CALLS = ("exchangeInfo", "depth", "account")


def keyguard_process(url: str, key: str, secret: str, budget: str, times: Any, go: Any, out: Any) -> None:
    from keyguard.exchanges.binance_client import BinanceSpotClient, ExchangeRejected
    from keyguard.exchanges.budget import RateLimitRefused, SharedRateLimiter, pools_from_exchange_info
    from keyguard.exchanges.budget_store import FileBudgetStore

    limiter = SharedRateLimiter(FileBudgetStore(budget), egress_ip="127.0.0.1", headroom=HEADROOM,
                                default_deadline_s=60.0)
    client = BinanceSpotClient(url, key, secret, limiter, timeout_s=10)
    limiter.pools = pools_from_exchange_info(client.exchange_info()["rateLimits"])
    out.put("ready")
    go.wait(120)
    start_at, end_at = times[0], times[1]
    time.sleep(max(0.0, start_at - time.time()))
    i = 0
    while time.time() < end_at:
        call = CALLS[i % len(CALLS)]
        i += 1
        try:
            if call == "exchangeInfo":
                client.exchange_info()
            elif call == "depth":
                client.request("GET", "/api/v3/depth", {"symbol": "BTCUSDT", "limit": 100})
            else:
                client.account()
        except (ExchangeRejected, RateLimitRefused):
            continue
    client.close()
    out.put("done")


def ccxt_bot_settings(url: str, key: str, secret: str, window_s: float) -> dict[str, Any]:
    """A stock async ccxt binance bot whose own limiter is tuned to the exchange's whole limit."""
    return {
        "apiKey": key, "secret": secret, "urls": sandbox_urls(url, "binance"),
        "options": dict(BINANCE_SPOT_ONLY_OPTIONS), "enableRateLimit": True,
        # ccxt's binance costs are 0.2 per unit of weight; this rate spends exactly the exchange's limit.
        "rateLimit": window_s * 1000 / (WEIGHT_LIMIT * 0.2),
    }


async def call_of_the_mix(exchange: Any, i: int) -> str:
    """The i-th request of the benchmark's mix (exchangeInfo, depth, account); returns which it was."""
    call = CALLS[i % len(CALLS)]
    if call == "exchangeInfo":
        await exchange.public_get_exchangeinfo()
    elif call == "depth":
        await exchange.public_get_depth({"symbol": "BTCUSDT", "limit": 100})
    else:
        await exchange.private_get_account()
    return call


def ccxt_process(url: str, key: str, secret: str, algorithm: str, window_s: float, times: Any, go: Any,
                 out: Any) -> None:
    import ccxt.async_support as ccxt_async

    async def run() -> None:
        exchange = ccxt_async.binance({**ccxt_bot_settings(url, key, secret, window_s),
                                       "rateLimiterAlgorithm": algorithm, "rollingWindowSize": window_s * 1000})
        try:
            out.put("ready")
            await asyncio.get_running_loop().run_in_executor(None, go.wait, 120)
            start_at, end_at = times[0], times[1]
            await asyncio.sleep(max(0.0, start_at - time.time()))
            i = 0
            while time.time() < end_at:
                i += 1
                try:
                    await call_of_the_mix(exchange, i - 1)
                except ccxt_async.BaseError:
                    continue  # what a bot's main loop does: log and carry on
        finally:
            await exchange.close()

    asyncio.run(run())
    out.put("done")


def count_charges(exchange: Any) -> list[tuple[float, float, int]]:
    """Instrument a sandbox so every request it charges, accepted or refused, is logged as (time, weight, status):
    the exchange's own view, which the benchmarks count from."""
    log: list[tuple[float, float, int]] = []
    charge = exchange.charge_ip

    def counting(ip: str, weight: float) -> dict[str, str]:
        now = exchange.now()
        try:
            headers = charge(ip, weight)
        except SandboxRejection as exc:
            log.append((now, weight, exc.status))
            raise
        log.append((now, weight, 200))
        return headers

    exchange.charge_ip = counting
    return log


def run_variant(name: str, window_s: int, windows: int) -> dict[str, Any]:
    config = SandboxConfig(weight_limit=WEIGHT_LIMIT, weight_window_s=window_s, ban_base_s=2 * window_s)
    with run_sandbox(config) as sandbox:
        key = sandbox.create_key(label="bench", flags={"enableReading": True, "enableSpotAndMarginTrading": True})
        log = count_charges(sandbox.exchange)
        ctx = multiprocessing.get_context("spawn")
        out = ctx.Queue()
        go = ctx.Event()
        times = ctx.Array("d", [0.0, 0.0])
        tmp = tempfile.mkdtemp(prefix="kg-bench-limiter-")
        procs = []
        for _ in range(2):
            if name == "keyguard":
                args: tuple[Any, ...] = (sandbox.url, key["api_key"], key["secret"], str(Path(tmp) / "budget"),
                                         times, go, out)
                procs.append(ctx.Process(target=keyguard_process, args=args))
            else:
                args = (sandbox.url, key["api_key"], key["secret"], name, float(window_s), times, go, out)
                procs.append(ctx.Process(target=ccxt_process, args=args))
        for p in procs:
            p.start()
        for _ in procs:
            out.get(timeout=120)
        start_at = (time.time() // window_s + 1) * window_s  # the next window boundary
        end_at = start_at + windows * window_s
        times[0], times[1] = start_at, end_at
        go.set()
        for p in procs:
            p.join(end_at - time.time() + 30)
            if p.is_alive():
                p.kill()
        in_run = [e for e in log if start_at <= e[0] < end_at]
        shares = []
        for w in range(windows):
            lo, hi = start_at + w * window_s, start_at + (w + 1) * window_s
            shares.append(sum(wt for t, wt, st in in_run if lo <= t < hi and st == 200) / WEIGHT_LIMIT)
        return {
            "name": name, "mean_share": sum(shares) / len(shares), "min_share": min(shares),
            "n429": sum(1 for e in in_run if e[2] == 429), "n418": sum(1 for e in in_run if e[2] == 418),
            "requests": len(in_run),
        }


def store_throughput(n: int = 20000) -> dict[str, float]:
    """Budget updates per second on each cross-process store (one process, uncontended)."""
    from keyguard.exchanges.budget import PoolSpec, SharedRateLimiter
    from keyguard.exchanges.budget_store import FileBudgetStore, SqliteBudgetStore

    results = {}
    tmp = Path(tempfile.mkdtemp(prefix="kg-bench-store-"))
    for label, store in (("file+flock", FileBudgetStore(tmp / "f")), ("sqlite BEGIN IMMEDIATE",
                                                                      SqliteBudgetStore(tmp / "s.db"))):
        lim = SharedRateLimiter(store, pools=(PoolSpec("REQUEST_WEIGHT", 60, 10**9, "ip"),
                                              PoolSpec("RAW_REQUESTS", 300, 10**9, "ip")), headroom=1.0)
        started = time.perf_counter()
        for _ in range(n):
            lim.acquire("GET", "/api/v3/order")
        elapsed = time.perf_counter() - started
        results[label] = elapsed / n * 1e6
        store.close()
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--windows", type=int, default=6)
    parser.add_argument("--window-s", type=int, default=5)
    args = parser.parse_args(argv)
    print(f"limiter: 2 processes, one IP, weight limit {WEIGHT_LIMIT} per {args.window_s}s window, "
          f"{args.windows} windows; Keyguard headroom {HEADROOM}")
    rows = [run_variant(name, args.window_s, args.windows) for name in ("keyguard", "leakyBucket", "rollingWindow")]
    print(f"{'variant':<22}{'weight used/window':>20}{'worst window':>14}{'429s':>8}{'418s':>8}{'requests':>10}")
    for r in rows:
        label = "keyguard (shared)" if r["name"] == "keyguard" else f"ccxt {r['name']}"
        print(f"{label:<22}{r['mean_share']:>19.1%}{r['min_share']:>14.1%}{r['n429']:>8}{r['n418']:>8}"
              f"{r['requests']:>10}")
    print("budget store, µs per acquire (one process):")
    for label, us in store_throughput().items():
        print(f"  {label:<24}{us:>8.1f}")


if __name__ == "__main__":
    main()
