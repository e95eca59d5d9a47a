"""Idempotent orders end to end, one budget per egress IP for every bot, and a runaway bot held by its caps and
then by its kill switch: what bots and the person on call see through the gateway."""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import ccxt
import httpx
import pytest

from keyguard.gateway.bot_keys import BotKey
from keyguard.gateway.server import GatewayHandle, run_gateway
from keyguard.policy.engine import evaluate_documents
from keyguard.sandbox import Fault, SandboxConfig, SandboxHandle, run_sandbox
from keyguard.sandbox.config import SymbolSpec
from keyguard.worker.risk import TradingState
from tests.gateway.conftest import TRADER_FLAGS, GatewayFactory, bot_key, ccxt_bot, gateway_config, signed_call


def exchange_orders(sandbox: SandboxHandle) -> list[Any]:
    return list(sandbox.exchange.orders.values())


def ready_bot(handle: GatewayHandle, bot: str) -> ccxt.binance:
    """A stock ccxt bot on the gateway with its gateway key, its markets loaded."""
    client = ccxt_bot(handle, bot_key(handle, bot))
    client.load_markets()
    return client


@contextmanager
def exchange_of_its_own(**settings: Any) -> Iterator[tuple[SandboxHandle, dict[str, Any]]]:
    """A sandbox with these settings instead of this module's (windows from its start), and a trading key on it."""
    with run_sandbox(SandboxConfig(align_windows_to_start=True, **settings)) as exchange:
        yield exchange, exchange.create_key(label="gateway", flags=TRADER_FLAGS)


def test_exchange_response_dropped_after_execution_is_resolved_before_the_bot_hears(
        gateway: GatewayHandle, sandbox: SandboxHandle) -> None:
    bot = ccxt_bot(gateway, bot_key(gateway, "alpha"))
    bot.load_markets()
    sandbox.set_faults(Fault(endpoint="POST /api/v3/order", kind="drop", when="after", times=1, hold_s=3.0))

    order = bot.create_order("BTC/USDT", "market", "buy", 0.001, None, {"clientOrderId": "alpha-1"})

    assert order["status"] == "closed" and order["clientOrderId"] == "alpha-1"
    assert len(exchange_orders(sandbox)) == 1
    assert gateway.gateway.desk.counters["orders_resent"] == 0, "an executed order is found, never resent"


def test_a_bot_retrying_after_its_own_timeout_gets_the_same_order(gateway: GatewayHandle,
                                                                  sandbox: SandboxHandle) -> None:
    key = bot_key(gateway, "alpha")
    impatient = ccxt.binance({"apiKey": key.api_key, "secret": key.secret, "urls": gateway.ccxt_urls(),
                              "timeout": 1000})
    impatient.load_markets()
    # The exchange executes, then its answer is lost: the gateway is still looking the order up when the bot
    # gives up waiting, and the bot sends the same order again under the same id.
    sandbox.set_faults(Fault(endpoint="POST /api/v3/order", kind="drop", when="after", times=1, hold_s=2.5))
    with pytest.raises(ccxt.RequestTimeout):
        impatient.create_order("BTC/USDT", "market", "buy", 0.001, None, {"clientOrderId": "retry-me"})
    patient = ccxt_bot(gateway, key)
    patient.load_markets()
    again = patient.create_order("BTC/USDT", "market", "buy", 0.001, None, {"clientOrderId": "retry-me"})
    third = patient.create_order("BTC/USDT", "market", "buy", 0.001, None, {"clientOrderId": "retry-me"})

    assert again["id"] == third["id"] and again["status"] == "closed"
    assert len(exchange_orders(sandbox)) == 1, "three sends of one client order id made one order"


def test_the_same_id_sent_at_once_on_many_connections_makes_one_order(gateway: GatewayHandle,
                                                                      sandbox: SandboxHandle) -> None:
    key = bot_key(gateway, "alpha")
    senders = 6
    bots = [ccxt_bot(gateway, key) for _ in range(senders)]  # one kept-alive connection each
    for bot in bots:
        bot.load_markets()
    placed: dict[str, list[str]] = {}
    errors: list[BaseException] = []
    for round_ in range(8):  # ids come and go: each round's id is new, its lock made and dropped again
        cid = f"burst-{round_}"
        start = threading.Barrier(senders)
        answers: list[str] = []

        def send(bot: ccxt.binance, cid: str = cid, start: threading.Barrier = start,
                 answers: list[str] = answers) -> None:
            try:
                start.wait(timeout=10)
                answers.append(bot.create_order("BTC/USDT", "market", "buy", 0.001, None,
                                                {"clientOrderId": cid})["id"])
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=send, args=(bot,)) for bot in bots]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        placed[cid] = answers

    assert not errors
    assert all(len(ids) == senders and len(set(ids)) == 1 for ids in placed.values()), placed
    assert len(exchange_orders(sandbox)) == len(placed), "each id made exactly one order however many sent it"


def test_two_bots_using_the_same_client_order_id_get_two_orders_and_see_only_their_own(
        gateway: GatewayHandle, sandbox: SandboxHandle) -> None:
    alpha_key, beta_key = bot_key(gateway, "alpha"), bot_key(gateway, "beta")
    alpha, beta = ccxt_bot(gateway, alpha_key), ccxt_bot(gateway, beta_key)
    alpha.load_markets()
    beta.load_markets()
    a = alpha.create_order("ETH/USDT", "limit", "sell", 0.1, 9999, {"clientOrderId": "order-1"})
    b = beta.create_order("ETH/USDT", "limit", "sell", 0.2, 9999, {"clientOrderId": "order-1"})

    assert a["id"] != b["id"] and len(exchange_orders(sandbox)) == 2
    assert [o["id"] for o in alpha.fetch_open_orders("ETH/USDT")] == [a["id"]]
    assert [o["id"] for o in beta.fetch_open_orders("ETH/USDT")] == [b["id"]]
    with pytest.raises(ccxt.OrderNotFound):
        alpha.fetch_order(b["id"], "ETH/USDT")
    with pytest.raises(ccxt.OrderNotFound):
        alpha.cancel_order(b["id"], "ETH/USDT")
    # Cancel-all cancels the calling bot's orders only, not every bot's on the account.
    assert signed_call(gateway, alpha_key, "DELETE", "/api/v3/openOrders", {"symbol": "ETHUSDT"}).status_code == 200
    assert beta.fetch_order(b["id"], "ETH/USDT")["status"] == "open"
    assert alpha.fetch_order(a["id"], "ETH/USDT")["status"] == "canceled"


@pytest.fixture
def sandbox_config() -> SandboxConfig:
    # A short, small weight window so three bots spend it in seconds.
    return SandboxConfig(align_windows_to_start=True, weight_limit=300, weight_window_s=10)


def test_bots_sharing_one_ip_get_429_from_the_gateway_never_from_the_exchange(
        start_gateway: GatewayFactory, sandbox: SandboxHandle) -> None:
    handle = start_gateway(market_data_ttl_s=0, limiter={"backend": "memory", "deadline_s": 0.2})
    answers: list[httpx.Response] = []
    lock = threading.Lock()

    def hammer() -> None:
        with httpx.Client(base_url=handle.url, timeout=10) as http:
            for _ in range(40):
                # depth at limit 500 weighs 25: forty of them from three bots is far past the window's 300.
                answer = http.get("/api/v3/depth", params={"symbol": "BTCUSDT", "limit": 500})
                with lock:
                    answers.append(answer)

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    statuses = [a.status_code for a in answers]
    assert 200 in statuses and 429 in statuses
    refused = [a for a in answers if a.status_code == 429]
    assert all(int(a.headers["Retry-After"]) >= 1 for a in refused)
    assert all(a.json()["msg"].startswith("KEYGUARD_RATE_BUDGET") for a in refused)
    standing = sandbox.exchange.bans.standing("127.0.0.1")
    assert standing.bans == 0 and standing.backoff_since == 0, "the exchange never answered 429 or 418"
    assert statuses.count(200) * 25 <= 300 * 2, "at most the budget of the windows the run spans went out"


