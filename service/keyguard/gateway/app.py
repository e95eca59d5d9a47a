"""The gateway: a Binance-spot-compatible REST endpoint on loopback that puts the execution core in front of any bot.

Wiring only. Requests are checked (signing.authenticate), routed to the order desk or the market-data cache, and
everything that would move money out of the account or change a key is refused here, whatever the key allows."""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from keyguard.errors import ConfigError, KeyguardError
from keyguard.exchanges.binance import read_key_permissions
from keyguard.exchanges.binance_client import BinanceSpotClient
from keyguard.exchanges.budget import SharedRateLimiter, pools_from_exchange_info
from keyguard.exchanges.budget_store import open_budget_store
from keyguard.exchanges.inventory import SecretSource
from keyguard.gateway.bot_keys import BotKeyStore
from keyguard.gateway.config import BotSettings, GatewayConfig
from keyguard.gateway.desk import BinanceError, OrderDesk, answered_as_binance, create_desk_tables
from keyguard.gateway.envelope import Envelope, TradingStates
from keyguard.gateway.http_server import AfterAnswer, Reply, Request
from keyguard.gateway.lane import FastLane, LaneStats, lane_log_path, replay_lane_log
from keyguard.gateway.market import MARKET_PATHS, MarketData
from keyguard.gateway.rotation import (
    ADMIN_PREFIX,
    RotationRefused,
    remembered_source,
    rotate,
    source_credentials,
)
from keyguard.gateway.signing import authenticate, distinct, read_params
from keyguard.loading import file_stamp
from keyguard.redact import redact_text
from keyguard.worker.journal import JournalOrder, OrderJournal, journal_engine
from keyguard.worker.killswitch import KillSwitch
from keyguard.worker.orders import OrderExecutor
from keyguard.worker.retry import retry_data_request
from keyguard.worker.risk import TradingState
from keyguard.worker.stages import StageHistory

log = logging.getLogger(__name__)

# (method, path) -> desk method name, for the signed endpoints a bot may use.
ORDER_ROUTES: dict[tuple[str, str], str] = {
    ("POST", "/api/v3/order"): "place",
    ("GET", "/api/v3/order"): "query",
    ("DELETE", "/api/v3/order"): "cancel",
    ("GET", "/api/v3/openOrders"): "open_orders",
    ("DELETE", "/api/v3/openOrders"): "cancel_open_orders",
    ("GET", "/api/v3/allOrders"): "all_orders",
    ("GET", "/api/v3/myTrades"): "my_trades",
}
TEST_ORDER = ("POST", "/api/v3/order/test")
# Between housekeeping rounds the kill switches and the trading state are looked at this often: a change (someone
# engaging a switch, halting or reducing) starts a round at once, so the resting orders it covers are cancelled
# within about this long rather than at the next round.
CONTAINMENT_WATCH_S = 0.2
PING_PATHS = frozenset({"/api/v3/ping", "/api/v1/ping"})
TIME_PATHS = frozenset({"/api/v3/time", "/api/v1/time"})
# Signed reads forwarded as they are: the account's balances, and the read-only metadata a stock ccxt client's
# loadMarkets asks for. None of them can move funds or change a key.
READ_PASSTHROUGH = frozenset({
    ("GET", "/api/v3/account"), ("GET", "/api/v3/rateLimit/order"), ("GET", "/sapi/v1/capital/config/getall"),
    ("GET", "/sapi/v1/margin/allPairs"), ("GET", "/sapi/v1/margin/isolated/allPairs"),
})
# Never forwarded, whatever the exchange key allows: why, by path fragment.
REFUSED_FAMILIES: tuple[tuple[str, str], ...] = (
    ("/capital/withdraw", "withdrawals"),
    ("/withdraw", "withdrawals"),
    ("/sub-account", "sub-account management"),
    ("/transfer", "transfers"),
    ("/apiRestrictions", "API-key management"),
    ("/apiTrading", "API-key management"),
    ("/apiKey", "API-key management"),
    ("/capital/deposit", "deposit addresses"),
    ("/asset/dust", "asset conversion"),
    ("/userDataStream", "user data streams"),
)


