"""A gateway killed the instant after an order left, before its journal row reached the database: the order is
recorded in the intent log before it leaves, so the restarted gateway knows it, and the bot's retry of the same id
gets that order, never a second one. Run as its user runs it: `keyguard gateway serve` in its own process, killed
with SIGKILL, started again from the same config."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import ccxt

from keyguard.sandbox import SandboxHandle
from keyguard.sandbox.server import sandbox_urls
from tests.gateway.conftest import TRADER_FLAGS
from tests.gateway.test_cli import keyguard, start_serving, write_config


@contextmanager
def served(config: Path, exchange: dict[str, Any]) -> Iterator[tuple[subprocess.Popen[str], str]]:
    proc, url = start_serving(config, exchange)
    try:
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()


def wait_for(condition: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_an_order_sent_just_before_a_crash_is_neither_lost_nor_placed_twice(tmp_path: Path,
                                                                            sandbox: SandboxHandle) -> None:
    exchange = sandbox.create_key(label="gw-crash", account="crash", flags=TRADER_FLAGS)
    config = write_config(tmp_path, sandbox)
    created = keyguard("gateway", "keys", "create", "--config", str(config), "--bot", "alpha", "--json")
    assert created.returncode == 0, created.stderr
    bot = json.loads(created.stdout)
    database = tmp_path / "state" / "journal.db"

    with served(config, exchange) as (proc, url):
        client = ccxt.binance({"apiKey": bot["api_key"], "secret": bot["secret"], "urls": sandbox_urls(url),
                               "timeout": 30000})
        assert client.create_order("BTC/USDT", "market", "buy", 0.001)["status"] == "closed"
        assert len(sandbox.exchange.orders_of("crash")) == 1

        def first_row_final() -> bool:  # written once the bot has its answer
            with sqlite3.connect(database) as db:
                return db.execute("SELECT status FROM worker_order").fetchall() == [("FILLED",)]

        wait_for(first_row_final, 20, "the first order's row")
        # Another process holds the journal's write lock: the gateway's row for the next order cannot reach the
        # database (it waits on SQLite's busy timeout) while the order itself goes out to the exchange.
        blocker = sqlite3.connect(database, isolation_level=None, timeout=30)
        blocker.execute("BEGIN IMMEDIATE")
        errors: list[BaseException] = []
        answers: list[dict[str, Any]] = []

        def place() -> None:
            try:
                answers.append(client.create_order("BTC/USDT", "market", "buy", 0.001,
                                                   params={"newClientOrderId": "crash-1"}))
            except BaseException as exc:  # the gateway dies under it: whatever the bot sees, it retries
                errors.append(exc)

        placing = threading.Thread(target=place)
        placing.start()
        wait_for(lambda: len(sandbox.exchange.orders_of("crash")) == 2, 20, "the order to reach the exchange")
        proc.kill()
        proc.wait(timeout=30)
        placing.join(timeout=60)
        # Through the gateway itself the bot has no answer. Through its fast lane it may have one: the lane sent
        # the order and answered it from the exchange's report, and the gateway died before booking it. Either
        # way the retry below gets that one order.
        assert errors or answers[0]["clientOrderId"] == "crash-1"
        blocker.execute("ROLLBACK")
        blocker.close()

    with sqlite3.connect(database) as db:  # the crash came before the row reached the database
        assert db.execute("SELECT count(*) FROM worker_order").fetchone() == (1,)

    with served(config, exchange) as (proc, url):
        client = ccxt.binance({"apiKey": bot["api_key"], "secret": bot["secret"], "urls": sandbox_urls(url)})
        retried = client.create_order("BTC/USDT", "market", "buy", 0.001, params={"newClientOrderId": "crash-1"})
        assert retried["clientOrderId"] == "crash-1"
        assert retried["status"] == "closed"
        assert len(sandbox.exchange.orders_of("crash")) == 2  # the retry got the order the crash left behind
        fetched = client.fetch_order(retried["id"], "BTC/USDT")
        assert fetched["clientOrderId"] == "crash-1"
        assert fetched["filled"] == 0.001

    with sqlite3.connect(database) as db:
        rows = db.execute("SELECT status FROM worker_order ORDER BY created_at").fetchall()
    assert len(rows) == 2 and rows[1][0] == "FILLED"