def test_market_data_answers_are_shared_while_fresh_and_not_kept_once_they_cannot_be_served(
        start_gateway: GatewayFactory, sandbox: SandboxHandle) -> None:
    """Many bots polling one book cost the budget once; a client that sends new parameters on every call (a
    cache-buster, or paging through history) must not grow the gateway for as long as it runs."""
    handle = start_gateway(market_data_ttl_s=0.5)
    market = handle.gateway.market
    with httpx.Client(base_url=handle.url, timeout=10) as http:
        before = market.misses
        same = [http.get("/api/v3/depth", params={"symbol": "BTCUSDT", "limit": 5}) for _ in range(5)]
        assert all(a.status_code == 200 for a in same) and len({a.text for a in same}) == 1
        assert market.misses == before + 1, "five polls of one book within its freshness cost one request"
        for i in range(30):  # the IP's budget here is 270 weight per 10 s: depth weighs 5
            answer = http.get("/api/v3/depth", params={"symbol": "BTCUSDT", "limit": 5, "_": str(i)})
            assert answer.status_code == 200, answer.text
        time.sleep(1.2)  # every depth answer is now too old to be served
        assert http.get("/api/v3/depth", params={"symbol": "BTCUSDT", "limit": 10}).status_code == 200
    held = [key[0] for key in market._cache]
    assert len(held) <= 2 and set(held) <= {"/api/v3/depth", "/api/v3/exchangeInfo"}, held
    assert market._inflight == {}


def test_runaway_bot_is_held_by_its_caps_then_its_kill_switch_while_the_other_trades(
        start_gateway: GatewayFactory, sandbox: SandboxHandle) -> None:
    handle = start_gateway(bots={"runner": {"max_order_notional": 500, "max_refusals_per_minute": 5},
                                 "steady": {}})
    runner = ccxt_bot(handle, bot_key(handle, "runner"))
    steady = ccxt_bot(handle, bot_key(handle, "steady"))
    runner.load_markets()
    steady.load_markets()
    resting = runner.create_order("ETH/USDT", "limit", "sell", 0.1, 4999)  # inside its cap, rests on the book

    codes = []
    for _ in range(8):
        with pytest.raises(ccxt.ExchangeError):
            runner.create_order("BTC/USDT", "market", "buy", 0.05)
        codes.append(runner.last_http_response.split('"msg":"', 1)[1].split(":", 1)[0])

    assert codes[:6] == ["KEYGUARD_MAX_ORDER_NOTIONAL"] * 6
    assert codes[6:] == ["KEYGUARD_KILL_SWITCH"] * 2, "held after more than 5 refusals in a minute"
    with pytest.raises(ccxt.ExchangeError, match="KEYGUARD_KILL_SWITCH: bot runner is held"):
        runner.create_order("BTC/USDT", "market", "buy", 0.001)
    assert sandbox.exchange.orders[int(resting["id"])].status == "CANCELED", "the held bot's open orders go"
    assert steady.create_order("BTC/USDT", "market", "buy", 0.001)["status"] == "closed"

    handle.gateway.publish()
    doc = __import__("json").loads(handle.gateway.config.live_state_path.read_text())
    held = doc["state"]["bots"]["runner"]
    assert held["kill_switch_engaged"] and "runaway" in held["held_reason"]
    assert held["refusals"]["MAX_ORDER_NOTIONAL"] == 6
    findings = evaluate_documents([("gateway", doc)])
    assert [f.resource for f in findings if f.id == "KG-EXE-208"] == ["gw-test/runner"]


@pytest.mark.parametrize(("setting", "rule"), [
    ({"order_retry": {"lookup_attempts": 0}}, "KG-EXE-108"),
    ({"data_retry": {"backoff": "constant", "jitter": False}}, "KG-EXE-110"),
    ({"reconnect": {"backoff": "none"}}, "KG-EXE-111"),
    ({"kill_switch": {"enabled": False}}, "KG-EXE-105"),
])
def test_a_running_gateway_with_a_flawed_setting_is_reported(start_gateway: GatewayFactory,
                                                             setting: dict[str, Any], rule: str) -> None:
    flawed = start_gateway(gateway="gw-flawed", **setting)
    deadline = time.monotonic() + 10
    while flawed.gateway.heartbeat_at is None and time.monotonic() < deadline:
        time.sleep(0.05)
    doc = __import__("json").loads(flawed.gateway.config.live_state_path.read_text())

    fired = {f.id for f in evaluate_documents([("gateway", doc)]) if f.resource == "gw-flawed"}

    assert rule in fired
    assert not fired & ({"KG-EXE-108", "KG-EXE-110", "KG-EXE-111", "KG-EXE-105"} - {rule}), fired


def test_a_running_gateway_with_sound_settings_passes_the_retry_and_switch_rules(
        gateway: GatewayHandle) -> None:
    deadline = time.monotonic() + 10
    while gateway.gateway.heartbeat_at is None and time.monotonic() < deadline:
        time.sleep(0.05)
    doc = __import__("json").loads(gateway.gateway.config.live_state_path.read_text())
    fired = {f.id for f in evaluate_documents([("gateway", doc)])}
    assert not fired & {"KG-EXE-105", "KG-EXE-107", "KG-EXE-108", "KG-EXE-109", "KG-EXE-110", "KG-EXE-111",
                        "KG-EXE-206", "KG-EXE-207", "KG-EXE-208"}, fired


def test_daily_loss_from_the_journal_holds_new_exposure_but_lets_the_bot_reduce(
        start_gateway: GatewayFactory, sandbox: SandboxHandle) -> None:
    handle = start_gateway(bots={"alpha": {"daily_loss_limit": 50}})
    bot = ccxt_bot(handle, bot_key(handle, "alpha"))
    bot.load_markets()
    assert bot.create_order("BTC/USDT", "market", "buy", 0.03)["status"] == "closed"
    sandbox.exchange.set_price("BTCUSDT", 55000.0)  # 0.03 BTC lose about 150 USDT at the new price
    deadline = time.monotonic() + 10
    while handle.gateway.envelope.watch("alpha").snapshot.daily_pnl > -50 and time.monotonic() < deadline:
        time.sleep(0.1)  # the gateway marks its book to market on each housekeeping round

    with pytest.raises(ccxt.ExchangeError, match="KEYGUARD_DAILY_LOSS: bot alpha: daily loss 1[0-9]{2}"):
        bot.create_order("BTC/USDT", "market", "buy", 0.001)
    assert bot.create_order("BTC/USDT", "market", "sell", 0.01)["status"] == "closed", "reducing stays allowed"


def test_today_s_pnl_prices_an_asset_in_the_pair_it_was_traded_in_not_another_quote(tmp_path: Path) -> None:
    # A real exchange lists BTC against many quotes. The book's cash is in USDT (the bot traded BTCUSDT), so BTC must
    # be priced in USDT: priced at BTCTRY's 2,000,000 the bot's loss would read as a large gain, and the limit
    # would hold nothing.

    symbols = [SymbolSpec(symbol="BTCUSDT", base="BTC", quote="USDT", price=60000.0, level_qty=0.5),
               SymbolSpec(symbol="BTCTRY", base="BTC", quote="TRY", price=2_000_000.0, level_qty=0.5,
                          max_price="100000000.00000000")]
    with exchange_of_its_own(symbols=symbols) as (exchange, exchange_key):
        config = gateway_config(exchange, exchange_key, tmp_path, bots={"alpha": {"daily_loss_limit": 50}},
                                housekeeping_interval_s=0.2)
        with run_gateway(config) as handle:
            bot = ready_bot(handle, "alpha")
            assert bot.create_order("BTC/USDT", "market", "buy", 0.03)["status"] == "closed"
            exchange.exchange.set_price("BTCUSDT", 55000.0)  # 0.03 BTC lose about 150 USDT
            assert wait_until(lambda: handle.gateway.envelope.watch("alpha").snapshot.daily_pnl < -50, 10.0)
            time.sleep(0.5)  # more rounds: the price stays the pair's it was traded in
            with pytest.raises(ccxt.ExchangeError, match="KEYGUARD_DAILY_LOSS: bot alpha: daily loss 1[0-9]{2}"):
                bot.create_order("BTC/USDT", "market", "buy", 0.001)


