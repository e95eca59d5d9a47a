"""The gateway's fast lane: a compiled front (`keyguard-lane`, lane/) that sends new orders on verdicts this process
prepares, and forwards everything else here (docs/lane.md: the design and the control channel's messages).

This side: it starts the lane with its end of the control channel, streams it the bot order ids it must not reuse,
prepares verdicts (each a reservation in the envelope, the rate windows and the shared budget), books what the lane
sent (OrderDesk.adopt), answers the cases the lane hands back, revokes verdicts that are stale, swaps the exchange key
on a rotation, and replays the lane's intent log into the journal at start."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from keyguard.errors import KeyguardError
from keyguard.exchanges.budget import Permit
from keyguard.exchanges.errors import ExchangeTimeout, ExchangeUnavailable, RateLimitRefused
from keyguard.gateway.bot_keys import BotKey
from keyguard.gateway.desk import BinanceError, BotOrderRef, GatewayOrder
from keyguard.worker.journal import JournalOrder, OrderJournal, OrderStatus, new_journal_order
from keyguard.worker.orders import OrderIntent, mint_client_order_id
from keyguard.worker.risk import OrderCheck

if TYPE_CHECKING:
    from keyguard.gateway.app import Gateway

log = logging.getLogger(__name__)

BINARY_ENV = "KEYGUARD_LANE"
BINARY_NAME = "keyguard-lane"
# A verdict lives at most this long whatever else bounds it (the price's age, the budget windows it was charged in).
VERDICT_MAX_S = 10.0
# A verdict's quantity: this many times the quantity of the order that led to it (a bot's own order size), so a
# reservation holds back little of anyone's headroom; a larger order goes through Python.
VERDICT_SIZE = 2.0
# A bot's verdicts for a symbol are renewed this long after its last order there.
ACTIVE_S = 10.0
IDS_BATCH = 5000
# The lane's intent log is emptied (when nothing is pending) once it is this large.
TRIM_BYTES = 1 << 20
REQUEST_TIMEOUT_S = 10.0
START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 15.0
# Containment waits at most this long for orders the lane sent to be booked before it cancels.
SETTLE_TIMEOUT_S = 10.0
STATUS_UNKNOWN = (503, {"code": -1007, "msg": "Timeout waiting for response from backend server. Send status "
                                              "unknown; execution status unknown."})


def find_binary(configured: Path | None) -> Path | None:
    """The lane's binary: the configured path, else $KEYGUARD_LANE (`off`: none), else the checkout's .tools/bin,
    else PATH."""
    if configured is not None:
        return configured if configured.is_file() else None
    if os.environ.get(BINARY_ENV) == "off":
        return None
    candidates = [os.environ.get(BINARY_ENV)]
    root = Path(__file__).resolve().parents[3]
    candidates.append(str(root / ".tools" / "bin" / BINARY_NAME))
    candidates.append(shutil.which(BINARY_NAME))
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    return None


def _stamp(path: Path) -> list[Any]:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return [str(path), 0, 0, 0]
    return [str(path), st.st_mtime_ns, st.st_ino, st.st_size]


@dataclass
class Verdict:
    id: int
    key: BotKey
    symbol: str
    side: str
    reserved: OrderCheck  # (max quantity, max price), counted in flight by the envelope since `at`
    market_price: float
    at: float  # the envelope's clock when it was counted (its place in the rate windows)
    permit: Permit
    intent: str
    cid: str
    expires: float  # wall clock

    @property
    def slot(self) -> tuple[str, str, str]:
        return (self.key.api_key, self.symbol, self.side)


@dataclass
class LaneStats:
    started: bool = False
    running: bool = False
    binary: str | None = None
    problem: str | None = None
    verdicts_issued: int = 0
    verdicts_released: int = 0
    orders_placed: int = 0
    orders_resolved: int = 0
    replayed_at_start: int = 0


class FastLane:
    def __init__(self, gateway: Gateway, binary: Path) -> None:
        self.gateway = gateway
        self.binary = binary
        self.stats = LaneStats(binary=str(binary))
        self._process: _Child | None = None
        self._control: socket.socket | None = None
        self._write_lock = threading.Lock()
        self._lock = threading.Lock()
        self._verdicts: dict[int, Verdict] = {}
        self._by_slot: dict[tuple[str, str, str], Verdict] = {}
        self._next_id = 0
        self._next_req = 0
        self._waiting: dict[int, tuple[threading.Event, list[dict[str, Any]]]] = {}
        self._reader: threading.Thread | None = None
        self._work = ThreadPoolExecutor(max_workers=8, thread_name_prefix="keyguard-lane-adopt")
        self._stopping = False
        # (api_key, symbol) -> (its bot's key, the last order's quantity, when): a bot trading a symbol keeps its
        # verdicts renewed for ACTIVE_S after its last order there (the keeper thread).
        self._active: dict[tuple[str, str], tuple[BotKey, float, float]] = {}
        self._wake = threading.Event()
        self._keeper: threading.Thread | None = None
        # Set when an order the lane sent could not be booked: its intent log is then kept whole until the next start
        # (which replays it), never trimmed.
        self._booking_failed = False
        # Verdict ids whose orders are being booked now (between the lane's report and the end of their booking).
        self._booking: set[int] = set()
        self._booked = threading.Condition(self._lock)
        self.on_exit: Callable[[], object] | None = None  # called once if the lane dies while serving

    # -- lifecycle -------------------------------------------------------------------------------------------
    def start(self, upstream: Path) -> str:
        """Start the lane in front of this process's HTTP server on `upstream`; the URL bots use."""
        config = self.gateway.config
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._process = _Child(self.binary, theirs.fileno())
        finally:
            theirs.close()
        self._control = ours
        self._lines = ours.makefile("rb")
        listen = config.listen
        api_key, secret = self.gateway.client.credentials()
        self._send({"t": "hello",
                    "listen": ({"unix": str(listen.unix_socket)} if listen.unix_socket is not None
                               else {"host": listen.host, "port": listen.port}),
                    "upstream": str(upstream),
                    "exchange": {"base_url": config.exchange.base_url, "api_key": api_key, "secret": secret,
                                 "timeout_ms": int(config.exchange.timeout_s * 1000),
                                 "recv_window_ms": config.exchange.recv_window_ms,
                                 "source_address": config.exchange.source_address},
                    "intent_log": str(lane_log_path(config.state_dir)),
                    "server": {"max_connections": listen.max_connections, "idle_timeout_s": listen.idle_timeout_s,
                               "request_timeout_s": listen.request_timeout_s, "max_head_bytes": 64 * 1024,
                               "max_body_bytes": 1024 * 1024}})
        ours.settimeout(START_TIMEOUT_S)
        try:
            ready = json.loads(self._lines.readline() or b"{}")
        except (OSError, ValueError) as exc:
            ready = {"error": str(exc)}
        ours.settimeout(None)
        if ready.get("t") != "ready":
            self.close()
            raise OSError(f"the fast lane ({self.binary}) did not start: {ready or 'no answer'}")
        self._stream_ids()
        self.stats.started = self.stats.running = True
        self._reader = threading.Thread(target=self._read, name="keyguard-lane-control", daemon=True)
        self._reader.start()
        self._keeper = threading.Thread(target=self._keep, name="keyguard-lane-keeper", daemon=True)
        self._keeper.start()
        return str(ready["url"])

    def _stream_ids(self) -> None:
        """Every bot order id the journal knows, so the lane never sends a new order under one (a retry of an old
        id goes to Python, which answers it with the order it names)."""
        batch: list[str] = []
        with self.gateway.journal.engine.connect() as db:
            for (bot_cid,) in db.execute(select(GatewayOrder.bot_client_order_id)).yield_per(IDS_BATCH):  # type: ignore[call-overload]
                batch.append(bot_cid)
                if len(batch) >= IDS_BATCH:
                    self._send({"t": "ids", "ids": batch})
                    batch = []
        if batch:
            self._send({"t": "ids", "ids": batch})

    def close(self) -> None:
        """Stop the lane: it stops accepting, finishes what it has in hand (the orders it sends are booked here as
        usual) and exits; then every verdict left is released."""
        if self._stopping:
            return
        self._stopping = True
        self._wake.set()
        if self._control is not None and self.stats.running:
            with contextlib.suppress(OSError):
                self._send({"t": "stop"})
            if self._reader is not None and self._reader is not threading.current_thread():
                self._reader.join(timeout=STOP_TIMEOUT_S)
        self.stats.running = False
        if self._control is not None:
            with contextlib.suppress(OSError):
                self._control.shutdown(socket.SHUT_RDWR)
            self._control.close()
        if self._process is not None and not self._process.wait(10):
            self._process.kill()
            self._process.wait(5)
        self._work.shutdown(wait=True)
        with self._lock:
            left = list(self._verdicts.values())
            self._verdicts.clear()
            self._by_slot.clear()
        # Unclaimed or not, what the lane sent is in its intent log: the next start replays it. Reservations end.
        for verdict in left:
            self._release(verdict)

    # -- the control channel ---------------------------------------------------------------------------------
    def _send(self, message: dict[str, Any]) -> None:
        data = (json.dumps(message, separators=(",", ":")) + "\n").encode()
        with self._write_lock:
            assert self._control is not None
            self._control.sendall(data)

    def _request(self, message: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self._next_req += 1
            req = self._next_req
            waiter: tuple[threading.Event, list[dict[str, Any]]] = (threading.Event(), [])
            self._waiting[req] = waiter
        try:
            self._send({**message, "req": req})
            if not waiter[0].wait(REQUEST_TIMEOUT_S) or not waiter[1]:
                raise OSError(f"the fast lane did not answer {message['t']}")
            return waiter[1][0]
        finally:
            with self._lock:
                self._waiting.pop(req, None)

    def _read(self) -> None:
        try:
            for line in self._lines:
                message = json.loads(line)
                kind = message.get("t")
                if kind in ("revoked", "ack", "trimmed"):
                    with self._lock:
                        waiter = self._waiting.get(int(message.get("req", 0)))
                    if waiter is not None:
                        waiter[1].append(message)
                        waiter[0].set()
                elif kind in ("placed", "resolve"):
                    self._work.submit(self._adopt, message)
                else:
                    log.warning("fast lane: unexpected message %r", kind)
        except (OSError, ValueError) as exc:
            if not self._stopping:
                log.error("fast lane: control channel failed: %s", exc)
        if not self._stopping:
            self.stats.running = False
            self.stats.problem = "the fast lane stopped; the gateway serves every request itself"
            log.error("fast lane: it stopped while serving; the gateway takes its address back")
            for waiter in list(self._waiting.values()):
                waiter[0].set()
            if self.on_exit is not None:
                self.on_exit()

    # -- verdicts --------------------------------------------------------------------------------------------
    def offer(self, key: BotKey, symbol: str, quantity: float) -> None:
        """After an order of `key`'s bot on `symbol` of `quantity`: a verdict for each side, when none is out."""
        if not self.stats.running or quantity <= 0:
            return
        self._active[(key.api_key, symbol)] = (key, quantity, time.monotonic())
        try:
            self._revoke_unsafe()
            for side in ("BUY", "SELL"):
                self._issue(key, symbol, side, (quantity * VERDICT_SIZE, quantity))
        except Exception:  # noqa: BLE001 - a verdict not made only sends the next order through Python
            log.exception("fast lane: preparing a verdict for bot %s failed", key.bot)
        self._wake.set()

    def offer_soon(self, key: BotKey, symbol: str, quantity: float) -> None:
        """`offer`, on the lane's own threads: a connection's thread goes back to its bot's next request (an offer
        may revoke verdicts and read a price from the exchange)."""
        with contextlib.suppress(RuntimeError):  # the lane is closing: no more verdicts
            self._work.submit(self.offer, key, symbol, quantity)

    def _keep(self) -> None:
        """Verdicts renewed before they expire while their bot trades the symbol (ACTIVE_S since its last order):
        a bot ordering every few seconds finds one each time rather than sending every other order through
        Python. Each renewal reads the price afresh (one ticker request per symbol per cache lifetime)."""
        while not self._stopping and self.stats.running:
            with self._lock:
                first = min((v.expires for v in self._verdicts.values()), default=None)
            margin = self.gateway.market.ttl_s / 4
            wait = 0.5 if first is None else max(0.01, min(0.5, first - margin - time.time()))
            self._wake.wait(wait)
            self._wake.clear()
            if self._stopping or not self.stats.running:
                return
            try:
                self._revoke_unsafe()
                now = time.monotonic()
                for slot, (key, quantity, at) in list(self._active.items()):
                    if now - at > ACTIVE_S:
                        self._active.pop(slot, None)
                        continue
                    for side in ("BUY", "SELL"):
                        self._issue(key, slot[1], side, (quantity * VERDICT_SIZE, quantity))
            except Exception:  # noqa: BLE001 - the next round tries again; an order meanwhile goes through Python
                log.exception("fast lane: renewing verdicts failed")

    def _issue(self, key: BotKey, symbol: str, side: str, sizes: tuple[float, ...]) -> None:
        """A verdict for the first of `sizes` the envelope lets through now, reserved; none when none passes."""
        gateway = self.gateway
        if gateway.market.ttl_s <= 0:
            return  # every order is judged at a price read for it: no verdict could hold one
        with self._lock:
            if (key.api_key, symbol, side) in self._by_slot:
                return
        base = gateway.market.base_of.get(symbol)
        if base is None or gateway.market.quote_of.get(symbol) not in gateway.desk.quote_assets:
            return
        cached = gateway.market.cached_price(symbol)
        if cached is None or cached[1] - gateway.market.clock() < gateway.market.ttl_s / 4:
            # A verdict lives no longer than the price it was judged at (as an order here is judged at the cached
            # price): read afresh while the bot trades, rather than by its next order.
            try:
                gateway.market.get("/api/v3/ticker/price", [("symbol", symbol)], ttl_s=0)
            except KeyguardError:
                return
            cached = gateway.market.cached_price(symbol)
            if cached is None:
                return
        price, fresh_until = cached
        # The files whose change must stop the lane, read before the envelope reads them: a change after this read
        # is seen by the lane as a different stamp, and it sends that order here.
        config = gateway.config
        paths = [gateway.trading.path, config.bot_kill_switch_path(key.bot), config.keys_path]
        if gateway.kill_switch is not None:
            paths.append(gateway.kill_switch.path)
        stamps = [_stamp(path) for path in paths]
        if gateway.keys.lookup(key.api_key) is None:
            return
        now = gateway.clock()
        # Both ends of what the verdict allows (its checks are convex in the quantity and rise with the price).
        if gateway.envelope.check(key.bot, OrderCheck(symbol, base, side, 1e-12, price), now, admit=False):
            return
        try:
            permit = gateway.limiter.acquire("POST", "/api/v3/order", deadline_s=0)
        except RateLimitRefused:
            return
        for quantity in sizes:
            reserved = OrderCheck(symbol, base, side, quantity, price)
            if gateway.envelope.check(key.bot, reserved, now, admit=True, reserve=True) is None:
                break
        else:
            gateway.limiter.release(permit)
            return
        wall = time.time()
        expires = min(wall + (fresh_until - gateway.market.clock()), gateway.limiter.charged_until(permit),
                      wall + VERDICT_MAX_S)
        with self._lock:
            self._next_id += 1
            intent = os.urandom(16).hex()
            verdict = Verdict(self._next_id, key, symbol, side, reserved, price, now, permit, intent,
                              mint_client_order_id(intent, 1), expires)
            self._verdicts[verdict.id] = verdict
            self._by_slot[verdict.slot] = verdict
        self.stats.verdicts_issued += 1
        try:
            self._send({"t": "verdict", "id": verdict.id, "bot": key.bot, "api_key": key.api_key,
                        "secret": key.secret, "symbol": symbol, "side": side, "max_qty": quantity,
                        "max_price": price, "expires_ms": int(expires * 1000),
                        "time_offset_ms": gateway.client.time_offset_ms, "stamps": stamps, "intent": intent,
                        "cid": verdict.cid})
        except OSError:
            self._forget(verdict)
            self._release(verdict)

    def _forget(self, verdict: Verdict) -> bool:
        with self._lock:
            known = self._verdicts.pop(verdict.id, None) is not None
            if self._by_slot.get(verdict.slot) is verdict:
                del self._by_slot[verdict.slot]
            return known

    def _release(self, verdict: Verdict) -> None:
        """A verdict the lane will never use: its reservation ends (in flight, rate windows, budget)."""
        self.gateway.envelope.release(verdict.key.bot, verdict.reserved, verdict.at)
        with contextlib.suppress(Exception):
            self.gateway.limiter.release(verdict.permit)
        self.stats.verdicts_released += 1

    def outstanding(self, bot: str) -> set[tuple[str, str]]:
        """(symbol, side) of each verdict out for `bot`."""
        with self._lock:
            soon = time.time() + self.gateway.market.ttl_s / 4
            return {(v.symbol, v.side) for v in self._verdicts.values() if v.key.bot == bot and v.expires > soon}

    def reserved_times(self) -> dict[str, list[float]]:
        """Each bot's verdicts still out, as the envelope's rate windows count them (when they were made)."""
        out: dict[str, list[float]] = {}
        with self._lock:
            for verdict in self._verdicts.values():
                out.setdefault(verdict.key.bot, []).append(verdict.at)
        return out

    def revoke(self, verdicts: Iterable[Verdict]) -> list[Verdict]:
        """Take verdicts back: those the lane had not claimed are released (and returned); a claimed one is
        reported by the lane."""
        ids = [v.id for v in verdicts]
        if not ids or not self.stats.running:
            return []
        try:
            answer = self._request({"t": "revoke", "ids": ids})
        except OSError as exc:
            # Kept as they are: a stopped lane's verdicts are all released when it is closed.
            log.warning("fast lane: revoking %d verdict(s) failed: %s", len(ids), exc)
            return []
        released = []
        for verdict_id in answer.get("gone", []):
            with self._lock:
                verdict = self._verdicts.get(int(verdict_id))
            if verdict is not None and self._forget(verdict):
                self._release(verdict)
                released.append(verdict)
        return released

    def settle_claimed(self, bot: str | None = None, timeout_s: float = SETTLE_TIMEOUT_S) -> None:
        """Before containment cancels a bot's open orders (None: every bot's): its verdicts taken back, and the orders
        the lane already sent on them booked first (waited for, at most `timeout_s`), so the cancel sees them."""
        if not self.stats.running:
            return
        with self._lock:
            out = [v for v in self._verdicts.values() if bot is None or v.key.bot == bot]
        self.revoke(out)
        ids = {v.id for v in out}
        deadline = time.monotonic() + timeout_s
        with self._booked:
            while ids & (set(self._verdicts) | self._booking) and (left := deadline - time.monotonic()) > 0:
                self._booked.wait(min(left, 0.05))

    def revoke_all(self) -> bool:
        """Every verdict out taken back; True when there were any."""
        with self._lock:
            out = list(self._verdicts.values())
        self.revoke(out)
        return bool(out)

    def _revoke_unsafe(self) -> None:
        """Verdicts that may no longer hold taken back: expired ones, and every one of a bot whose today's PnL (or
        the account's) is now unknown or at its daily loss limit. Nothing else a verdict was judged on can move
        under it: what is in flight and the rate windows count its reservation, the containment files are
        stamped, and it expires with the price it was judged at."""
        # One about to expire counts as expired: the next one is made with the price read afresh.
        soon = time.time() + self.gateway.market.ttl_s / 4
        with self._lock:
            out = list(self._verdicts.values())
        self.revoke([v for v in out if v.expires <= soon or not self._loss_within(v.key.bot)])

    def _loss_within(self, bot: str) -> bool:
        envelope = self.gateway.envelope
        watch = envelope.bots.get(bot)
        for limits, snapshot in ((envelope.account_limits, envelope.account),
                                 *(((watch.limits, watch.snapshot),) if watch is not None else ())):
            limit = limits.daily_loss_limit
            if limit is not None and (not snapshot.daily_pnl_known or snapshot.daily_pnl <= -limit):
                return False
        return True

    def tick(self) -> None:
        """Housekeeping (its round just priced the books again): verdicts that may no longer hold taken back, and the
        lane's intent log emptied once it has grown (each record is about 300 bytes; its orders are booked)."""
        if not self.stats.running:
            return
        self._revoke_unsafe()
        try:
            grown = lane_log_path(self.gateway.config.state_dir).stat().st_size >= TRIM_BYTES
        except OSError:
            grown = False
        if grown and not self._booking_failed:
            with contextlib.suppress(OSError):
                self._request({"t": "trim"})  # refused while an order is pending: the next round tries again

    def rotate(self, api_key: str, secret: str) -> None:
        """Sign the lane's later orders with a new exchange key (a rotation); its in-flight ones finish as signed."""
        if self.stats.running:
            self._request({"t": "key", "api_key": api_key, "secret": secret})

    # -- what the lane sent ----------------------------------------------------------------------------------
    def _adopt(self, message: dict[str, Any]) -> None:
        try:
            self._adopt_one(message)
        finally:
            with self._booked:
                self._booking.discard(int(message["id"]))
                self._booked.notify_all()

    def _adopt_one(self, message: dict[str, Any]) -> None:
        kind = message["t"]
        with self._lock:
            verdict = self._verdicts.get(int(message["id"]))
            self._booking.add(int(message["id"]))
        if verdict is None:
            log.error("fast lane: an order on verdict %s, which this process does not hold", message.get("id"))
            if kind == "resolve":
                self._answer(message, 500, {"code": -1000, "msg": "KEYGUARD_INTERNAL: see the gateway's log"}, {})
            return
        self._forget(verdict)
        status: int = 200
        payload: Any = None
        headers: dict[str, str] = {}
        try:
            status, payload, headers = self._book(verdict, message)
            if status < 400:
                # The bot's next order finds its verdict: made before the lane hears the order is booked.
                self.offer(verdict.key, verdict.symbol, float(message.get("qty") or 0))
        except Exception as exc:  # noqa: BLE001 - booking failed: the order is in the lane's intent log
            self._booking_failed = True
            log.exception("fast lane: booking the order of verdict %s failed", verdict.id)
            status, payload = 500, {"code": -1000, "msg": f"KEYGUARD_INTERNAL: {type(exc).__name__}; see the "
                                                          "gateway's log"}
        finally:
            if kind == "resolve":
                self.stats.orders_resolved += 1
                self._answer(message, status, payload, headers)
            else:
                self.stats.orders_placed += 1
                with contextlib.suppress(OSError):
                    self._send({"t": "adopted", "id": verdict.id})

    def _answer(self, message: dict[str, Any], status: int, payload: Any, headers: dict[str, str]) -> None:
        with contextlib.suppress(OSError):
            self._send({"t": "resolved", "req": message["req"], "status": status,
                        "body": json.dumps(payload, separators=(",", ":")),
                        "headers": {"Content-Type": "application/json", **headers}})

    def _book(self, verdict: Verdict, message: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        gateway = self.gateway
        if message.get("error") == "unsent":
            self._release(verdict)
            return 500, {"code": -1000, "msg": "KEYGUARD_INTERNAL: the gateway could not journal the order, so it "
                                               "was not sent; see the gateway's log"}, {}
        quantity = float(message["qty"])
        limit = float(message["price"]) if message.get("price") else None
        side = verdict.side
        judged = verdict.market_price if limit is None else (limit if side == "BUY" else
                                                             max(limit, verdict.market_price))
        check = OrderCheck(verdict.symbol, verdict.reserved.base_asset, side, quantity, judged)
        intent = OrderIntent(verdict.symbol, check.base_asset, side, quantity, order_type=str(message["type"]),
                             price=limit, reference_price=judged,
                             wire=tuple((str(k), str(v)) for k, v in message["wire"]), intent_id=verdict.intent)
        error = message.get("error")

        def sent() -> dict[str, Any]:
            what = "binance POST /api/v3/order (fast lane)"
            if error == "timeout":
                raise ExchangeTimeout(f"{what}: no answer in time, outcome unknown")
            if error:
                raise ExchangeUnavailable(f"{what}: {error}, outcome unknown")
            answer = gateway.client.answer_of(what, verdict.permit, int(message["status"]),
                                              message.get("headers") or {}, message.get("body") or "")
            if not isinstance(answer, dict):
                raise ExchangeUnavailable(f"{what}: an answer that is not an order report, outcome unknown")
            return answer

        sent_at = float(message.get("sent_ms") or time.time() * 1000) / 1000
        after: list[Callable[[], object]] = []
        try:
            with gateway.after_answer.collecting() as after:
                report = gateway.desk.adopt(verdict.key.bot, str(message["bot_cid"]), check, verdict.reserved,
                                            intent, sent, sent_at)
            return 200, report, {}
        except BinanceError as exc:
            return exc.status, {"code": exc.code, "msg": exc.msg}, exc.headers
        finally:
            # What place() leaves for after the answer (the row's final state, the books, the order's lock): run
            # whatever the outcome, as the HTTP server runs it.
            for task in after:
                try:
                    task()
                except Exception:  # noqa: BLE001 - logged; the next task still runs (the lock's release is one)
                    log.exception("fast lane: work after booking verdict %s's order failed", verdict.id)


class _Child:
    """The lane's process, its end of the control channel as its file descriptor 3 (posix_spawn's dup2: no code runs
    in a forked copy of this threaded process, and no other descriptor is inherited)."""

    def __init__(self, binary: Path, control_fd: int) -> None:
        self.pid = os.posix_spawn(str(binary), [str(binary)], dict(os.environ),
                                  file_actions=[(os.POSIX_SPAWN_DUP2, control_fd, 3)])
        self.returncode: int | None = None

    def wait(self, timeout_s: float) -> bool:
        """Whether it has exited (reaped) within `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid == self.pid:
                self.returncode = os.waitstatus_to_exitcode(status)
            elif time.monotonic() >= deadline:
                return False
            else:
                time.sleep(0.02)
        return True

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)


def lane_log_path(state_dir: Path) -> Path:
    return state_dir / "lane.intents"


def replay_lane_log(journal: OrderJournal, path: Path,
                    clock: Callable[[], float] = time.time) -> list[tuple[JournalOrder, str, str]]:
    """Orders the lane sent that the journal lacks (it or this process stopped before the order was booked): written
    as sent, with their mappings, for the housekeeping's look-ups to settle. Then the log starts empty. Returns each
    row written with its bot and the bot's id for it."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return []
    written: list[tuple[JournalOrder, str, str]] = []
    for number, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            cid = str(record["cid"])
        except (ValueError, KeyError, TypeError):
            # A torn last line: the lane died inside its write, before the order could leave.
            log.warning("fast lane intent log %s line %d: unreadable, skipped", path, number)
            continue
        if journal.get(cid) is not None:
            continue
        sent_at = datetime.fromtimestamp(float(record.get("sent_ms") or clock() * 1000) / 1000, UTC)
        row = new_journal_order(
            client_order_id=cid, intent_id=str(record["intent"]), attempt=1, replaces=None,
            worker=str(record["bot"]), symbol=str(record["symbol"]), side=str(record["side"]),
            order_type=str(record["type"]), quantity=float(record["qty"]),
            price=float(record["price"]) if record.get("price") else None, status=OrderStatus.SENT, sent_at=sent_at,
            created_at=sent_at, updated_at=sent_at)
        mapping = BotOrderRef(str(record["bot"]), str(record["bot_cid"]), str(record["intent"]),
                              str(record["symbol"]))
        journal.write(row, mapping.journal_row())
        written.append((row, mapping.bot, mapping.bot_client_order_id))
    path.write_bytes(b"")
    if written:
        log.warning("fast lane: %d order(s) it sent were not booked before it stopped; written as sent, for "
                    "look-up", len(written))
    return written
