"""Duplicates: N orders (default 10,000) with 20% of responses dropped after the order executed (the sandbox
executes it, then cuts the connection). Counted at the exchange: duplicate orders (an intent executed more
than once) and lost orders (an intent the bot does not know executed, or that never executed).

Keyguard: OrderExecutor (client id minted once and journaled; unknown outcome resolved by look-up).
Baseline: the naive loop people write with ccxt: create_order, and on a network error try again (up to 3
attempts). ccxt mints a new client order id on every call, so a retry is a second order.

    uv run python -m bench.duplicates [--orders 10000] [--drop 0.2]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import ccxt

from keyguard.exchanges.binance_client import BinanceSpotClient
from keyguard.exchanges.budget import SharedRateLimiter, pools_from_exchange_info
from keyguard.exchanges.budget_store import FileBudgetStore
from keyguard.sandbox import BINANCE_SPOT_ONLY_OPTIONS, Fault, SandboxConfig, SandboxHandle, run_sandbox
from keyguard.worker.journal import OrderJournal, OrderStatus, journal_engine
from keyguard.worker.orders import OrderExecutor, OrderIntent

QTY = 0.0001
FLAGS = {"enableReading": True, "enableSpotAndMarginTrading": True}


def drop_next_order_response(sandbox: SandboxHandle) -> None:
    # hold_s=0: cut right after execution, so the run measures idempotency rather than waiting on timeouts.
    sandbox.exchange.set_faults([Fault(endpoint="POST /api/v3/order", kind="drop", when="after", times=1,
                                       hold_s=0.0)])


def keyguard_run(sandbox: SandboxHandle, n: int, drops: set[int], tmp: Path) -> dict[str, Any]:
    key = sandbox.create_key(label="kg", account="kg", flags=FLAGS)
    limiter = SharedRateLimiter(FileBudgetStore(tmp / "budget"), headroom=0.9)
    client = BinanceSpotClient(sandbox.url, key["api_key"], key["secret"], limiter, timeout_s=2.0)
    limiter.pools = pools_from_exchange_info(client.exchange_info()["rateLimits"])
    journal = OrderJournal(journal_engine(f"sqlite:///{tmp / 'journal.db'}"))
    executor = OrderExecutor(client, journal, lookup_base_s=0.005, lookup_cap_s=0.05)
    believed: dict[str, OrderStatus] = {}
    started = time.perf_counter()
    for i in range(n):
        if i in drops:
            drop_next_order_response(sandbox)
        intent = OrderIntent("BTCUSDT", "BTC", "BUY" if i % 2 == 0 else "SELL", QTY)
        believed[intent.intent_id[:24]] = executor.place(intent).status
    elapsed = time.perf_counter() - started
    client.close()
    per_intent = Counter(o.client_order_id.split("-")[1] for o in sandbox.exchange.orders_of("kg"))
    duplicates = sum(c - 1 for c in per_intent.values() if c > 1)
    lost = sum(1 for intent, status in believed.items()
               if per_intent.get(intent, 0) == 0 or status is not OrderStatus.FILLED)
    return {"orders": len(sandbox.exchange.orders_of("kg")), "duplicates": duplicates, "lost": lost,
            "unknown": sum(1 for s in believed.values() if s is OrderStatus.UNKNOWN), "seconds": elapsed}


def ccxt_run(sandbox: SandboxHandle, n: int, drops: set[int]) -> dict[str, Any]:
    key = sandbox.create_key(label="ccxt", account="ccxt", flags=FLAGS)
    exchange = ccxt.binance({"apiKey": key["api_key"], "secret": key["secret"], "urls": sandbox.ccxt_urls(),
                             "options": dict(BINANCE_SPOT_ONLY_OPTIONS), "enableRateLimit": False,
                             "timeout": 2000})
    exchange.load_markets()
    gave_up = 0
    started = time.perf_counter()
    for i in range(n):
        if i in drops:
            drop_next_order_response(sandbox)
        for _attempt in range(3):
            try:
                exchange.create_order("BTC/USDT", "market", "buy" if i % 2 == 0 else "sell", QTY)
                break
            except ccxt.NetworkError:
                continue  # timed out: "it probably did not go through", try again
        else:
            gave_up += 1
    elapsed = time.perf_counter() - started
    orders = len(sandbox.exchange.orders_of("ccxt"))
    # Without a stable client id the exchange cannot tell retries apart: every order beyond one per intent
    # is a duplicate (no intent here can be absent: each drop hits an order that executed).
    return {"orders": orders, "duplicates": orders - (n - gave_up), "lost": gave_up, "unknown": 0,
            "seconds": elapsed}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=10000)
    parser.add_argument("--drop", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    drops = set(rng.sample(range(args.orders), int(args.orders * args.drop)))
    config = SandboxConfig(orders_short_limit=10**9, orders_long_limit=10**9, weight_limit=10**9,
                           raw_request_limit=10**9,
                           starting_balances={"USDT": 10_000_000.0, "BTC": 100.0})
    with run_sandbox(config) as sandbox:
        tmp = Path(tempfile.mkdtemp(prefix="kg-bench-dup-"))
        ours = keyguard_run(sandbox, args.orders, drops, tmp)
        base = ccxt_run(sandbox, args.orders, drops)
    print(f"duplicates: {args.orders} orders, {len(drops)} responses dropped after execution")
    print(f"{'variant':<34}{'exchange orders':>16}{'duplicates':>12}{'lost':>6}{'unknown':>9}{'seconds':>9}")
    for label, r in (("keyguard (id once + look-up)", ours), ("ccxt naive retry on timeout", base)):
        print(f"{label:<34}{r['orders']:>16}{r['duplicates']:>12}{r['lost']:>6}{r['unknown']:>9}{r['seconds']:>9.1f}")


if __name__ == "__main__":
    main()