def test_a_pair_quoted_in_an_asset_the_books_do_not_count_as_cash_is_refused(tmp_path: Path) -> None:
    # ETHBTC's cash is BTC: selling ETH for it would grow a BTC position no cap sees, and its flows would be summed
    # with USDT as if they were dollars. Refused unless the operator names BTC as cash (quote_assets).

    symbols = [SymbolSpec(symbol="BTCUSDT", base="BTC", quote="USDT", price=60000.0, level_qty=0.5),
               SymbolSpec(symbol="ETHBTC", base="ETH", quote="BTC", price=0.05, level_qty=5.0, tick_size="0.00001",
                          min_notional="0.0001")]
    with exchange_of_its_own(symbols=symbols) as (exchange, exchange_key):
        config = gateway_config(exchange, exchange_key, tmp_path)
        with run_gateway(config) as handle:
            bot = ready_bot(handle, "alpha")
            with pytest.raises(ccxt.ExchangeError, match=r"KEYGUARD_UNVALUED_QUOTE: ETHBTC is quoted in BTC; the "
                                                         r"gateway counts cash in USDT \(quote_assets\)"):
                bot.create_order("ETH/BTC", "market", "sell", 0.1)
            assert exchange.exchange.orders == {}
            assert bot.create_order("BTC/USDT", "market", "buy", 0.001)["status"] == "closed"
        (tmp_path / "opted-in").mkdir()
        opted_in = gateway_config(exchange, exchange_key, tmp_path / "opted-in", quote_assets=["USDT", "BTC"])
        with run_gateway(opted_in) as handle:
            bot = ready_bot(handle, "alpha")
            assert bot.create_order("ETH/BTC", "market", "sell", 0.1)["status"] == "closed"


def test_a_restart_does_not_forgive_today_s_loss(sandbox: SandboxHandle, exchange_key: dict[str, Any],
                                                 tmp_path: Path) -> None:
    # Today's trades are folded back from the journal at start as today's, and every asset the books hold is priced
    # before the gateway serves: restarting it is no way past a bot's daily loss limit.
    config = gateway_config(sandbox, exchange_key, tmp_path, bots={"alpha": {"daily_loss_limit": 50}})
    with run_gateway(config) as handle:
        bot = ready_bot(handle, "alpha")
        assert bot.create_order("BTC/USDT", "market", "buy", 0.03)["status"] == "closed"
    sandbox.exchange.set_price("BTCUSDT", 55000.0)  # 0.03 BTC lose about 150 USDT at the new price
    with run_gateway(config) as handle:
        bot = ready_bot(handle, "alpha")
        with pytest.raises(ccxt.ExchangeError, match="KEYGUARD_DAILY_LOSS: bot alpha: daily loss 1[0-9]{2}"):
            bot.create_order("BTC/USDT", "market", "buy", 0.001)
        assert bot.create_order("BTC/USDT", "market", "sell", 0.01)["status"] == "closed", "reducing stays allowed"


def test_a_new_utc_day_starts_the_daily_loss_again_and_carries_the_positions_over(
        start_gateway: GatewayFactory, sandbox: SandboxHandle) -> None:
    handle = start_gateway(bots={"alpha": {"daily_loss_limit": 50}}, account=CAPPED_ACCOUNT)
    bot = ccxt_bot(handle, bot_key(handle, "alpha"))
    bot.load_markets()
    assert bot.create_order("BTC/USDT", "market", "buy", 0.03)["status"] == "closed"
    sandbox.exchange.set_price("BTCUSDT", 55000.0)
    assert wait_until(lambda: handle.gateway.envelope.watch("alpha").snapshot.daily_pnl <= -50)
    with pytest.raises(ccxt.ExchangeError, match="KEYGUARD_DAILY_LOSS"):
        bot.create_order("BTC/USDT", "market", "buy", 0.001)

    desk = handle.gateway.desk
    desk.clock = lambda: time.time() + 86400  # the next UTC day, as the gateway's housekeeping sees it
    assert wait_until(lambda: handle.gateway.envelope.watch("alpha").snapshot.daily_pnl == 0.0)
    assert bot.create_order("BTC/USDT", "market", "buy", 0.001)["status"] == "closed", "a new day, a new budget"
    # Yesterday's 0.03 (less commission) is still held: the account's 0.05 cap counts it.
    with pytest.raises(ccxt.ExchangeError, match=r"KEYGUARD_MAX_POSITION: account: BTC position would be 0\.050"):
        bot.create_order("BTC/USDT", "market", "buy", 0.02)


def test_go_live_stage_caps_bound_each_order(start_gateway: GatewayFactory) -> None:
    # micro-live may put 0.1% of the target allocation at risk per asset: 100 USDT of 100,000.
    handle = start_gateway(stage="micro-live", account={"target_allocation": 100000, "max_order_notional": 5000,
                                                        "max_order_share_of_portfolio": None})
    bot = ccxt_bot(handle, bot_key(handle, "alpha"))
    bot.load_markets()
    assert bot.create_order("BTC/USDT", "market", "buy", 0.001)["status"] == "closed"
    with pytest.raises(ccxt.ExchangeError, match="KEYGUARD_STAGE_CAP: account: stage micro-live allows 100.00"):
        bot.create_order("BTC/USDT", "market", "buy", 0.002)


def test_a_resting_order_filled_later_counts_what_the_bot_received_after_the_maker_commission(
        gateway: GatewayHandle, sandbox: SandboxHandle) -> None:
    bot = ccxt_bot(gateway, bot_key(gateway, "alpha"))
    bot.load_markets()
    resting = bot.create_order("BTC/USDT", "limit", "buy", 0.02, 59000)
    assert resting["status"] == "open"
    sandbox.exchange.set_price("BTCUSDT", 58500.0)  # the market comes to the resting buy: it fills as the maker
    maker = sandbox.exchange.config.maker_commission
    received = 0.02 * (1 - maker)
    deadline = time.monotonic() + 10
    watch = gateway.gateway.envelope.watch("alpha")
    while watch.snapshot.positions.get("BTC", 0.0) != pytest.approx(received, abs=1e-12) \
            and time.monotonic() < deadline:
        time.sleep(0.1)  # each housekeeping round settles open orders and reads their trades' commission
    assert watch.snapshot.positions["BTC"] == pytest.approx(received, abs=1e-12)
    [trade] = bot.fetch_my_trades("BTC/USDT")
    assert trade["takerOrMaker"] == "maker" and trade["fee"]["cost"] == pytest.approx(0.02 * maker)


# An account that may hold at most 0.05 BTC, whichever bots hold it.
CAPPED_ACCOUNT = {"max_order_notional": 5000, "max_order_share_of_portfolio": None, "max_orders_per_minute": 120,
                  "max_position": {"BTC": 0.05}, "daily_loss_limit": 2000}


def two_bots_under_a_cap(start_gateway: GatewayFactory) -> tuple[GatewayHandle, ccxt.binance, ccxt.binance]:
    handle = start_gateway(account=CAPPED_ACCOUNT)
    alpha, beta = ccxt_bot(handle, bot_key(handle, "alpha")), ccxt_bot(handle, bot_key(handle, "beta"))
    alpha.load_markets()
    beta.load_markets()
    return handle, alpha, beta