def refused_endpoint(method: str, path: str) -> BinanceError:
    family = next((why for fragment, why in REFUSED_FAMILIES if fragment.lower() in path.lower()), None)
    reason = (f"{family} never pass the Keyguard gateway" if family
              else "not an endpoint the Keyguard gateway forwards")
    # Binance's own "not authorized" (-1002): clients treat it as a permission error, not a ban to wait out.
    return BinanceError(401, -1002, f"KEYGUARD_ENDPOINT_REFUSED: {method} {path}: {reason}. You are not authorized "
                                    "to execute this request.")


class Gateway:
    """The running gateway's objects: one exchange client and limiter, the journal, the envelope, the desk."""

    def __init__(self, config: GatewayConfig, *, credentials: tuple[str, str] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        if config.exchange.base_url is None:
            raise ConfigError("exchange.base_url: set the REST URL of the exchange the gateway fronts")
        self.config = config
        self.clock = clock
        config.state_dir.mkdir(parents=True, exist_ok=True)
        api_key, secret = credentials or self._credentials()
        # What may wait until a bot has its answer (the journal row's final state, the budget's correction).
        self.after_answer = AfterAnswer()
        store = open_budget_store(config.limiter.backend, config.limiter.budget_file())
        self.limiter = SharedRateLimiter(store, egress_ip=config.limiter.egress_ip, account=config.limiter.account,
                                         headroom=config.limiter.headroom,
                                         default_deadline_s=config.limiter.deadline_s, clock=clock)
        self.client = BinanceSpotClient(config.exchange.base_url, api_key, secret, self.limiter,
                                        timeout_s=config.exchange.timeout_s,
                                        recv_window_ms=config.exchange.recv_window_ms,
                                        source_address=config.exchange.source_address, clock=clock,
                                        defer=self.after_answer.defer)
        # Checkpoints run in housekeeping, not inside whichever order's commit crosses SQLite's threshold.
        self.journal = OrderJournal(journal_engine(config.journal(), autocheckpoint=False))
        # Orders in the intent logs (this process's and the fast lane's) that a crash kept out of the database are
        # written before anything reads it.
        create_desk_tables(self.journal.engine)
        self.journal.keep_intents()
        self.lane_replayed = len(replay_lane_log(self.journal, lane_log_path(config.state_dir)))
        self.lane: FastLane | None = None  # set by run_gateway while the fast lane serves
        self.lane_stats: LaneStats | None = None  # the lane's, once run_gateway tried to start it
        self.data_retry = config.data_retry.policy()
        self.reconnect = config.reconnect.policy()
        self.executor = OrderExecutor(self.client, self.journal, worker=config.gateway, clock=clock,
                                      lookup_attempts=config.order_retry.lookup_attempts,
                                      max_resends=config.order_retry.max_resends,
                                      max_send_delay_s=config.limiter.deadline_s + config.exchange.timeout_s)
        self.kill_switch = KillSwitch(config.kill_switch_path) if config.kill_switch.enabled else None
        self.trading = TradingStates(config.state_dir / "trading_state.json")
        self.stages = StageHistory(config.state_dir / "stages.json")
        self.key_permissions: dict[str, bool | None] | None = None  # read at start and after each rotation
        self.envelope = Envelope(config.account_limits(), config.account.portfolio_value, self.kill_switch,
                                 self.trading)
        self.keys = BotKeyStore(config.keys_path)
        self.market = MarketData(self.client, config.market_data_ttl_s)
        self.desk = OrderDesk(self.client, self.journal, self.executor, self.envelope, self.market,
                              deadline_s=config.limiter.deadline_s, clock=clock, on_runaway=self.hold_bot,
                              defer=self.after_answer.defer, keep_closed_s=config.keep_closed_orders_s,
                              quote_assets=config.quote_assets)
        self._bots_lock = threading.Lock()
        for bot in config.bots:
            self._ensure_bot(bot)
        self.heartbeat_at: float | None = None
        self.last_error: str | None = None
        self.failures = 0
        self._account_was_engaged = bool(self.kill_switch and self.kill_switch.engaged)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.admin_token: str | None = None  # set once serving (AdminChannel)
        self.on_close: list[Callable[[], object]] = []
        self._watched: dict[Path, tuple[int, int, int] | None] = {}

    def _credentials(self) -> tuple[str, str]:
        """The exchange key: the one a rotation switched to (its source is remembered), else the configured one."""
        source = remembered_source(self.config.state_dir)
        return source_credentials(source) if source is not None else self.config.exchange.credentials()

    # -- bots ------------------------------------------------------------------------------------------------
    def _ensure_bot(self, bot: str) -> None:
        if bot in self.envelope.bots:  # a known bot (every request but a bot's first) skips the lock
            return
        with self._bots_lock:
            if bot in self.envelope.bots:
                return
            settings = self.config.bots.get(bot) or BotSettings()
            self.envelope.add_bot(bot, self.config.bot_limits(bot), KillSwitch(self.config.bot_kill_switch_path(bot)),
                                  settings.max_refusals_per_minute)

    def hold_bot(self, bot: str, code: str) -> None:
        """A runaway bot: its own kill switch engaged, its open orders cancelled; other bots trade on."""
        watch = self.envelope.watch(bot)
        reason = (f"runaway: more than {watch.max_refusals_per_minute} refusals in a minute "
                  f"(last KEYGUARD_{code})")
        watch.switch.engage(reason, by="gateway")
        self._settle_lane(bot)
        cancelled, failures = self.desk.cancel_everything(bot)
        log.warning("gateway held bot %s (%s); cancelled %d open orders%s", bot, reason, cancelled,
                    f"; {len(failures)} cancels failed" if failures else "")

    # -- requests --------------------------------------------------------------------------------------------
    def server_ms(self) -> int:
        return int(self.clock() * 1000) + self.client.time_offset_ms

    def handle(self, request: Request) -> Reply:
        """One request from the HTTP server: the answer, and the work that may run once it is written."""
        # AfterAnswer.collecting() inlined: a generator context manager per request costs more than the rest of this.
        after_answer = self.after_answer
        after: list[Callable[[], object]] = []
        after_answer.tasks = after
        try:
            status, payload, headers = self.dispatch(request.method, request.path, request.query, request.body,
                                                     request.headers)
        finally:
            after_answer.tasks = None
        return Reply(status, payload, headers, after)

    def dispatch(self, method: str, path: str, query: str, body: str, headers: dict[str, str]) -> tuple[int, Any,
                                                                                                        dict[str, str]]:
        try:
            return 200, self._route(method, path, query, body, headers), {}
        except BinanceError as exc:
            return exc.status, {"code": exc.code, "msg": exc.msg}, exc.headers
        except KeyguardError as exc:
            log.error("gateway: %s %s failed: %s", method, path, exc)
            return 500, {"code": -1000, "msg": f"KEYGUARD_INTERNAL: {redact_text(str(exc))}"}, {}
        except Exception as exc:  # noqa: BLE001 - a bug answers in Binance's shape and is logged, never a bare 500
            log.exception("gateway: %s %s failed unexpectedly", method, path)
            return 500, {"code": -1000, "msg": f"KEYGUARD_INTERNAL: {type(exc).__name__}; see the gateway's log"}, {}

    def _admin(self, method: str, path: str, body: str, headers: dict[str, str]) -> Any:
        """The local admin door (rotation): a bearer token only the state directory's owner can read."""
        given = headers.get("authorization", "").removeprefix("Bearer ").strip()
        if self.admin_token is None or not hmac.compare_digest(given.encode(), self.admin_token.encode()):
            raise BinanceError(401, -1002, "KEYGUARD_ADMIN: a valid admin token is required")
        if (method, path) != ("POST", f"{ADMIN_PREFIX}rotate"):
            raise BinanceError(404, -1000, f"KEYGUARD_ADMIN: no {method} {path}")
        try:
            source = SecretSource.model_validate(json.loads(body)["source"])
            return rotate(self, source)
        except RotationRefused as exc:
            raise BinanceError(409, -1000, f"KEYGUARD_ROTATION_REFUSED: {exc}") from None
        except (ValueError, KeyError, TypeError, ConfigError) as exc:
            raise BinanceError(400, -1000, f"KEYGUARD_ROTATION_BAD_REQUEST: {redact_text(str(exc))}") from None

    def _route(self, method: str, path: str, query: str, body: str, headers: dict[str, str]) -> Any:
        if path.startswith(ADMIN_PREFIX):
            return self._admin(method, path, body, headers)
        if method == "GET":
            if path in PING_PATHS:
                return {}
            if path in TIME_PATHS:
                return {"serverTime": self.server_ms()}
            if path in MARKET_PATHS:
                with answered_as_binance():
                    return self.market.get(path, distinct(read_params(query, body)[0]))
        route = (method, path)
        desk_method = ORDER_ROUTES.get(route)
        test = route == TEST_ORDER
        if desk_method is None and not test and route not in READ_PASSTHROUGH:
            raise refused_endpoint(method, path)
        # Read once: the parameters the desk gets and the payload and signature the bot signed.
        params, payload, signature = read_params(query, body)
        key = authenticate(self.keys, headers, distinct(params), payload, signature, self.server_ms())
        self._ensure_bot(key.bot)
        if test:
            return self.desk.place(key.bot, params, test=True)
        if desk_method is None:
            return self.desk._call(method, path, self.desk._passthrough(params))
        answer = getattr(self.desk, desk_method)(key.bot, params)
        if self.lane is not None and desk_method == "place":
            # The bot trades this symbol: the fast lane may send its next order (a verdict, after the answer).
            named = dict(params)
            with contextlib.suppress(ValueError):
                quantity = float(named.get("quantity") or 0)
                self.after_answer.defer(partial(self.lane.offer_soon, key, str(named.get("symbol")), quantity))
        return answer

    def _settle_lane(self, bot: str | None = None) -> None:
        """Before open orders are cancelled: the orders the fast lane sent and has not had booked are booked first."""
        if self.lane is not None:
            self.lane.settle_claimed(bot)

    def take_over_from_lane(self) -> None:
        """The fast lane stopped while serving: its adoptions in progress end and its verdicts are released; what it
        sent and never reported is booked from its intent log, for housekeeping to settle by look-up."""
        lane, self.lane = self.lane, None
        self.desk.reclaim = None
        if lane is not None:
            lane.close()
        for row, bot, bot_cid in replay_lane_log(self.journal, lane_log_path(self.config.state_dir)):
            self._ensure_bot(bot)
            self.desk.take_over(row, bot, bot_cid)

    # -- housekeeping ----------------------------------------------------------------------------------------
    def start(self) -> None:
        """Clock offset and the exchange's own rate limits, a first round (so the live document exists once the
        gateway serves), then the housekeeping thread."""
        self._sync()
        self.stages.enter(self.config.stage.value, self.clock())
        self.key_permissions = read_key_permissions(self.client, self.data_retry)
        self._watched = self._stamps()  # the containment files as this first round reads them
        self.tick()
        self._thread = threading.Thread(target=self._housekeeping, name="keyguard-gateway-housekeeping",
                                        daemon=True)
        self._thread.start()

    def _sync(self) -> None:
        retry_data_request(self.client.sync_time, self.data_retry)
        info = retry_data_request(self.market.exchange_info, self.data_retry)
        if info.get("rateLimits"):
            self.limiter.pools = pools_from_exchange_info(info["rateLimits"])

    def tick(self) -> None:
        """One round: the journal's log checkpointed, the account's kill switch obeyed, open orders settled, prices
        and the book, the document."""
        self.journal.checkpoint()
        engaged = self.envelope.account_engaged()
        if engaged and not self._account_was_engaged:
            self._settle_lane()
            cancelled, failures = self.desk.cancel_everything()
            log.warning("gateway: the account's kill switch is engaged; cancelled %d open orders%s", cancelled,
                        f"; {len(failures)} cancels failed" if failures else "")
        self._account_was_engaged = engaged
        for bot, watch in self.envelope.bots.items():
            if watch.switch.refresh() and watch.switch.state.changed_by != "gateway":
                self._settle_lane(bot)
                self.desk.cancel_everything(bot)
        if self.trading.restricted():
            self._settle_lane()
        cancelled, failures = self.desk.cancel_everything(which=self._against_trading_state)
        if cancelled or failures:
            log.warning("gateway: cancelled %d open orders the trading state no longer allows%s", cancelled,
                        f"; {len(failures)} cancels failed" if failures else "")
        retry_data_request(self.client.sync_time, self.data_retry)
        self.desk.settle_open()
        self.desk.retire()
        self.desk.reprice(lambda symbol: retry_data_request(partial(self.market.price, symbol), self.data_retry))
        self.desk.mark()
        if self.lane is not None:
            self.lane.tick()
        self.heartbeat_at = self.clock()
        self.publish()

    def _against_trading_state(self, bot: str, row: JournalOrder) -> bool:
        """Whether a resting order of `bot` goes against the trading state, as a new one would be refused: every order
        under HALTED (the account's or the bot's); under REDUCING, one that would add to the position being reduced
        (a buy unless it is short, a sell unless it is long): the bot's own, or the account's."""
        account, own = self.trading.states(bot)
        if self.trading.problem is not None:
            return False  # an unreadable file halts new orders; it is not someone's word to cancel working ones
        if TradingState.HALTED in (account, own):
            return True
        base = self.market.base_of.get(row.symbol)
        if base is None or TradingState.REDUCING not in (account, own):
            return False

        def adds(position: float) -> bool:
            return position >= 0 if row.side == "BUY" else position <= 0

        book = self.desk.books.get(bot)
        if own is TradingState.REDUCING and adds(book.positions.get(base, 0.0) if book is not None else 0.0):
            return True
        return account is TradingState.REDUCING and adds(self.envelope.account.positions.get(base, 0.0))

    def _containment_files(self) -> list[Path]:
        """The files whose change contains trading: the account's kill switch, each bot's, the trading state."""
        files = [self.trading.path, *(watch.switch.path for watch in list(self.envelope.bots.values()))]
        return files + ([self.kill_switch.path] if self.kill_switch is not None else [])

    def _stamps(self) -> dict[Path, tuple[int, int, int] | None]:
        return {path: file_stamp(path) for path in self._containment_files()}

    def _until_next_round(self, wait: float, seen: dict[Path, tuple[int, int, int] | None]) -> bool:
        """Wait for the next housekeeping round: `wait` seconds, or less when a kill switch or the trading state is
        not as `seen` (taken before the last round read them: a change during that round starts the next one at
        once; a bot first seen meanwhile is watched from then on). True when the gateway is stopping."""
        deadline = time.monotonic() + wait
        while (left := deadline - time.monotonic()) > 0:
            if self._stop.wait(min(CONTAINMENT_WATCH_S, left)):
                return True
            now = self._stamps()
            if any(stamp != seen.get(path) for path, stamp in now.items()):
                return False
        return self._stop.is_set()

    def _housekeeping(self) -> None:
        wait = self.config.housekeeping_interval_s
        while not self._until_next_round(wait, self._watched):
            try:
                self._watched = self._stamps()
                self.tick()
                self.failures, self.last_error = 0, None
                wait = self.config.housekeeping_interval_s
            except KeyguardError as exc:
                # The exchange is unreachable or refusing: come back on the reconnect policy's schedule.
                self.failures += 1
                self.last_error = redact_text(str(exc))
                wait = self.reconnect.delay(self.failures)
                log.error("gateway housekeeping failed (%s); next attempt in %.2fs", self.last_error, wait)
            except Exception as exc:  # noqa: BLE001 - a bug in one round must not end every later round
                # (checkpoints, the account's kill switch, look-ups of unknown orders, the live document).
                self.failures += 1
                self.last_error = redact_text(f"housekeeping round failed: {type(exc).__name__}: {exc}")
                wait = self.reconnect.delay(self.failures)
                log.exception("gateway housekeeping round failed unexpectedly; next attempt in %.2fs", wait)

    def publish(self) -> None:
        from keyguard.gateway.live_document import publish

        publish(self)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        for release in self.on_close:
            release()
        self.client.close()
        self.journal.release_intents()


