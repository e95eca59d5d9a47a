"""Gateway: what the Binance-compatible gateway (`keyguard.gateway`) costs and what it buys, beside the same bots
calling the sandbox exchange directly. Five parts, each selectable with `--parts`:

latency      the same small signing HTTP client places market orders (alternating buy/sell) straight at the
             sandbox, through a bare forwarder, through the gateway and through a flat floor (only the steps no
             gateway can skip, written flat in CPython), interleaved one by one so all see the same exchange
             state; p50/p90/p99 per order and the differences (what the gateway adds, what the floors add).
saturation   three bot processes loop over exchangeInfo (weight 20), depth limit 100 (5) and account (20) as
             fast as their own ccxt limiter lets them, for several 5 s weight windows (limit 6000). Keyguard: the
             same bots through one gateway (default headroom, market-data cache off so every request is
             charged). Baseline: straight at the sandbox, each with its own ccxt limiter. Counted at the exchange.
duplicates   an unmodified ccxt bot places N market orders; for a fixed random 20% the sandbox executes the order
             and then cuts the connection. On a network error the bot retries (3 attempts), either with the same
             clientOrderId or the way a stock ccxt call does (a new id each call). Through the gateway and
             straight at the sandbox; counted at the exchange.
startup      a gateway process starting on a journal of 100,000 closed orders, beside one starting on an empty
             journal: seconds to serve, peak resident memory, the position it folded.
memory       market orders through two gateway processes (closed orders kept in memory for the default hour, and
             for 5 s) and a bare forwarder, interleaved; each process's resident memory as orders accumulate.

The sandbox runs in this process (uvicorn, one thread) as in the other benchmarks; the gateway runs in a process
of its own (`--gateway-in thread` puts it in a thread of this process instead), as it is deployed.

    uv run python -m bench.gateway [--parts latency,saturation,duplicates] [--orders 2000] [--windows 6]
                                   [--dup-orders 10000] [--drop 0.2] [--gateway-in process|thread]
                                   [--pace-ms 0] [--mem-orders 20000] [--journal-orders 100000]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import json
import multiprocessing
import os
import queue
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import ccxt
import httpx

from bench.limiter import call_of_the_mix, ccxt_bot_settings, count_charges
from keyguard.gateway.bot_keys import BotKeyStore
from keyguard.sandbox import BINANCE_SPOT_ONLY_OPTIONS, Fault, SandboxConfig, SandboxHandle, run_sandbox, sandbox_urls

PARTS = ("latency", "saturation", "duplicates", "memory", "startup")
TRADER_FLAGS = {"enableReading": True, "enableSpotAndMarginTrading": True}
UNLIMITED = 10**9
BALANCES = {"USDT": 10_000_000.0, "BTC": 100.0, "ETH": 1000.0}
QTY = 0.001
DUP_QTY = 0.0001
WEIGHT_LIMIT = 6000
# One request mix for every saturating bot: exchangeInfo (weight 20), depth limit 100 (5), account (20, signed).
CALLS = ("exchangeInfo", "depth", "account")
# No loop runs longer than this, whatever the sizes; a run cut short says so (its intents column is smaller).
PART_CAP_S = 1200.0


# -- the gateway, in a process of its own or a thread of this one ---------------------------------------------------
def gateway_settings(sandbox: SandboxHandle, tmp: Path, **overrides: Any) -> dict[str, Any]:
    """Settings as a user writes them: the exchange key in a 0600 file, loopback, one state dir; an envelope that
    checks every order but that these runs never hit (sizes and rates far beyond a person's bot)."""
    key = sandbox.create_key(label="gateway", account="gateway", flags=TRADER_FLAGS)
    creds = tmp / "exchange-key.json"
    fd = os.open(creds, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(f'{{"api_key": "{key["api_key"]}", "secret": "{key["secret"]}"}}')
    raw: dict[str, Any] = {
        "gateway": "gw-bench", "listen": {"port": 0}, "state_dir": str(tmp / "gateway"),
        "exchange": {"base_url": sandbox.url, "credentials_file": str(creds), "timeout_s": 5.0},
        "limiter": {"backend": "file", "budget_path": str(tmp / "budget")},
        "account": {"max_order_notional": 5000, "max_order_share_of_portfolio": None, "max_orders_per_minute": None,
                    "max_position": {"BTC": 10.0}, "daily_loss_limit": None, "target_allocation": None},
    }
    raw.update(overrides)
    return raw


def gateway_stats(gateway: Any) -> dict[str, Any]:
    lane = gateway.lane_stats
    return {**gateway.desk.counters, "market_hits": gateway.market.hits, "market_misses": gateway.market.misses,
            "lane": None if lane is None else {"running": lane.running, "orders_placed": lane.orders_placed,
                                               "orders_handed_back": lane.orders_resolved,
                                               "verdicts_issued": lane.verdicts_issued}}


def gateway_process(settings: dict[str, Any], out: Any, stop: Any) -> None:
    from keyguard.gateway.config import GatewayConfig
    from keyguard.gateway.server import run_gateway

    with run_gateway(GatewayConfig.model_validate(settings)) as handle:
        out.put(handle.url)
        stop.wait(PART_CAP_S + 600)
        out.put(gateway_stats(handle.gateway))


@contextmanager
def serve_gateway(settings: dict[str, Any], where: str, stats: dict[str, Any],
                  name: str = "keyguard-gateway-bench") -> Iterator[str]:
    """The gateway's URL while the block runs; its counters land in `stats` when it stops."""
    if where == "thread":
        from keyguard.gateway.config import GatewayConfig
        from keyguard.gateway.server import run_gateway

        with run_gateway(GatewayConfig.model_validate(settings)) as handle:
            try:
                yield handle.url
            finally:
                stats.update(gateway_stats(handle.gateway))
        return
    with spawned(gateway_process, settings, name) as (url, out, stop):
        try:
            yield url
        finally:
            stop.set()
            try:
                stats.update(out.get(timeout=30))
            except queue.Empty:
                stats["note"] = "the gateway process reported no counters"


@contextmanager
def spawned(target: Any, arg: Any, name: str) -> Iterator[tuple[Any, Any, Any]]:
    """`target(arg, out, stop)` in a process of its own: its first message (its URL), its queue and its stop event;
    stopped and reaped when the block exits."""
    ctx = multiprocessing.get_context("spawn")
    out, stop = ctx.Queue(), ctx.Event()
    proc = ctx.Process(target=target, args=(arg, out, stop), name=name)
    proc.start()
    try:
        yield out.get(timeout=60), out, stop
    finally:
        stop.set()
        proc.join(30)
        if proc.is_alive():
            proc.kill()


def bot_keys(settings: dict[str, Any], bots: list[str]) -> list[Any]:
    from keyguard.gateway.config import GatewayConfig

    store = BotKeyStore(GatewayConfig.model_validate(settings).keys_path)
    return [store.create(bot) for bot in bots]


# -- the floor: the gateway's HTTP stack forwarding requests and doing nothing else -------------------------------
def forwarder_process(upstream: str, out: Any, stop: Any) -> None:
    """A bare forwarder on the gateway's own stack: its HTTP server (a thread per connection, httptools), the same
    kept-alive exchange connections, the answer parsed and re-encoded as the gateway does. No keys, journal, budget
    or envelope: what any gateway written this way costs before it does its job."""
    from keyguard.exchanges.connections import KeptAliveConnections
    from keyguard.gateway.http_server import GatewayHTTPServer, Reply, Request

    exchange = KeptAliveConnections(upstream, tls=None)

    def forward(request: Request) -> Reply:
        target = request.path + (f"?{request.query}" if request.query else "")
        answer = exchange.request(request.method, target, {"X-MBX-APIKEY": request.headers.get("x-mbx-apikey", "")},
                                  5.0)
        return Reply(answer.status, json.loads(answer.body))

    server = GatewayHTTPServer(forward, name="keyguard-bench-forwarder")
    out.put(server.start())
    stop.wait(PART_CAP_S + 600)
    server.stop()


@contextmanager
def serve_forwarder(upstream: str) -> Iterator[str]:
    with spawned(forwarder_process, upstream, "keyguard-bench-forwarder") as (url, _, _):
        yield url


# -- a second floor: the order's unavoidable steps, flat, in CPython --------------------------------------------------
FLAT_BOT = ("flat" * 16, "flat-bot-secret")
JOURNAL_INSERT = ("INSERT INTO worker_order (client_order_id, intent_id, attempt, origin, worker, symbol, side, "
                  "order_type, quantity, price, status, executed_qty, quote_qty, commissions, commission_qty, "
                  "reduce_only, sent_at, created_at, updated_at) VALUES (?, ?, 1, 'gateway', ?, ?, ?, ?, ?, ?, "
                  "'SENT', 0, 0, '{}', 0, 0, ?, ?, ?)")
MAPPING_INSERT = ("INSERT INTO gateway_order (bot, bot_client_order_id, intent_id, symbol, created_at) "
                  "VALUES (?, ?, ?, ?, ?)")
JOURNAL_UPDATE = ("UPDATE worker_order SET status = ?, exchange_order_id = ?, executed_qty = ?, quote_qty = ?, "
                  "updated_at = ? WHERE client_order_id = ?")


def flat_process(arg: tuple[str, str, str, str], out: Any, stop: Any) -> None:
    """Only what no gateway can skip for a new order, written flat on the gateway's HTTP stack and real parts: the
    bot's HMAC and timestamp, a look at the three state files (account and bot kill switches, trading state), the
    risk check for the bot and the account, the journal row and the bot's mapping appended to an intent log before
    the order leaves and committed while it is out (raw sqlite3, the journal's own schema and settings), the charge on
    the shared budget file, the exchange signature, the answer under the bot's id; the row's final state and the
    budget's correction after the answer.
    No layers, no objects of the gateway's: what a CPython gateway costs at best. Not a gateway (one bot, one
    symbol, no replays, no error paths)."""
    import sqlite3
    import uuid
    from datetime import UTC, datetime
    from urllib.parse import parse_qsl

    from keyguard.exchanges.binance_client import encode_query
    from keyguard.exchanges.budget import SharedRateLimiter, pools_from_exchange_info
    from keyguard.exchanges.budget_store import FileBudgetStore
    from keyguard.exchanges.connections import KeptAliveConnections
    from keyguard.gateway.desk import create_desk_tables
    from keyguard.gateway.http_server import GatewayHTTPServer, Reply, Request
    from keyguard.worker.journal import journal_engine
    from keyguard.worker.risk import OrderCheck, RiskLimits, RiskSnapshot, check_order

    upstream, api_key, secret, state_dir = arg
    engine = journal_engine(f"sqlite:///{state_dir}/flat-journal.db", autocheckpoint=False)
    create_desk_tables(engine)
    engine.dispose()
    db = sqlite3.connect(f"{state_dir}/flat-journal.db", check_same_thread=False, isolation_level=None)
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "wal_autocheckpoint=0"):
        db.execute(f"PRAGMA {pragma}")
    exchange = KeptAliveConnections(upstream, tls=None)
    limiter = SharedRateLimiter(FileBudgetStore(f"{state_dir}/flat-budget"))
    limiter.pools = pools_from_exchange_info(
        json.loads(exchange.request("GET", "/api/v3/exchangeInfo", {}, 5.0).body)["rateLimits"])
    limits = RiskLimits(max_order_notional=5000, max_position={"BTC": 10.0})
    bot_snapshot, account_snapshot = RiskSnapshot(), RiskSnapshot()
    state_files = [f"{state_dir}/{name}" for name in ("account.kill", "bot.kill", "trading_state.json")]
    intents = os.open(f"{state_dir}/flat-journal.db.intents", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    encode = json.JSONEncoder(separators=(",", ":")).encode
    bot_key, bot_secret, exchange_secret = FLAT_BOT[0], FLAT_BOT[1].encode(), secret.encode()
    prices = {"BTCUSDT": 60000.0}

    def order(request: Request) -> Reply:
        if (request.method, request.path) != ("POST", "/api/v3/order"):
            return Reply(200, {})
        payload, _, signature = request.query.rpartition("&signature=")
        expected = hmac.new(bot_secret, payload.encode(), hashlib.sha256).hexdigest()
        if request.headers.get("x-mbx-apikey") != bot_key or not hmac.compare_digest(expected, signature):
            return Reply(401, {"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."})
        params = dict(parse_qsl(payload, keep_blank_values=True))
        now = time.time()
        if abs(now * 1000 - int(params["timestamp"])) > 5000:
            return Reply(400, {"code": -1021, "msg": "Timestamp for this request is outside of the recvWindow."})
        for path in state_files:
            with contextlib.suppress(FileNotFoundError):
                os.stat(path)
        check = OrderCheck(params["symbol"], "BTC", params["side"], float(params["quantity"]),
                           prices[params["symbol"]])
        refusal = check_order(check, limits, bot_snapshot, now) or check_order(check, limits, account_snapshot, now)
        if refusal is not None:
            return Reply(400, {"code": -2010, "msg": f"KEYGUARD_{refusal.code}: {refusal.message}"})
        bot_snapshot.record_order(now)
        account_snapshot.record_order(now)
        intent = uuid.uuid4().hex
        cid, bot_cid = f"kg-{intent[:24]}-1", params.pop("newClientOrderId", None) or intent[:30]
        stamp = datetime.now(UTC).isoformat(sep=" ")
        row = (cid, intent, "bot", params["symbol"], params["side"], params["type"], check.quantity, None, stamp,
               stamp, stamp)
        mapping = ("bot", bot_cid, intent, params["symbol"], stamp)
        os.write(intents, (encode([cid, intent, [[JOURNAL_INSERT, row], [MAPPING_INSERT, mapping]]]) + "\n").encode())
        cursor = db.cursor()

        def insert() -> None:
            cursor.execute("BEGIN")
            cursor.execute(JOURNAL_INSERT, row)
            cursor.execute(MAPPING_INSERT, mapping)
            cursor.execute("COMMIT")

        permit = limiter.acquire("POST", "/api/v3/order", deadline_s=5.0)
        for name in ("timestamp", "signature", "recvWindow"):
            params.pop(name, None)
        params.update(newClientOrderId=cid, timestamp=str(int(time.time() * 1000)))
        query = encode_query(params)
        query += "&signature=" + hmac.new(exchange_secret, query.encode(), hashlib.sha256).hexdigest()
        answer = exchange.request("POST", f"/api/v3/order?{query}", {"X-MBX-APIKEY": api_key}, 5.0,
                                  while_waiting=insert)
        report = json.loads(answer.body)

        def after() -> None:
            limiter.observe(permit, answer.status, answer.headers)
            cursor.execute("BEGIN")
            cursor.execute(JOURNAL_UPDATE, (report.get("status"), str(report.get("orderId")),
                                            float(report.get("executedQty", 0)),
                                            float(report.get("cummulativeQuoteQty", 0)),
                                            datetime.now(UTC).isoformat(sep=" "), cid))
            cursor.execute("COMMIT")

        return Reply(answer.status, {**report, "clientOrderId": bot_cid}, after=[after])

    server = GatewayHTTPServer(order, name="keyguard-bench-flat")
    out.put(server.start())
    stop.wait(PART_CAP_S + 600)
    server.stop()


# -- a third floor: the same steps compiled (bench/lane_floor), its rows taken by a Python process ------------------
def adopter_process(arg: tuple[str, str], out: Any, stop: Any) -> None:
    """The Python side of the compiled floor: what a Python gateway behind a compiled front would do with each order
    it placed, on a CPU the front competes for: the row and the mapping inserted while the order is out, the row's
    final state after the answer (raw sqlite3, the journal's own schema and settings, as the flat floor)."""
    import socket
    import sqlite3

    from keyguard.gateway.desk import create_desk_tables
    from keyguard.worker.journal import journal_engine

    state_dir, path = arg
    engine = journal_engine(f"sqlite:///{state_dir}/lane-journal.db", autocheckpoint=False)
    create_desk_tables(engine)
    engine.dispose()
    db = sqlite3.connect(f"{state_dir}/lane-journal.db", isolation_level=None)
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "wal_autocheckpoint=0"):
        db.execute(f"PRAGMA {pragma}")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    listener.settimeout(PART_CAP_S + 600)
    out.put(path)
    connection, _ = listener.accept()
    with connection, connection.makefile("rb") as lines:
        for line in lines:
            message = json.loads(line)
            db.execute("BEGIN")
            if "placed" in message:
                _cid, _intent, row, mapping = message["placed"]
                db.execute(JOURNAL_INSERT, row)
                db.execute(MAPPING_INSERT, mapping)
            else:
                db.execute(JOURNAL_UPDATE, message["answered"])
            db.execute("COMMIT")
            if stop.is_set():
                break


def build_lane_floor(tmp: Path) -> Path | None:
    """The compiled floor built with the machine's Go (standard library only), or None when there is no Go."""
    binary = tmp / "lane-floor"
    source = Path(__file__).with_name("lane_floor") / "main.go"
    try:
        subprocess.run(["go", "build", "-o", str(binary), str(source)], check=True, capture_output=True,
                       timeout=300, cwd=tmp)
    except (OSError, subprocess.SubprocessError) as exc:
        print(f"latency: the compiled floor was not built ({exc}); its row is left out")
        return None
    return binary


@contextmanager
def serve_lane_floor(binary: Path | None, upstream: str, api_key: str, secret: str,
                     state_dir: Path) -> Iterator[str | None]:
    if binary is None:
        yield None
        return
    socket_path = str(state_dir / "adopter.sock")
    with spawned(adopter_process, (str(state_dir), socket_path), "keyguard-bench-adopter") as _:
        lane = subprocess.Popen([str(binary), "-upstream", upstream, "-api-key", api_key, "-state", str(state_dir),
                                 "-adopter", socket_path], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert lane.stdin is not None and lane.stdout is not None
            lane.stdin.write(secret + "\n")
            lane.stdin.close()
            yield lane.stdout.readline().strip()
        finally:
            lane.terminate()
            lane.wait(30)


# -- latency ----------------------------------------------------------------------------------------------------------
class SigningClient:
    """The bot side of the latency part: Binance's signing over one kept-alive HTTP connection, nothing else."""

    def __init__(self, base_url: str, api_key: str, secret: str) -> None:
        self.http = httpx.Client(base_url=base_url, headers={"X-MBX-APIKEY": api_key}, timeout=10.0)
        self.secret = secret.encode()

    def market_order(self, side: str) -> float:
        """Seconds from sending one market order to reading its answer."""
        query = urlencode({"symbol": "BTCUSDT", "side": side, "type": "MARKET", "quantity": f"{QTY}",
                           "timestamp": int(time.time() * 1000)})
        signature = hmac.new(self.secret, query.encode(), hashlib.sha256).hexdigest()
        started = time.perf_counter()
        response = self.http.post(f"/api/v3/order?{query}&signature={signature}")
        elapsed = time.perf_counter() - started
        if response.status_code != 200:
            raise SystemExit(f"latency: order refused by {self.http.base_url}: HTTP {response.status_code} "
                             f"{response.text[:200]}")
        return elapsed

    def ping(self) -> float:
        """Seconds for GET /api/v3/ping: the gateway answers it itself, so through it this is its HTTP layer alone."""
        started = time.perf_counter()
        response = self.http.get("/api/v3/ping")
        elapsed = time.perf_counter() - started
        response.raise_for_status()
        return elapsed

    def close(self) -> None:
        self.http.close()


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


@contextmanager
def variant_environment(variant: str | None) -> Iterator[None]:
    """`NAME=VALUE` set in this process's environment while the block runs (a gateway process spawned inside it
    inherits it), restored after."""
    if not variant:
        yield
        return
    name, _, value = variant.partition("=")
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def latency_part(n: int, warmup: int, where: str, pace_ms: float = 0.0,
                 variant: str | None = None) -> dict[str, Any]:
    config = SandboxConfig(orders_short_limit=UNLIMITED, orders_long_limit=UNLIMITED, weight_limit=UNLIMITED,
                           raw_request_limit=UNLIMITED, starting_balances=BALANCES)
    tmp = Path(tempfile.mkdtemp(prefix="kg-bench-gw-latency-"))
    stats: dict[str, Any] = {}
    with run_sandbox(config) as sandbox:
        settings = gateway_settings(sandbox, tmp)
        (key,) = bot_keys(settings, ["latency"])
        direct_key = sandbox.create_key(label="direct", account="direct", flags=TRADER_FLAGS)
        flat_key = sandbox.create_key(label="flat", account="flat", flags=TRADER_FLAGS)
        flat_arg = (sandbox.url, flat_key["api_key"], flat_key["secret"], str(tmp))
        lane_key = sandbox.create_key(label="compiled", account="compiled", flags=TRADER_FLAGS)
        lane_dir = tmp / "compiled"
        lane_dir.mkdir()
        with contextlib.ExitStack() as stack, serve_gateway(settings, where, stats) as url, \
                serve_forwarder(sandbox.url) as forwarder_url, \
                spawned(flat_process, flat_arg, "keyguard-bench-flat") as (flat_url, _, _), \
                serve_lane_floor(build_lane_floor(tmp), sandbox.url, lane_key["api_key"], lane_key["secret"],
                                 lane_dir) as lane_url:
            direct = SigningClient(sandbox.url, direct_key["api_key"], direct_key["secret"])
            bare = SigningClient(forwarder_url, direct_key["api_key"], direct_key["secret"])
            through = SigningClient(url, key.api_key, key.secret)
            flat = SigningClient(flat_url, *FLAT_BOT)
            clients = {"direct": direct, "forwarder": bare, "gateway": through, "flat": flat}
            if lane_url:
                clients["compiled"] = SigningClient(lane_url, *FLAT_BOT)
            variant_stats: dict[str, Any] = {}
            if variant:
                # A second gateway process, the same sources, one environment variable set: a change compared with
                # the gateway inside one run (runs minutes apart differ by more than most changes).
                (tmp / "variant").mkdir()
                variant_settings = gateway_settings(sandbox, tmp / "variant")
                (variant_key,) = bot_keys(variant_settings, ["latency"])
                with variant_environment(variant):
                    variant_url = stack.enter_context(serve_gateway(variant_settings, "process", variant_stats,
                                                                    "keyguard-gateway-bench-variant"))
                clients["variant"] = SigningClient(variant_url, variant_key.api_key, variant_key.secret)
            for i in range(warmup):
                for client in clients.values():
                    client.market_order("BUY" if i % 2 == 0 else "SELL")
            times: dict[str, list[float]] = {name: [] for name in (*clients, "direct ping", "gateway ping")}
            for _ in range(min(n, 1000)):
                times["direct ping"].append(direct.ping())
                times["gateway ping"].append(through.ping())
            deadline = time.monotonic() + PART_CAP_S
            for i in range(n):
                if time.monotonic() > deadline:
                    break
                side = "BUY" if i % 2 == 0 else "SELL"
                # Interleaved: every client sees the same exchange state (its order table grows with every order).
                for name, client in clients.items():
                    times[name].append(client.market_order(side))
                    if pace_ms:
                        time.sleep(pace_ms / 1000)  # untimed: each order then meets a process idle that long
            for client in clients.values():
                client.close()
    return {"times": times, "stats": stats, "where": where, "pace_ms": pace_ms, "variant": variant}


def print_latency(result: dict[str, Any], n: int) -> None:
    times = result["times"]
    done = len(times["direct"])
    print(f"latency: {done} market orders each way{'' if done == n else f' (cut at {PART_CAP_S:.0f} s of {n})'}, "
          f"gateway in a {result['where']}"
          f"{f', a {pace_ms:g} ms pause after each order' if (pace_ms := result['pace_ms']) else ''}; "
          "ms per order at the client")
    tenth = max(1, done // 10)
    header = f"{'variant':<30}{'p50':>8}{'p90':>8}{'p99':>8}{'max':>8}{'p50 first 10%':>15}{'p50 last 10%':>14}"
    print(header)
    rows = {}
    for name, label in (("direct", "direct to the sandbox"), ("forwarder", "through a bare forwarder"),
                        ("flat", "through the flat floor"), ("compiled", "through the compiled floor"),
                        ("gateway", "through the gateway"), ("variant", f"gateway, {result['variant']}")):
        t = times.get(name)
        if not t:
            continue
        rows[name] = [percentile(t, q) * 1000 for q in (0.5, 0.9, 0.99)]
        print(f"{label:<30}{rows[name][0]:>8.2f}{rows[name][1]:>8.2f}{rows[name][2]:>8.2f}{max(t) * 1000:>8.2f}"
              f"{percentile(t[:tenth], 0.5) * 1000:>15.2f}{percentile(t[-tenth:], 0.5) * 1000:>14.2f}")
    for label, over, under in (("added by the bare forwarder", "forwarder", "direct"),
                               ("added by the flat floor", "flat", "direct"),
                               ("added by the compiled floor", "compiled", "direct"),
                               ("added by the gateway", "gateway", "direct"),
                               ("added by the variant", "variant", "direct"),
                               ("gateway over the forwarder", "gateway", "forwarder")):
        if over not in rows:
            continue
        added = [a - b for a, b in zip(rows[over], rows[under], strict=True)]
        print(f"{label:<30}{added[0]:>8.2f}{added[1]:>8.2f}{added[2]:>8.2f}")
    for name, label in (("direct ping", "ping, sandbox"), ("gateway ping", "ping, answered by the gateway")):
        t = times[name]
        print(f"{label:<30}" + "".join(f"{percentile(t, q) * 1000:>8.2f}" for q in (0.5, 0.9, 0.99))
              + f"{max(t) * 1000:>8.2f}")
    print(f"  gateway counters: {result['stats']}")


# -- saturation -------------------------------------------------------------------------------------------------------
def saturating_bot(url: str, key: str, secret: str, window_s: float, times: Any, go: Any, out: Any) -> None:
    """A stock ccxt bot: its own limiter tuned to the exchange's whole limit (it cannot know about the others)."""
    import asyncio

    import ccxt.async_support as ccxt_async

    counts: Counter[str] = Counter()
    samples: dict[str, str] = {}  # the first message of each kind of error, for the report

    async def run() -> None:
        exchange = ccxt_async.binance({**ccxt_bot_settings(url, key, secret, window_s), "timeout": 15000})
        try:
            out.put("ready")
            await asyncio.get_running_loop().run_in_executor(None, go.wait, 120)
            start_at, end_at = times[0], times[1]
            await asyncio.sleep(max(0.0, start_at - time.time()))
            i = 0
            while time.time() < end_at:
                i += 1
                counts["sent"] += 1
                try:
                    await call_of_the_mix(exchange, i - 1)
                    counts["ok"] += 1
                except ccxt_async.BaseError as exc:  # what a bot's main loop does: log and carry on
                    text = str(exc)
                    if "KEYGUARD_RATE_BUDGET" in text:
                        counts["gateway_429_passed_on" if "exchange refused" in text else "gateway_429"] += 1
                    else:
                        counts[type(exc).__name__] += 1
                        samples.setdefault(type(exc).__name__, text[:300])
        finally:
            await exchange.close()

    asyncio.run(run())
    out.put((dict(counts), samples))


def saturation_variant(name: str, window_s: int, windows: int, where: str) -> dict[str, Any]:
    config = SandboxConfig(weight_limit=WEIGHT_LIMIT, weight_window_s=window_s, ban_base_s=2 * window_s,
                           starting_balances=BALANCES)
    tmp = Path(tempfile.mkdtemp(prefix=f"kg-bench-gw-sat-{name}-"))
    stats: dict[str, Any] = {}
    with run_sandbox(config) as sandbox:
        log = count_charges(sandbox.exchange)
        bots = ["bot-a", "bot-b", "bot-c"]
        with contextmanager_for(name, sandbox, tmp, bots, where, stats) as (url, credentials):
            ctx = multiprocessing.get_context("spawn")
            out, go, times = ctx.Queue(), ctx.Event(), ctx.Array("d", [0.0, 0.0])
            procs = [ctx.Process(target=saturating_bot, args=(url, k, s, float(window_s), times, go, out))
                     for k, s in credentials]
            for p in procs:
                p.start()
            for _ in procs:
                out.get(timeout=120)
            start_at = (time.time() // window_s + 1) * window_s  # the next window boundary
            end_at = start_at + windows * window_s
            times[0], times[1] = start_at, end_at
            go.set()
            bot_counts: Counter[str] = Counter()
            samples: dict[str, str] = {}
            for _ in procs:
                counted, seen = out.get(timeout=end_at - time.time() + 60)
                bot_counts.update(counted)
                samples.update(seen)
            for p in procs:
                p.join(30)
                if p.is_alive():
                    p.kill()
    in_run = [e for e in log if start_at <= e[0] < end_at]
    shares = []
    for w in range(windows):
        lo, hi = start_at + w * window_s, start_at + (w + 1) * window_s
        shares.append(sum(wt for t, wt, st in in_run if lo <= t < hi and st == 200) / WEIGHT_LIMIT)
    return {
        "name": name, "mean_share": sum(shares) / len(shares), "min_share": min(shares), "max_share": max(shares),
        "n429": sum(1 for e in in_run if e[2] == 429), "n418": sum(1 for e in in_run if e[2] == 418),
        "requests": len(in_run), "bots": dict(bot_counts), "samples": samples, "stats": stats,
    }


@contextmanager
def contextmanager_for(name: str, sandbox: SandboxHandle, tmp: Path, bots: list[str], where: str,
                       stats: dict[str, Any]) -> Iterator[tuple[str, list[tuple[str, str]]]]:
    """(URL, each bot's key and secret): the gateway and its bot keys, or the sandbox and a key per bot."""
    if name == "gateway":
        # Every request reaches the exchange (no market-data cache): the limiter alone keeps the IP in bounds.
        settings = gateway_settings(sandbox, tmp, market_data_ttl_s=0)
        keys = bot_keys(settings, bots)
        with serve_gateway(settings, where, stats) as url:
            yield url, [(k.api_key, k.secret) for k in keys]
        return
    made = [sandbox.create_key(label=bot, account=bot, flags=TRADER_FLAGS) for bot in bots]
    yield sandbox.url, [(k["api_key"], k["secret"]) for k in made]


def print_saturation(rows: list[dict[str, Any]], window_s: int, windows: int) -> None:
    print(f"saturation: 3 bot processes, one IP, weight limit {WEIGHT_LIMIT} per {window_s}s window, {windows} "
          "windows; counted at the exchange")
    print(f"{'variant':<40}{'used/window':>12}{'worst':>8}{'best':>8}{'429s':>7}{'418s':>7}{'requests':>10}"
          f"{'gateway 429s':>14}")
    for r in rows:
        label = ("3 ccxt bots through one gateway" if r["name"] == "gateway"
                 else "3 ccxt bots direct, own ccxt limiters")
        gw429 = r["bots"].get("gateway_429", 0) if r["name"] == "gateway" else "-"
        print(f"{label:<40}{r['mean_share']:>12.1%}{r['min_share']:>8.1%}{r['max_share']:>8.1%}{r['n429']:>7}"
              f"{r['n418']:>7}{r['requests']:>10}{gw429:>14}")
    for r in rows:
        print(f"  {r['name']}: bot-side counts {r['bots']}" + (f"; gateway counters {r['stats']}" if r["stats"]
                                                               else ""))
        for kind, text in r["samples"].items():
            print(f"    first {kind}: {text}")


# -- duplicates -------------------------------------------------------------------------------------------------------
def ccxt_order_bot(urls: dict[str, Any], key: str, secret: str, n: int, drops: set[int], sandbox: SandboxHandle,
                   hold_s: float, same_id: bool, tag: str) -> dict[str, Any]:
    """An unmodified ccxt bot: create_order, and on a network error try again (3 attempts), with the same
    clientOrderId (`same_id`) or as a stock call does (ccxt mints a new one each call)."""
    exchange = ccxt.binance({"apiKey": key, "secret": secret, "urls": urls, "options": dict(BINANCE_SPOT_ONLY_OPTIONS),
                             "enableRateLimit": False, "timeout": 5000})
    exchange.load_markets()
    outcome: dict[str, str] = {}
    retries = 0
    started = time.perf_counter()
    deadline = time.monotonic() + PART_CAP_S / 2
    for i in range(n):
        if time.monotonic() > deadline:
            break
        if i in drops:
            sandbox.exchange.set_faults([Fault(endpoint="POST /api/v3/order", kind="drop", when="after", times=1,
                                               hold_s=hold_s)])
        cid = f"{tag}{i}"
        params = {"newClientOrderId": cid} if same_id else {}
        outcome[cid] = "gave up"
        for attempt in range(3):
            retries += attempt > 0
            try:
                exchange.create_order("BTC/USDT", "market", "buy" if i % 2 == 0 else "sell", DUP_QTY, None, params)
                outcome[cid] = "filled"
                break
            except ccxt.NetworkError:
                continue  # no answer: "it probably did not go through", try again
            except ccxt.BaseError as exc:
                outcome[cid] = f"refused: {type(exc).__name__}"
                break
    return {"outcome": outcome, "seconds": time.perf_counter() - started, "retries": retries}


def dup_counts(sandbox: SandboxHandle, account: str, bot: dict[str, Any], by_intent: dict[str, str] | None,
               same_id: bool) -> dict[str, Any]:
    """Duplicates, lost and unknown, counted at the exchange. With a stable id each order is traced to its intent;
    without one, every order beyond one per intent the bot saw placed is a duplicate (as in bench.duplicates)."""
    orders = sandbox.exchange.orders_of(account)
    outcome = bot["outcome"]
    gave_up = sum(1 for v in outcome.values() if v == "gave up")
    refused = sum(1 for v in outcome.values() if v.startswith("refused"))
    if same_id:
        if by_intent is not None:  # through the gateway: exchange id kg-<intent[:24]>-<n>, bot id -> intent
            per_prefix = Counter(o.client_order_id.split("-")[1] for o in orders)
            per_intent = {cid: per_prefix.get(intent[:24], 0) for cid, intent in by_intent.items()}
        else:
            per_cid = Counter(o.client_order_id for o in orders)
            per_intent = {cid: per_cid.get(cid, 0) for cid in outcome}
        duplicates = sum(c - 1 for c in per_intent.values() if c > 1)
        lost = sum(1 for cid, v in outcome.items() if v != "filled" or per_intent.get(cid, 0) == 0)
        unknown = sum(1 for cid, v in outcome.items() if v == "gave up" and per_intent.get(cid, 0) > 0)
    else:
        duplicates = len(orders) - (len(outcome) - gave_up - refused)
        lost, unknown = gave_up + refused, gave_up
    return {"intents": len(outcome), "orders": len(orders), "duplicates": duplicates, "lost": lost,
            "unknown": unknown, "refused": refused, "retries": bot["retries"], "seconds": bot["seconds"]}


def gateway_intents(settings: dict[str, Any], bot: str) -> dict[str, str]:
    """bot client order id -> the gateway's intent, from its journal (read after it stopped)."""
    db = Path(settings["state_dir"]) / "journal.db"
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT bot_client_order_id, intent_id FROM gateway_order WHERE bot = ?", (bot,))
        return dict(rows.fetchall())


def duplicates_variant(name: str, n: int, drops: set[int], hold_s: float, where: str) -> dict[str, Any]:
    config = SandboxConfig(orders_short_limit=UNLIMITED, orders_long_limit=UNLIMITED, weight_limit=UNLIMITED,
                           raw_request_limit=UNLIMITED, starting_balances=BALANCES)
    tmp = Path(tempfile.mkdtemp(prefix=f"kg-bench-gw-dup-{name.replace(' ', '-')}-"))
    same_id = name.endswith("same-id")
    stats: dict[str, Any] = {}
    # A fresh exchange per variant: its order table grows with every order, so each variant pays the same.
    with run_sandbox(config) as sandbox:
        if name.startswith("gateway"):
            settings = gateway_settings(sandbox, tmp)
            (key,) = bot_keys(settings, ["dup"])
            with serve_gateway(settings, where, stats) as url:
                bot = ccxt_order_bot(sandbox_urls(url), key.api_key, key.secret, n, drops, sandbox, hold_s, same_id,
                                     "dup")
            by_intent = gateway_intents(settings, "dup") if same_id else None
            result = dup_counts(sandbox, "gateway", bot, by_intent, same_id)
        else:
            direct = sandbox.create_key(label="direct", account="direct", flags=TRADER_FLAGS)
            bot = ccxt_order_bot(sandbox.ccxt_urls(), direct["api_key"], direct["secret"], n, drops, sandbox, hold_s,
                                 same_id, "dup")
            result = dup_counts(sandbox, "direct", bot, None, same_id)
    return {"name": name, **result, "stats": stats}


DUP_LABELS = {
    "gateway same-id": "ccxt bot -> gateway, retry same id",
    "gateway new-id": "ccxt bot -> gateway, stock retry (new id)",
    "direct same-id": "ccxt bot -> exchange, retry same id",
    "direct new-id": "ccxt bot -> exchange, stock retry (new id)",
}


def print_duplicates(rows: list[dict[str, Any]], n: int, dropped: int, hold_s: float) -> None:
    print(f"duplicates: {n} market orders, {dropped} responses dropped after execution (hold {hold_s}s), "
          "counted at the exchange")
    print(f"{'variant':<44}{'intents':>8}{'orders':>8}{'duplicates':>12}{'lost':>6}{'unknown':>9}{'retries':>9}"
          f"{'seconds':>9}")
    for r in rows:
        print(f"{DUP_LABELS[r['name']]:<44}{r['intents']:>8}{r['orders']:>8}{r['duplicates']:>12}{r['lost']:>6}"
              f"{r['unknown']:>9}{r['retries']:>9}{r['seconds']:>9.1f}")
    for r in rows:
        if r["stats"]:
            print(f"  {r['name']}: gateway counters {r['stats']}")


# -- memory -----------------------------------------------------------------------------------------------------------
def resident_kib(name: str) -> int:
    """VmRSS of this run's child process called `name`."""
    (proc,) = [p for p in multiprocessing.active_children() if p.name == name]
    status = Path(f"/proc/{proc.pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))


KEEP_SHORT_S = 5.0


def memory_part(n: int, warmup: int) -> dict[str, Any]:
    """What a long-running gateway keeps per order: the resident memory of two gateway processes as orders
    accumulate, one keeping closed orders in memory for its default hour (every order of this run stays), one for
    5 s (what a run of months looks like past its window), beside the bare forwarder's (same orders, same run)."""
    config = SandboxConfig(orders_short_limit=UNLIMITED, orders_long_limit=UNLIMITED, weight_limit=UNLIMITED,
                           raw_request_limit=UNLIMITED, starting_balances=BALANCES)
    tmp = Path(tempfile.mkdtemp(prefix="kg-bench-gw-memory-"))
    stats: dict[str, Any] = {}
    samples: list[tuple[int, int, int, int]] = []
    names = ("keyguard-gateway-bench", "keyguard-gateway-bench-short", "keyguard-bench-forwarder")
    with run_sandbox(config) as sandbox:
        settings = gateway_settings(sandbox, tmp)
        (key,) = bot_keys(settings, ["memory"])
        (tmp / "short").mkdir()
        short_settings = gateway_settings(sandbox, tmp / "short", keep_closed_orders_s=KEEP_SHORT_S,
                                          housekeeping_interval_s=1.0)
        (short_key,) = bot_keys(short_settings, ["memory"])
        direct_key = sandbox.create_key(label="direct", account="direct", flags=TRADER_FLAGS)
        with serve_gateway(settings, "process", stats) as url, \
                serve_gateway(short_settings, "process", {}, names[1]) as short_url, \
                serve_forwarder(sandbox.url) as forwarder_url:
            clients = [SigningClient(url, key.api_key, key.secret),
                       SigningClient(short_url, short_key.api_key, short_key.secret),
                       SigningClient(forwarder_url, direct_key["api_key"], direct_key["secret"])]
            step = max(1, n // 10)
            deadline = time.monotonic() + PART_CAP_S
            for i in range(warmup + n):
                if time.monotonic() > deadline:
                    break
                for client in clients:
                    client.market_order("BUY" if i % 2 == 0 else "SELL")
                done = i + 1 - warmup
                if done >= 0 and done % step == 0:
                    samples.append((done, *(resident_kib(name) for name in names)))
            for client in clients:
                client.close()
    return {"samples": samples, "stats": stats, "let_go": let_go_ids_part()}


LET_GO_IDS = 1_000_000


def let_go_ids_part(n: int = LET_GO_IDS, probes: int = 200_000) -> list[tuple[str, float, float, float]]:
    """What remembering `n` let-go order ids costs: the desk's filter (let_go.py) beside a set of the same hashes
    (what the desk held before), in one process: traced bytes per id, microseconds per look-up of a fresh id (what
    each new order pays) and the share of fresh ids that read as let go (each costs that order a journal read)."""
    import tracemalloc

    from keyguard.gateway.let_go import LetGoIds

    rng = random.Random(11)
    ids = [f"x-{rng.getrandbits(64):x}" for _ in range(n)]
    fresh = [hash(("bot", f"y-{rng.getrandbits(64):x}")) for _ in range(probes)]
    rows = []
    for name, make in (("set of hashes (before)", set), ("filter (let_go.py)", LetGoIds)):
        tracemalloc.start()
        held = make()
        for cid in ids:  # each hash made here, as the desk makes it when it lets an order go
            held.add(hash(("bot", cid)))
        size = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        started = time.perf_counter()
        maybes = sum(1 for key in fresh if key in held)
        per_lookup_us = (time.perf_counter() - started) / probes * 1e6
        assert all(hash(("bot", cid)) in held for cid in ids[:: max(1, n // 10_000)])
        rows.append((name, size / n, per_lookup_us, maybes / probes))
        del held
    return rows


def print_memory(result: dict[str, Any]) -> None:
    print(f"let-go ids: {LET_GO_IDS:,} remembered, then fresh ids looked up")
    print(f"{'':<26}{'bytes per id':>14}{'us per look-up':>16}{'fresh read as let go':>22}")
    for name, per_id, per_lookup_us, share in result["let_go"]:
        print(f"{name:<26}{per_id:>14.1f}{per_lookup_us:>16.2f}{share:>22.4%}")
    samples = result["samples"]
    print("memory: resident KiB of each process after N orders each (after the warm-up)")
    print(f"{'orders':>8}{'gateway, 1 h':>14}{f'gateway, {KEEP_SHORT_S:g} s':>14}{'forwarder':>11}")
    for done, *kib in samples:
        print(f"{done:>8}{kib[0]:>14}{kib[1]:>14}{kib[2]:>11}")
    if len(samples) >= 3:
        # Over the second half of the run: past the short window's first fill.
        (n0, *a), (n1, *b) = samples[len(samples) // 2], samples[-1]
        per = [(y - x) * 1024 / max(1, n1 - n0) for x, y in zip(a, b, strict=True)]
        print(f"growth per order over the second half, bytes: gateway keeping closed orders 1 h {per[0]:.0f}, "
              f"{KEEP_SHORT_S:g} s {per[1]:.0f}, forwarder {per[2]:.0f}")


# -- start-up on a long run's journal ---------------------------------------------------------------------------------
STARTUP_CHILD = r"""
import json, resource, sys, time
from keyguard.gateway.config import GatewayConfig
from keyguard.gateway.server import run_gateway
started = time.perf_counter()
with run_gateway(GatewayConfig.model_validate(json.loads(sys.argv[1]))) as handle:
    took = time.perf_counter() - started
    desk = handle.gateway.desk
    book = desk.books.get("alpha")
    position = book.positions.get("BTC", 0.0) if book is not None else 0.0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # The UTC day's turn as the gateway takes it, beside a full fold of the journal (how it took it before).
    desk.clock = lambda: time.time() + 86400
    started = time.perf_counter()
    desk.mark()
    turn = time.perf_counter() - started
    started = time.perf_counter()
    desk.refold()
    fold = time.perf_counter() - started
    # A bot listing 1,000 of its let-go orders (allOrders' most): their owners in batched look-ups, as the desk
    # finds them, beside one look-up per order (how it found them before).
    with desk.journal.engine.connect() as db:
        cids = [row[0] for row in db.exec_driver_sql(
            "SELECT client_order_id FROM worker_order ORDER BY created_at DESC LIMIT 1000")]
    reports = [{"clientOrderId": cid} for cid in cids]
    started = time.perf_counter()
    batched = len(desk._mine("alpha", reports))
    list_batched = time.perf_counter() - started
    started = time.perf_counter()
    one_by_one = sum(1 for cid in cids if (desk._stored_owner(exchange_cid=cid) or ("",))[0] == "alpha")
    list_each = time.perf_counter() - started
    assert batched == one_by_one == len(cids), (batched, one_by_one)
print(json.dumps({"start_s": took, "peak_kib": peak, "position": position, "turn_s": turn, "fold_s": fold,
                  "list_n": len(cids), "list_batched_s": list_batched, "list_each_s": list_each}))
"""


def start_gateway_process(settings: dict[str, Any]) -> dict[str, Any]:
    """`run_gateway` in a fresh interpreter: how long it took to serve, its peak resident memory, alpha's BTC."""
    done = subprocess.run([sys.executable, "-c", STARTUP_CHILD, json.dumps(settings)], capture_output=True, text=True,
                          timeout=PART_CAP_S)
    if done.returncode != 0:
        raise SystemExit(f"startup: the gateway did not start: {done.stderr[-2000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def startup_part(n: int) -> dict[str, Any]:
    """A gateway starting on a journal of `n` closed orders (filled two days ago, written straight into its SQLite
    journal as a long run leaves them), beside the same gateway starting on an empty journal, in the same run."""
    config = SandboxConfig(starting_balances=BALANCES)
    tmp = Path(tempfile.mkdtemp(prefix="kg-bench-gw-startup-"))
    with run_sandbox(config) as sandbox:
        settings = gateway_settings(sandbox, tmp)
        empty = start_gateway_process(settings)  # also makes the journal's tables
        old = "2026-01-01 10:00:00.000000"
        with sqlite3.connect(tmp / "gateway" / "journal.db") as db:
            for first in range(0, n, 10_000):
                rows, maps = [], []
                for i in range(first, min(n, first + 10_000)):
                    intent = f"{i:024x}00000000"
                    rows.append((f"kg-{intent[:24]}-1", intent, "BUY", str(10_000_000 + i), '{"BTC": 1e-06}', old, old,
                                 old))
                    maps.append(("alpha", f"bot-{i}", intent, old))
                db.executemany(
                    "INSERT INTO worker_order (client_order_id, intent_id, attempt, origin, worker, symbol, side, "
                    "order_type, quantity, status, exchange_order_id, executed_qty, quote_qty, commissions, "
                    "commission_qty, reduce_only, sent_at, created_at, updated_at) VALUES (?, ?, 1, 'gateway', "
                    "'gw-bench', 'BTCUSDT', ?, 'MARKET', 0.001, 'FILLED', ?, 0.001, 60.0, ?, 0.001, 0, ?, ?, ?)",
                    rows)
                db.executemany("INSERT INTO gateway_order (bot, bot_client_order_id, intent_id, symbol, created_at) "
                               "VALUES (?, ?, ?, 'BTCUSDT', ?)", maps)
        full = start_gateway_process(settings)
    return {"n": n, "empty": empty, "full": full}


def print_startup(result: dict[str, Any]) -> None:
    n = result["n"]
    print("startup: the gateway starting on its journal, a fresh process each; alpha's BTC position as folded")
    print(f"{'journal':<28}{'seconds':>9}{'peak MiB':>10}{'position':>12}{'day turn ms':>13}{'full fold ms':>14}")
    for label, r in (("empty", result["empty"]), (f"{n} closed orders", result["full"])):
        print(f"{label:<28}{r['start_s']:>9.2f}{r['peak_kib'] / 1024:>10.1f}{r['position']:>12.6f}"
              f"{r['turn_s'] * 1000:>13.3f}{r['fold_s'] * 1000:>14.1f}")
    expected = n * (0.001 - 1e-06)
    print(f"  expected position from the journal: {expected:.6f}")
    for label, r in (("empty", result["empty"]), (f"{n} closed orders", result["full"])):
        if r["list_n"]:
            print(f"  {label}: owners of {r['list_n']} let-go orders listed at once: batched "
                  f"{r['list_batched_s'] * 1000:.1f} ms, one look-up each {r['list_each_s'] * 1000:.1f} ms")


# -- main -------------------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default=",".join(PARTS), help="comma-separated: " + ", ".join(PARTS))
    parser.add_argument("--orders", type=int, default=2000, help="latency: orders each way")
    parser.add_argument("--warmup", type=int, default=200, help="latency: orders each way before measuring")
    parser.add_argument("--pace-ms", type=float, default=0.0,
                        help="latency: pause after each order (a bot's pace rather than back to back)")
    parser.add_argument("--mem-orders", type=int, default=20000, help="memory: orders through each process")
    parser.add_argument("--journal-orders", type=int, default=100_000, help="startup: closed orders in the journal")
    parser.add_argument("--windows", type=int, default=6, help="saturation: weight windows")
    parser.add_argument("--window-s", type=int, default=5, help="saturation: weight window length")
    parser.add_argument("--dup-orders", type=int, default=10000, help="duplicates: orders per variant")
    parser.add_argument("--drop", type=float, default=0.2, help="duplicates: share of responses dropped")
    parser.add_argument("--hold-s", type=float, default=0.0, help="duplicates: how long a dropped response is held")
    parser.add_argument("--dup-variants", default=",".join(DUP_LABELS), help="duplicates: which variants")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--variant", default=None, metavar="NAME=VALUE",
                        help="latency: a second gateway process with this environment variable set, interleaved")
    parser.add_argument("--gateway-in", choices=("process", "thread"), default="process")
    args = parser.parse_args(argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        parser.error(f"unknown part {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    variants = [v.strip() for v in args.dup_variants.split(",") if v.strip()]
    if any(v not in DUP_LABELS for v in variants):
        parser.error(f"--dup-variants: choose from {', '.join(DUP_LABELS)}")
    for part in parts:
        started = time.perf_counter()
        if part == "latency":
            print_latency(latency_part(args.orders, args.warmup, args.gateway_in, args.pace_ms, args.variant),
                          args.orders)
        elif part == "startup":
            print_startup(startup_part(args.journal_orders))
        elif part == "memory":
            print_memory(memory_part(args.mem_orders, args.warmup))
        elif part == "saturation":
            rows = [saturation_variant(name, args.window_s, args.windows, args.gateway_in)
                    for name in ("gateway", "direct")]
            print_saturation(rows, args.window_s, args.windows)
        else:
            drops = set(random.Random(args.seed).sample(range(args.dup_orders), int(args.dup_orders * args.drop)))
            rows = [duplicates_variant(name, args.dup_orders, drops, args.hold_s, args.gateway_in)
                    for name in variants]
            print_duplicates(rows, args.dup_orders, len(drops), args.hold_s)
        print(f"  ({part}: {time.perf_counter() - started:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