def test_an_order_still_at_the_exchange_counts_against_the_next_orders_position_cap(
        start_gateway: GatewayFactory, sandbox: SandboxHandle) -> None:
    # Two bots buy at once, each within the account's 0.05 BTC cap alone, together past it.
    handle, alpha, beta = two_bots_under_a_cap(start_gateway)
    sandbox.set_faults(Fault(endpoint="POST /api/v3/order", kind="latency", latency_ms=1500, times=1))
    first: dict[str, Any] = {}
    sending = threading.Thread(target=lambda: first.update(alpha.create_order("BTC/USDT", "market", "buy", 0.03)))
    sending.start()
    deadline = time.monotonic() + 5
    while not handle.gateway.envelope.in_flight() and time.monotonic() < deadline:
        time.sleep(0.01)  # alpha's order has passed the envelope and is at the (slow) exchange

    with pytest.raises(ccxt.ExchangeError, match=r"KEYGUARD_MAX_POSITION: account: BTC position would be 0\.06 "
                                                 r"counting 0\.03 in orders not yet answered or filled > "
                                                 r"max_position 0\.05"):
        beta.create_order("BTC/USDT", "market", "buy", 0.03)
    sending.join(10)
    assert first["status"] == "closed"
    # Once answered, alpha's order is in the books, not in flight: what still fits under the cap passes.
    assert beta.create_order("BTC/USDT", "market", "buy", 0.015)["status"] == "closed"
    with pytest.raises(ccxt.ExchangeError, match=r"KEYGUARD_MAX_POSITION: account: BTC position would be 0\.05"):
        beta.create_order("BTC/USDT", "market", "buy", 0.01)
    assert handle.gateway.envelope.in_flight() == {}, "nothing is left counted as in flight"
    assert len(exchange_orders(sandbox)) == 2


def test_an_order_whose_outcome_is_unknown_counts_as_filled_until_a_look_up_settles_it(
        start_gateway: GatewayFactory, sandbox: SandboxHandle) -> None:
    handle, alpha, beta = two_bots_under_a_cap(start_gateway)
    # An exchange blip: alpha's order executes, its answer is lost, and every look-up of it fails.
    sandbox.set_faults(Fault(endpoint="POST /api/v3/order", kind="drop", when="after", times=1, hold_s=0.2),
                       Fault(endpoint="GET /api/v3/order", kind="status", status=503))
    with pytest.raises(ccxt.BaseError, match="KEYGUARD_OUTCOME_UNKNOWN"):
        alpha.create_order("BTC/USDT", "market", "buy", 0.03)

    # Unknown is never safe: until it is settled, alpha's 0.03 counts as bought.
    with pytest.raises(ccxt.ExchangeError, match=r"KEYGUARD_MAX_POSITION: account: BTC position would be 0\.06 "
                                                 r"counting 0\.03 in orders not yet answered or filled"):
        beta.create_order("BTC/USDT", "market", "buy", 0.03)
    assert handle.gateway.envelope.in_flight("alpha") == {"BTC": (0.03, 0.0)}

    sandbox.set_faults()  # the exchange answers again; housekeeping looks the order up
    deadline = time.monotonic() + 15
    while handle.gateway.envelope.in_flight() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert handle.gateway.envelope.in_flight() == {}, "settled by look-up: in the books, not in flight"
    assert handle.gateway.envelope.watch("alpha").snapshot.positions["BTC"] == pytest.approx(0.03, abs=1e-4)
    assert beta.create_order("BTC/USDT", "market", "buy", 0.015)["status"] == "closed"
    assert len(exchange_orders(sandbox)) == 2


def test_a_restarted_gateway_still_counts_an_order_it_never_settled(
        sandbox: SandboxHandle, exchange_key: dict[str, Any], tmp_path: Path) -> None:
    config = gateway_config(sandbox, exchange_key, tmp_path, account=CAPPED_ACCOUNT)
    sandbox.set_faults(Fault(endpoint="POST /api/v3/order", kind="drop", when="after", times=1, hold_s=0.2),
                       Fault(endpoint="GET /api/v3/order", kind="status", status=503))
    with run_gateway(config) as first:
        alpha = ccxt_bot(first, bot_key(first, "alpha"))
        alpha.load_markets()
        with pytest.raises(ccxt.BaseError, match="KEYGUARD_OUTCOME_UNKNOWN"):
            alpha.create_order("BTC/USDT", "market", "buy", 0.03)

    with run_gateway(config) as second:  # the same journal; the exchange still cannot say what became of it
        assert second.gateway.envelope.in_flight("alpha") == {"BTC": (0.03, 0.0)}
        beta = ccxt_bot(second, bot_key(second, "beta"))
        beta.load_markets()
        with pytest.raises(ccxt.ExchangeError, match="KEYGUARD_MAX_POSITION: account: BTC position would be 0.06"):
            beta.create_order("BTC/USDT", "market", "buy", 0.03)
        sandbox.set_faults()
        deadline = time.monotonic() + 15
        while second.gateway.envelope.in_flight() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert second.gateway.envelope.in_flight() == {}
        assert second.gateway.envelope.account.positions["BTC"] == pytest.approx(0.03, abs=1e-4)


def test_resting_limit_orders_count_against_the_position_cap_until_they_fill_or_are_cancelled(
        start_gateway: GatewayFactory, sandbox: SandboxHandle) -> None:
    # A runaway bot's classic way past a position cap: many limit orders far from the market, each inside every cap,
    # all filling together when the market comes to them.
    handle, alpha, beta = two_bots_under_a_cap(start_gateway)
    first = alpha.create_order("BTC/USDT", "limit", "buy", 0.03, 50000)
    assert first["status"] == "open"
    with pytest.raises(ccxt.ExchangeError, match=r"KEYGUARD_MAX_POSITION: account: BTC position would be 0\.06 "
                                                 r"counting 0\.03 in orders not yet answered or filled > "
                                                 r"max_position 0\.05"):
        alpha.create_order("BTC/USDT", "limit", "buy", 0.03, 50000)
    with pytest.raises(ccxt.ExchangeError, match=r"KEYGUARD_MAX_POSITION: account: BTC position would be 0\.06"):
        beta.create_order("BTC/USDT", "market", "buy", 0.03)  # the account's cap counts every bot's resting orders
    assert handle.gateway.envelope.in_flight() == {"BTC": (0.03, 0.0)}
    assert [o["id"] for o in alpha.fetch_open_orders("BTC/USDT")] == [first["id"]], "the refused ones never left"

    alpha.cancel_order(first["id"], "BTC/USDT")  # cancelled: nothing of it can fill any more
    # (counted off just after the bot has the answer)
    assert wait_until(lambda: handle.gateway.envelope.in_flight() == {}, 5.0), handle.gateway.envelope.in_flight()
    second = alpha.create_order("BTC/USDT", "limit", "buy", 0.03, 59000)
    assert second["status"] == "open"

    sandbox.exchange.set_price("BTCUSDT", 58500.0)  # the market comes to it: filled, now a position in the books
    deadline = time.monotonic() + 15
    while handle.gateway.envelope.in_flight() and time.monotonic() < deadline:
        time.sleep(0.1)  # housekeeping looks open orders up
    assert handle.gateway.envelope.in_flight() == {}
    held = handle.gateway.envelope.account.positions["BTC"]
    assert held == pytest.approx(0.03, abs=1e-4), "counted once: as a position, no longer as a resting order"
    with pytest.raises(ccxt.ExchangeError, match=r"KEYGUARD_MAX_POSITION: account: BTC position would be 0\.0[56]"):
        beta.create_order("BTC/USDT", "market", "buy", 0.025)
    assert beta.create_order("BTC/USDT", "market", "buy", 0.015)["status"] == "closed"


def test_a_sell_limit_below_the_market_is_judged_at_the_market_price_it_fills_at(
        gateway: GatewayHandle, sandbox: SandboxHandle) -> None:
    # The bot's max_order_notional is 2000: holding 0.06 BTC (about 3600 at the market) it may not sell it in one
    # order, however low it sets its limit. Priced at its limit, 0.06 at 33000 would look like 1980 and dump the lot.
    bot = ccxt_bot(gateway, bot_key(gateway, "alpha"))
    bot.load_markets()
    for _ in range(2):
        assert bot.create_order("BTC/USDT", "market", "buy", 0.03)["status"] == "closed"
    market = sandbox.exchange.prices["BTCUSDT"]
    with pytest.raises(ccxt.ExchangeError, match=rf"KEYGUARD_MAX_ORDER_NOTIONAL: bot alpha: order notional "
                                                 rf"{0.06 * market:.2f} > max_order_notional 2000\.00"):
        bot.create_order("BTC/USDT", "limit", "sell", 0.06, 33000)
    sold = bot.create_order("BTC/USDT", "limit", "sell", 0.03, 33000)  # inside the cap at the market: it passes
    assert sold["status"] == "closed" and sold["average"] > 33000, "it filled at the market, above its limit"
    # A sell limit above the market rests and fills at its limit: that is its notional.
    assert bot.create_order("BTC/USDT", "limit", "sell", 0.02, 100000)["status"] == "open"


def test_past_twenty_resting_orders_the_newest_one_s_fill_is_still_found_within_the_budget(
        gateway: GatewayHandle, sandbox: SandboxHandle, caplog: pytest.LogCaptureFixture) -> None:
    # A fill of any resting order reaches the books without the bot asking, however many rest: housekeeping reads the
    # symbol's open orders in one call a round and looks up only the ones that closed. (Looking each one up, 20 a
    # round, never reached past the oldest 20 and spent the IP's whole weight budget: lookups were refused.)
    bot = ccxt_bot(gateway, bot_key(gateway, "alpha"))
    bot.load_markets()
    for _ in range(24):
        assert bot.create_order("BTC/USDT", "limit", "buy", 0.001, 50000)["status"] == "open"
    newest = bot.create_order("BTC/USDT", "limit", "buy", 0.001, 59000)
    sandbox.exchange.set_price("BTCUSDT", 58500.0)  # crosses the newest order only
    received = 0.001 * (1 - sandbox.exchange.config.maker_commission)
    deadline = time.monotonic() + 15
    watch = gateway.gateway.envelope.watch("alpha")
    while watch.snapshot.positions.get("BTC", 0.0) != pytest.approx(received, abs=1e-12) \
            and time.monotonic() < deadline:
        time.sleep(0.1)
    assert watch.snapshot.positions.get("BTC", 0.0) == pytest.approx(received, abs=1e-12)
    assert gateway.gateway.envelope.in_flight("alpha") == {"BTC": (pytest.approx(0.024), 0.0)}, \
        "the 24 still resting count; the filled one counts as a position, not twice"
    assert sandbox.exchange.orders[int(newest["id"])].status == "FILLED"
    time.sleep(3)  # six more housekeeping rounds with 24 orders resting
    refused = [r.getMessage() for r in caplog.records if "RATE_" in r.getMessage()]
    assert refused == [], f"housekeeping ran out of the shared budget: {refused[:2]}"


def wait_until(check: Any, timeout_s: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not check() and time.monotonic() < deadline:
        time.sleep(0.1)
    return bool(check())


def test_resting_orders_obey_the_trading_state_as_new_ones_do(gateway: GatewayHandle,
                                                               sandbox: SandboxHandle) -> None:
    alpha, beta = ccxt_bot(gateway, bot_key(gateway, "alpha")), ccxt_bot(gateway, bot_key(gateway, "beta"))
    alpha.load_markets()
    beta.load_markets()
    assert alpha.create_order("BTC/USDT", "market", "buy", 0.02)["status"] == "closed"  # alpha is long
    alpha_sell = alpha.create_order("BTC/USDT", "limit", "sell", 0.01, 100000)  # would shrink its position
    alpha_buy = alpha.create_order("BTC/USDT", "limit", "buy", 0.01, 50000)  # would add to it
    beta_buy = beta.create_order("BTC/USDT", "limit", "buy", 0.01, 50000)

    def status(order: dict[str, Any]) -> str:
        return str(sandbox.exchange.orders[int(order["id"])].status)

    # REDUCING for alpha: what would add to its position goes, what would shrink it stays; beta is not touched.
    gateway.gateway.trading.set(TradingState.REDUCING, "alpha")
    assert wait_until(lambda: status(alpha_buy) == "CANCELED")
    time.sleep(1.0)  # two more housekeeping rounds
    assert status(alpha_sell) == "NEW" and status(beta_buy) == "NEW"
    assert gateway.gateway.envelope.in_flight("alpha") == {"BTC": (0.0, 0.01)}

    # HALTED for the account: every open order goes, every bot's.
    gateway.gateway.trading.set(TradingState.HALTED)
    assert wait_until(lambda: status(alpha_sell) == "CANCELED" and status(beta_buy) == "CANCELED")
    assert gateway.gateway.envelope.in_flight() == {}
    assert alpha.fetch_open_orders("BTC/USDT") == [] and beta.fetch_open_orders("BTC/USDT") == []


def test_an_unreadable_trading_state_refuses_new_orders_but_cancels_none(gateway: GatewayHandle,
                                                                       sandbox: SandboxHandle) -> None:
    bot = ccxt_bot(gateway, bot_key(gateway, "alpha"))
    bot.load_markets()
    resting = bot.create_order("BTC/USDT", "limit", "buy", 0.01, 50000)
    gateway.gateway.trading.path.write_text("{not json")  # a tired person's edit
    with pytest.raises(ccxt.ExchangeError, match="KEYGUARD_STATE_HALTED"):
        bot.create_order("BTC/USDT", "limit", "buy", 0.01, 50000)
    time.sleep(1.5)  # three housekeeping rounds
    assert sandbox.exchange.orders[int(resting["id"])].status == "NEW"


def test_a_restarted_gateway_counts_the_orders_still_resting_at_the_exchange(
        sandbox: SandboxHandle, exchange_key: dict[str, Any], tmp_path: Path) -> None:
    config = gateway_config(sandbox, exchange_key, tmp_path, account=CAPPED_ACCOUNT)
    with run_gateway(config) as first:
        alpha = ccxt_bot(first, bot_key(first, "alpha"))
        alpha.load_markets()
        assert alpha.create_order("BTC/USDT", "limit", "buy", 0.03, 50000)["status"] == "open"

    with run_gateway(config) as second:  # the same journal: the order still rests at the exchange
        assert second.gateway.envelope.in_flight("alpha") == {"BTC": (0.03, 0.0)}
        beta = ccxt_bot(second, bot_key(second, "beta"))
        beta.load_markets()
        with pytest.raises(ccxt.ExchangeError, match=r"KEYGUARD_MAX_POSITION: account: BTC position would be 0\.06"):
            beta.create_order("BTC/USDT", "limit", "buy", 0.03, 50000)
        assert beta.create_order("BTC/USDT", "limit", "buy", 0.02, 50000)["status"] == "open"


def test_after_a_restart_every_bot_s_book_counts_before_the_bot_is_seen_again(
        sandbox: SandboxHandle, exchange_key: dict[str, Any], tmp_path: Path) -> None:
    config = gateway_config(sandbox, exchange_key, tmp_path, account=CAPPED_ACCOUNT)
    with run_gateway(config) as first:
        alpha_key = bot_key(first, "alpha")
        alpha = ccxt_bot(first, alpha_key)
        alpha.load_markets()
        assert alpha.create_order("BTC/USDT", "market", "buy", 0.04)["status"] == "closed"

    with run_gateway(config) as second:
        # beta trades first: alpha's 0.04 (less the BTC commission) is in the account's position all the same.
        beta = ccxt_bot(second, bot_key(second, "beta"))
        beta.load_markets()
        with pytest.raises(ccxt.ExchangeError, match=r"KEYGUARD_MAX_POSITION: account: BTC position would be "
                                                     r"0\.0599"):
            beta.create_order("BTC/USDT", "market", "buy", 0.02)
        # And alpha's own check knows its position the first time it is seen: in REDUCING it may sell.
        second.gateway.trading.set(TradingState.REDUCING, "alpha")
        alpha = ccxt_bot(second, alpha_key)
        alpha.load_markets()
        assert alpha.create_order("BTC/USDT", "market", "sell", 0.02)["status"] == "closed"
        with pytest.raises(ccxt.ExchangeError, match="KEYGUARD_STATE_REDUCING"):
            alpha.create_order("BTC/USDT", "market", "sell", 0.03)  # past zero: a new position


def test_a_housekeeping_round_that_fails_unexpectedly_does_not_end_housekeeping(
        gateway: GatewayHandle, monkeypatch: pytest.MonkeyPatch) -> None:
    gw = gateway.gateway
    settle_open = gw.desk.settle_open
    calls = []

    def breaks_once(most: int = 20) -> int:  # a bug, not an exchange error
        calls.append(most)
        if len(calls) == 1:
            raise RuntimeError("dictionary changed size during iteration")
        return settle_open(most)

    monkeypatch.setattr(gw.desk, "settle_open", breaks_once)
    deadline = time.monotonic() + 10
    while not calls and time.monotonic() < deadline:
        time.sleep(0.05)
    failed_at = time.time()
    # The round after the failure runs whole: heartbeat set, the failure count back to 0.
    while ((gw.heartbeat_at or 0) <= failed_at or gw.failures) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gw.heartbeat_at is not None and gw.heartbeat_at > failed_at, "a later round ran whole"
    assert len(calls) >= 2 and gw.failures == 0 and gw.last_error is None


def _let_go(handle: GatewayHandle, *keys: tuple[str, str]) -> bool:
    """Whether the gateway no longer holds these (bot, client id) orders in memory (only in its journal)."""
    return wait_until(lambda: not any(key in handle.gateway.desk._mappings for key in keys), 10.0)


def test_orders_closed_long_ago_leave_memory_and_still_answer_as_the_bot_named_them(
        sandbox: SandboxHandle, exchange_key: dict[str, Any], tmp_path: Path) -> None:
    """A gateway that runs for months holds its open and recent orders, not all it ever placed; a closed order it let
    go is still its bot's: replayed, queried, listed, its trades shown, in the books, and nobody else's."""
    config = gateway_config(sandbox, exchange_key, tmp_path, account=CAPPED_ACCOUNT, keep_closed_orders_s=0)
    with run_gateway(config) as handle:
        alpha, beta = ccxt_bot(handle, bot_key(handle, "alpha")), ccxt_bot(handle, bot_key(handle, "beta"))
        alpha.load_markets()
        beta.load_markets()
        filled = alpha.create_order("BTC/USDT", "market", "buy", 0.02, None, {"clientOrderId": "old-fill"})
        resting = alpha.create_order("BTC/USDT", "limit", "buy", 0.001, 20000, {"clientOrderId": "old-rest"})
        alpha.cancel_order(resting["id"], "BTC/USDT")
        assert _let_go(handle, ("alpha", "old-fill"), ("alpha", "old-rest"))
        orders_before = len(exchange_orders(sandbox))

        again = alpha.create_order("BTC/USDT", "market", "buy", 0.02, None, {"clientOrderId": "old-fill"})
        assert again["id"] == filled["id"] and again["clientOrderId"] == "old-fill"
        assert len(exchange_orders(sandbox)) == orders_before, "a reused id of an order let go made no second one"
        by_id = alpha.fetch_order(filled["id"], "BTC/USDT")
        assert by_id["clientOrderId"] == "old-fill" and by_id["status"] == "closed"
        by_cid = signed_call(handle, bot_key(handle, "alpha"), "GET", "/api/v3/order",
                             {"symbol": "BTCUSDT", "origClientOrderId": "old-rest"})
        assert by_cid.status_code == 200 and by_cid.json()["status"] == "CANCELED"
        assert by_cid.json()["clientOrderId"] == "old-rest"
        assert {o["clientOrderId"] for o in alpha.fetch_orders("BTC/USDT")} == {"old-fill", "old-rest"}
        assert {t["order"] for t in alpha.fetch_my_trades("BTC/USDT")} == {filled["id"]}
        # Nobody else's: beta sees none of them, by list, by id or by trade.
        assert beta.fetch_orders("BTC/USDT") == [] and beta.fetch_my_trades("BTC/USDT") == []
        with pytest.raises(ccxt.OrderNotFound):
            beta.fetch_order(filled["id"], "BTC/USDT")
        # Still in the books: alpha's 0.02 (less commission) counts against the account's 0.05.
        with pytest.raises(ccxt.ExchangeError, match=r"KEYGUARD_MAX_POSITION: account: BTC position would be 0\.0509"):
            beta.create_order("BTC/USDT", "market", "buy", 0.031)

    with run_gateway(config) as second:  # after a restart too: let go at once, answered from the journal
        alpha = ccxt_bot(second, bot_key(second, "alpha"))
        alpha.load_markets()
        assert not second.gateway.desk._mappings
        assert alpha.create_order("BTC/USDT", "market", "buy", 0.02, None,
                                  {"clientOrderId": "old-fill"})["id"] == filled["id"]
        assert len(exchange_orders(sandbox)) == orders_before
        with pytest.raises(ccxt.ExchangeError, match=r"KEYGUARD_MAX_POSITION: account: BTC position would be 0\.0509"):
            alpha.create_order("BTC/USDT", "market", "buy", 0.031)


def test_a_gateway_journaling_to_postgresql_restarts_with_its_books_and_the_ids_it_let_go(
        sandbox: SandboxHandle, exchange_key: dict[str, Any], tmp_path: Path, postgres_url: str) -> None:
    """The journal in PostgreSQL (journal_url) rather than SQLite: orders let go are replayed and listed from it,
    and a restarted gateway reads its books and its open orders back from it."""
    from tests.servers import fresh_postgres_database

    with fresh_postgres_database(postgres_url) as url:
        config = gateway_config(sandbox, exchange_key, tmp_path, account=CAPPED_ACCOUNT, keep_closed_orders_s=0,
                                journal_url=url)
        with run_gateway(config) as handle:
            alpha = ready_bot(handle, "alpha")
            filled = alpha.create_order("BTC/USDT", "market", "buy", 0.02, None, {"clientOrderId": "pg-fill"})
            resting = alpha.create_order("BTC/USDT", "limit", "buy", 0.01, 20000, {"clientOrderId": "pg-rest"})
            assert _let_go(handle, ("alpha", "pg-fill"))
            again = alpha.create_order("BTC/USDT", "market", "buy", 0.02, None, {"clientOrderId": "pg-fill"})
            assert again["id"] == filled["id"]
        orders_before = len(exchange_orders(sandbox))
        with run_gateway(config) as second:
            alpha = ready_bot(second, "alpha")
            assert alpha.create_order("BTC/USDT", "market", "buy", 0.02, None,
                                      {"clientOrderId": "pg-fill"})["id"] == filled["id"]
            assert len(exchange_orders(sandbox)) == orders_before, "no second order from the replay"
            assert {o["clientOrderId"] for o in alpha.fetch_orders("BTC/USDT")} == {"pg-fill", "pg-rest"}
            # 0.02 held (less commission) and 0.01 resting count against the account's 0.05.
            with pytest.raises(ccxt.ExchangeError, match=r"KEYGUARD_MAX_POSITION: account: BTC position would be "
                                                         r"0\.0599"):
                alpha.create_order("BTC/USDT", "market", "buy", 0.03)
            assert alpha.cancel_order(resting["id"], "BTC/USDT")["status"] == "canceled"
        assert not (tmp_path / "gateway" / "journal.db").exists(), "the journal was PostgreSQL's, not a SQLite file"


def test_a_long_running_gateway_holds_its_open_and_recent_orders_not_every_order_it_placed(
        start_gateway: GatewayFactory, sandbox: SandboxHandle) -> None:
    handle = start_gateway(keep_closed_orders_s=0)
    bot = ccxt_bot(handle, bot_key(handle, "alpha"))
    bot.load_markets()
    resting = bot.create_order("BTC/USDT", "limit", "buy", 0.001, 20000, {"clientOrderId": "still-open"})
    for i in range(40):
        side = "buy" if i % 2 == 0 else "sell"
        bot.create_order("BTC/USDT", "market", side, 0.001, None, {"clientOrderId": f"o-{i}"})
    assert _let_go(handle, *(("alpha", f"o-{i}") for i in range(40)))
    desk = handle.gateway.desk
    assert set(desk._mappings) == {("alpha", "still-open")}
    assert len(desk._owner) == len(desk._order_ids) == 1 and len(desk._seen) == 0
    assert bot.fetch_open_orders("BTC/USDT")[0]["id"] == resting["id"]  # the open one stays, and is still cancellable
    assert bot.cancel_order(resting["id"], "BTC/USDT")["status"] == "canceled"


def test_bots_reusing_ids_while_orders_are_let_go_make_one_order_each_and_book_each_once(tmp_path: Path) -> None:
    """Four bot connections replay ids from small pools while housekeeping lets closed orders go every 0.1 s: each
    id makes one order at the exchange, and the gateway's books hold exactly what the exchange account received."""

    with exchange_of_its_own() as (exchange, exchange_key):  # Binance's own weight limit
        config = gateway_config(exchange, exchange_key, tmp_path, keep_closed_orders_s=0, housekeeping_interval_s=0.1,
                                account={"max_order_notional": 5000, "max_order_share_of_portfolio": None,
                                         "max_orders_per_minute": 10_000, "max_position": {"BTC": 10.0},
                                         "daily_loss_limit": None})
        with run_gateway(config) as handle:
            key = bot_key(handle, "alpha")
            first = ccxt_bot(handle, key)
            first.load_markets()
            start_btc = first.fetch_balance()["BTC"]["total"]
            errors: list[BaseException] = []

            def trade(k: int) -> None:
                bot = ccxt_bot(handle, key)
                bot.set_markets(first.markets)
                try:
                    for i in range(30):
                        bot.create_order("BTC/USDT", "market", "buy", 0.001, None, {"clientOrderId": f"t{k}-{i % 8}"})
                        if i % 5 == 4:
                            time.sleep(0.15)  # a housekeeping round: the orders so far are let go
                except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
                    errors.append(exc)

            threads = [threading.Thread(target=trade, args=(k,)) for k in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=120)
            assert not errors, errors
            assert handle.gateway.desk._retired, "orders were let go while their ids were being reused"
            assert len(exchange.exchange.orders) == 4 * 8, "one order per client id, however often it was sent"
            received = first.fetch_balance()["BTC"]["total"] - start_btc
            assert received > 0.03
            assert handle.gateway.desk.books["alpha"].positions["BTC"] == pytest.approx(received, abs=1e-9)


def test_a_bot_listing_hundreds_of_orders_let_go_gets_each_as_it_named_it(tmp_path: Path) -> None:
    """More orders let go than one look-up names (desk.LOOKUP_BATCH): a bot listing its orders and its trades gets
    every one under its own id; another bot gets none of them."""
    from keyguard.gateway.desk import LOOKUP_BATCH

    count = LOOKUP_BATCH + 100
    with exchange_of_its_own(orders_short_limit=10_000) as (exchange, exchange_key):
        config = gateway_config(exchange, exchange_key, tmp_path, keep_closed_orders_s=0,
                                account={"max_order_notional": 5000, "max_order_share_of_portfolio": None,
                                         "max_orders_per_minute": 10_000, "max_position": {"BTC": 10.0},
                                         "daily_loss_limit": None})
        with run_gateway(config) as handle:
            alpha, beta = ready_bot(handle, "alpha"), ready_bot(handle, "beta")
            placed = {alpha.create_order("BTC/USDT", "market", "buy" if i % 2 == 0 else "sell", 0.001, None,
                                         {"clientOrderId": f"many-{i}"})["id"]: f"many-{i}" for i in range(count)}
            assert _let_go(handle, *(("alpha", name) for name in placed.values()))
            listed = alpha.fetch_orders("BTC/USDT", limit=1000)
            assert {o["id"]: o["clientOrderId"] for o in listed} == placed
            assert {t["order"] for t in alpha.fetch_my_trades("BTC/USDT", limit=1000)} == set(placed)
            assert beta.fetch_orders("BTC/USDT", limit=1000) == []
            assert beta.fetch_my_trades("BTC/USDT", limit=1000) == []


def signed_raw(handle: GatewayHandle, key: BotKey, method: str, path: str, query: str) -> httpx.Response:
    """A request signed the Binance way over a query written by hand: names may repeat, as a buggy bot sends them."""
    query = f"{query}&timestamp={int(time.time() * 1000)}"
    signature = hmac.new(key.secret.encode(), query.encode(), hashlib.sha256).hexdigest()
    return httpx.request(method, f"{handle.url}{path}?{query}&signature={signature}",
                         headers={"X-MBX-APIKEY": key.api_key}, timeout=15)


@pytest.mark.parametrize("sizes", ["quantity=0.5&quantity=0.001", "quantity=0.001&quantity=0.5"])
def test_an_order_naming_a_parameter_twice_is_refused_whichever_comes_first(
        gateway: GatewayHandle, sandbox: SandboxHandle, sizes: str) -> None:
    # 0.5 BTC is far past alpha's 2000 notional cap, 0.001 well inside: the envelope must not judge one while an
    # exchange that reads the other executes it. Binance itself refuses repeats with -1101, and so does the gateway.
    key = bot_key(gateway, "alpha")
    for query in (f"symbol=BTCUSDT&side=BUY&type=MARKET&{sizes}",
                  "symbol=ETHUSDT&symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.001",
                  "symbol=BTCUSDT&side=SELL&side=BUY&type=MARKET&quantity=0.001"):
        for path in ("/api/v3/order", "/api/v3/order/test"):
            answer = signed_raw(gateway, key, "POST", path, query)
            assert (answer.status_code, answer.json()) == (
                400, {"code": -1101, "msg": "Duplicate values for a parameter detected."}), (path, query)
    assert exchange_orders(sandbox) == []
    # The same bot's well-formed order still goes through.
    answer = signed_raw(gateway, key, "POST", "/api/v3/order", "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.001")
    assert answer.status_code == 200 and answer.json()["status"] == "FILLED"


def test_an_order_sized_both_in_base_and_in_quote_is_refused_before_it_reaches_the_exchange(
        gateway: GatewayHandle, sandbox: SandboxHandle) -> None:
    # Judged by its 0.001 BTC, executed by an exchange that reads quoteOrderQty it would spend 100,000 USDT.
    key = bot_key(gateway, "alpha")
    answer = signed_raw(gateway, key, "POST", "/api/v3/order",
                        "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.001&quoteOrderQty=100000")
    assert (answer.status_code, answer.json()["code"]) == (400, -1106)
    assert "quoteOrderQty" in answer.json()["msg"]
    assert exchange_orders(sandbox) == []
    # Sized in quote alone, it is judged at its quote: past the cap, refused by Keyguard.
    answer = signed_raw(gateway, key, "POST", "/api/v3/order",
                        "symbol=BTCUSDT&side=BUY&type=MARKET&quoteOrderQty=100000")
    assert (answer.status_code, answer.json()["code"]) == (400, -2010)
    assert answer.json()["msg"].startswith("KEYGUARD_MAX_ORDER_NOTIONAL: bot alpha: order notional 100000.00")


def test_a_stop_buy_without_a_limit_is_judged_at_its_stop_price_not_the_lower_market(
        gateway: GatewayHandle, sandbox: SandboxHandle) -> None:
    # 0.03 BTC is inside alpha's 2000 cap at the market; triggered at a stop of twice the market it pays about twice.
    key = bot_key(gateway, "alpha")
    market = sandbox.exchange.prices["BTCUSDT"]
    stop = round(market * 2, 2)
    answer = signed_raw(gateway, key, "POST", "/api/v3/order",
                        f"symbol=BTCUSDT&side=BUY&type=STOP_LOSS&quantity=0.03&stopPrice={stop}")
    assert (answer.status_code, answer.json()["code"]) == (400, -2010)
    assert answer.json()["msg"].startswith(f"KEYGUARD_MAX_ORDER_NOTIONAL: bot alpha: order notional {0.03 * stop:.2f}")
    assert exchange_orders(sandbox) == []


# A tired or buggy bot's orders: valid and invalid values, missing and extra parameters, every type.
ORDER_VALUES = {
    "symbol": ["BTCUSDT", "ETHUSDT"] * 6 + ["btcusdt", "XXX", ""],
    "side": ["BUY", "SELL"] * 6 + ["buy", "x", ""],
    "type": ["MARKET", "LIMIT"] * 5 + ["LIMIT_MAKER", "STOP_LOSS", "STOP_LOSS_LIMIT", "market", "x"],
    "quantity": ["0.001", "0.01", "0.02", "0.03", "0.1", "0.2", "1", "0", "-1", "1e3", "0.0000001"],
    "quoteOrderQty": ["10", "100", "100000", "0", ""],
    "price": ["2900", "3100", "50000", "60000", "70000", "1e9", "x"],
    "stopPrice": ["1", "120000", "x"],
    "timeInForce": ["GTC", "IOC", "FOK", "x"],
    "newClientOrderId": ["a", "b", "x" * 40, "ok-1", "c", "d"],
    "icebergQty": ["0.0005", "5"],
    "newOrderRespType": ["ACK", "RESULT", "FULL", "x"],
    "recvWindow": ["5000", "70000", "x"],
}


@pytest.mark.parametrize("seed", [1, 2])
def test_a_stream_of_odd_orders_never_breaks_a_cap_and_the_books_equal_the_exchange(tmp_path: Path,
                                                                                      seed: int) -> None:
    """Hundreds of orders as a careless bot writes them: each gets a Binance answer (never a 5xx), the account's
    position caps hold at the exchange, and the gateway's books equal what the exchange account received."""
    import random


    rng = random.Random(seed)
    caps = {"BTC": 0.05, "ETH": 0.5}
    with exchange_of_its_own(orders_short_limit=100_000) as (exchange, exchange_key):
        config = gateway_config(exchange, exchange_key, tmp_path,
                                bots={"alpha": {"max_order_notional": 2000, "max_refusals_per_minute": 100_000}},
                                account={"max_order_notional": 5000, "max_order_share_of_portfolio": None,
                                         "max_orders_per_minute": 100_000, "max_position": caps,
                                         "daily_loss_limit": None})
        start = dict(exchange.exchange.balances["main"])
        answers: dict[int, int] = {}
        with run_gateway(config) as handle:
            key = bot_key(handle, "alpha")
            for _ in range(300):
                names = rng.sample(sorted(ORDER_VALUES), rng.randrange(0, 4))
                names += [n for n in ("symbol", "side", "type", "quantity") if n not in names and rng.random() < 0.9]
                query = "&".join(f"{name}={rng.choice(ORDER_VALUES[name])}" for name in names)
                answer = signed_raw(handle, key, "POST", rng.choice(["/api/v3/order", "/api/v3/order/test"]), query)
                assert answer.status_code < 500, (query, answer.text)
                assert answer.status_code == 200 or isinstance(answer.json().get("code"), int), (query, answer.text)
                answers[answer.status_code] = answers.get(answer.status_code, 0) + 1
            assert answers.get(200, 0) >= 10, answers  # enough got through to test the caps
            for symbol in ("BTCUSDT", "ETHUSDT"):  # what still rests, cancelled as the bot would
                signed_raw(handle, key, "DELETE", "/api/v3/openOrders", f"symbol={symbol}")
            assert not [o for o in exchange.exchange.orders.values() if o.status in ("NEW", "PARTIALLY_FILLED")]
            held = {asset: exchange.exchange.balances["main"][asset] - start[asset] for asset in caps}
            for asset, cap in caps.items():
                assert abs(held[asset]) <= cap + 1e-9, (asset, held[asset])
            desk = handle.gateway.desk  # each answer's books update runs just after the bot has it
            assert wait_until(lambda: all(abs(desk.books["alpha"].positions.get(asset, 0.0) - held[asset]) < 1e-9
                                          for asset in caps), 5.0), (desk.books["alpha"].positions, held)


READ_VALUES = {
    "symbol": ["BTCUSDT", "ETHUSDT", "XXX", ""],
    "orderId": ["1001", "1002", "0", "-1", "x", "99999999999999999999", "1.5", ""],
    "origClientOrderId": ["a", "b", "kg-x", "", "x" * 50],
    "limit": ["1", "500", "1000", "5000", "0", "-1", "x"],
    "startTime": ["0", "1", "x", "99999999999999"], "endTime": ["0", "x"], "fromId": ["0", "1", "x"],
    "newClientOrderId": ["c1", ""], "cancelRestrictions": ["ONLY_NEW", "x"], "omitZeroBalances": ["true", "x"],
}
READ_CALLS = [("GET", "/api/v3/order"), ("DELETE", "/api/v3/order"), ("GET", "/api/v3/openOrders"),
              ("DELETE", "/api/v3/openOrders"), ("GET", "/api/v3/allOrders"), ("GET", "/api/v3/myTrades"),
              ("GET", "/api/v3/account"), ("GET", "/api/v3/rateLimit/order"), ("GET", "/api/v3/depth"),
              ("GET", "/api/v3/ticker/price"), ("GET", "/api/v3/exchangeInfo")]


def test_queries_cancels_and_market_data_with_odd_parameters_get_binance_answers_never_a_5xx(
        gateway: GatewayHandle, sandbox: SandboxHandle) -> None:
    """Two bots' queries, cancels, listings and market data with odd, missing and extra parameters (a depth limit
    of 'x' once answered 500 KEYGUARD_INTERNAL): each gets a 200 or Binance's own refusal, and neither bot's
    order is touched by the other."""
    import random

    rng = random.Random(3)
    alpha, beta = bot_key(gateway, "alpha"), bot_key(gateway, "beta")
    resting = signed_raw(gateway, alpha, "POST", "/api/v3/order", "symbol=ETHUSDT&side=SELL&type=LIMIT&"
                         "timeInForce=GTC&quantity=0.1&price=9999&newClientOrderId=b")
    assert resting.status_code == 200
    for _ in range(300):
        method, path = rng.choice(READ_CALLS)
        names = rng.sample(sorted(READ_VALUES), rng.randrange(0, 5))
        query = "&".join(f"{name}={rng.choice(READ_VALUES[name])}" for name in names)
        answer = signed_raw(gateway, beta, method, path, query)
        assert answer.status_code < 500, (method, path, query, answer.text)
        assert answer.status_code == 200 or isinstance(answer.json().get("code"), int), (path, query, answer.text)
    (order,) = [o for o in exchange_orders(sandbox) if o.symbol == "ETHUSDT"]
    assert order.status == "NEW", "beta cancelled nothing of alpha's"
