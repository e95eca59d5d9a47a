"""The gateway's fast lane (docs/lane.md) as bots and on-call people meet it: unmodified clients trade through the
gateway's one URL; orders after a bot's first go out through the compiled lane on verdicts the gateway prepared, and
nothing about the envelope, the books, the ids or the containment changes. The real `keyguard-lane` binary
(scripts/setup.sh builds it), the sandbox over HTTP."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import ccxt
import pytest

from keyguard.gateway.lane import find_binary, lane_log_path
from keyguard.gateway.live_document import execution_document
from keyguard.gateway.server import GatewayHandle, run_gateway
from keyguard.sandbox import Fault, SandboxHandle
from keyguard.worker.killswitch import KillSwitch
from tests.gateway.conftest import GatewayFactory, bot_key, ccxt_bot, gateway_config

BINARY = find_binary(None)


@pytest.fixture(autouse=True)
def _lane_binary() -> None:
    # Not a skip: without the binary these tests would pass on a gateway that has no lane at all.
    assert BINARY is not None, "the fast lane's binary is missing: run scripts/setup.sh (it builds lane/)"


def lane_facts(handle: GatewayHandle) -> dict[str, Any]:
    facts = execution_document(handle.gateway)["state"]["fast_lane"]
    assert facts is not None, "the live document says no lane was tried"
    return facts


def sent_by_lane(handle: GatewayHandle, at_least: int) -> dict[str, Any]:
    """The lane's facts once it has sent `at_least` orders (or after 5 s): each is counted when it is booked, just
    after its bot has the answer."""
    deadline = time.monotonic() + 5
    while (facts := lane_facts(handle))["orders_sent"] < at_least and time.monotonic() < deadline:
        time.sleep(0.02)
    return facts


def ready(handle: GatewayHandle, bot: str) -> ccxt.binance:
    client = ccxt_bot(handle, bot_key(handle, bot))
    client.load_markets()
    return client


def verdict_out(handle: GatewayHandle, bot: str, side: str, symbol: str = "BTCUSDT") -> None:
    """Wait until the gateway has a verdict out for the bot's next order (it is made just after the bot has its
    answer; a bot that sends its next order at once meets the gateway before it, and that order goes through
    Python, as a test that waits here makes sure it does not)."""
    lane = handle.gateway.lane
    assert lane is not None
    deadline = time.monotonic() + 5
    while (symbol, side) not in lane.outstanding(bot):
        assert time.monotonic() < deadline, f"no {side} verdict for {bot} came"
        time.sleep(0.01)
    time.sleep(0.05)  # registered here just before its message leaves for the lane


def one_order_in(start_gateway: GatewayFactory, side: str) -> tuple[GatewayHandle, ccxt.binance]:
    """A gateway with bot alpha, which has placed one order (through the gateway itself) and holds a verdict for
    its next one on `side`."""
    handle = start_gateway(bots={"alpha": {}})
    bot = ready(handle, "alpha")
    bot.create_order("BTC/USDT", "market", "buy", 0.001)
    verdict_out(handle, "alpha", side)
    return handle, bot


def base_moved(sandbox: SandboxHandle, asset: str = "BTC") -> float:
    """What the orders at the exchange executed in `asset` (before commission), from the exchange's own table."""
    return sum(o.executed_qty if o.side == "BUY" else -o.executed_qty for o in sandbox.exchange.orders.values()
               if o.symbol.startswith(asset))


def books_match_the_account(handle: GatewayHandle, sandbox: SandboxHandle, start: dict[str, float],
                            bots: tuple[str, ...], asset: str = "BTC") -> bool:
    """Whether the gateway's books (its bots' positions, net of commission) hold what the exchange account moved:
    waited for a moment, as each answer's booking runs just after the bot has it."""
    deadline = time.monotonic() + 5
    while True:
        held = sandbox.exchange.balances["main"][asset] - start[asset]
        books = sum(handle.gateway.desk.books[bot].positions.get(asset, 0.0) for bot in bots
                    if bot in handle.gateway.desk.books)
        if abs(books - held) < 1e-9:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def test_a_bot_s_orders_after_its_first_go_out_through_the_lane_and_are_booked_as_the_gateway_s_own(
        start_gateway: GatewayFactory, sandbox: SandboxHandle) -> None:
    handle = start_gateway(bots={"alpha": {}})
    assert lane_facts(handle)["running"] is True
    start = dict(sandbox.exchange.balances["main"])
    bot = ready(handle, "alpha")
    placed = []
    for i in range(8):
        side = "buy" if i % 2 == 0 else "sell"
        if i:
            verdict_out(handle, "alpha", side.upper())
        placed.append(bot.create_order("BTC/USDT", "market", side, 0.001, None, {"clientOrderId": f"alpha-lane-{i}"}))
    facts = sent_by_lane(handle, 7)
    assert facts["orders_sent"] == 7, f"the lane sends every order after the first: {facts}"
    assert facts["orders_handed_back"] == 0
    # Each order answers under the bot's own id, at the exchange once, and the gateway finds it by that id.
    assert [o["clientOrderId"] for o in placed] == [f"alpha-lane-{i}" for i in range(8)]
    assert len(sandbox.exchange.orders) == 8
    for i in range(8):
        assert bot.fetch_order(None, "BTC/USDT", {"origClientOrderId": f"alpha-lane-{i}"})["status"] == "closed"
    # The books hold what the exchange executed: the envelope judges the next order on them.
    assert books_match_the_account(handle, sandbox, start, ("alpha",))
    state = execution_document(handle.gateway)["state"]
    assert state["bots"]["alpha"]["orders_last_minute"] == 8, "verdicts out are not counted as orders made"


def test_a_kill_switch_engaged_while_a_verdict_is_out_stops_the_next_order(
        start_gateway: GatewayFactory, sandbox: SandboxHandle) -> None:
    handle = start_gateway(bots={"alpha": {}})
    bot = ready(handle, "alpha")
    for i in range(3):
        bot.create_order("BTC/USDT", "market", "buy" if i % 2 == 0 else "sell", 0.001)
    verdict_out(handle, "alpha", "SELL")
    KillSwitch(handle.gateway.config.bot_kill_switch_path("alpha")).engage("on-call: revoke first", by="oncall")
    with pytest.raises(ccxt.ExchangeError, match="KEYGUARD_KILL_SWITCH"):
        bot.create_order("BTC/USDT", "market", "sell", 0.001)
    assert len(sandbox.exchange.orders) == 3


def test_a_lane_order_whose_answer_was_dropped_is_looked_up_and_never_sent_twice(
        start_gateway: GatewayFactory, sandbox: SandboxHandle) -> None:
    handle = start_gateway(bots={"alpha": {}})
    bot = ready(handle, "alpha")
    bot.create_order("BTC/USDT", "market", "buy", 0.001, None, {"clientOrderId": "drop-0"})
    verdict_out(handle, "alpha", "SELL")
    sent_before = lane_facts(handle)["orders_sent"]
    sandbox.set_faults(Fault(endpoint="POST /api/v3/order", kind="drop", when="after", times=1))

    order = bot.create_order("BTC/USDT", "market", "sell", 0.001, None, {"clientOrderId": "drop-1"})

    assert order["clientOrderId"] == "drop-1" and order["status"] == "closed"
    assert len(sandbox.exchange.orders) == 2, "the executed order was found, not sent again"
    facts = lane_facts(handle)  # a handed-back order is booked before the bot has its answer
    assert facts["orders_handed_back"] == 1 and facts["orders_sent"] == sent_before + 1
    # A retry of the same id (the bot never trusted that answer) gets the same order.
    again = bot.create_order("BTC/USDT", "market", "sell", 0.001, None, {"clientOrderId": "drop-1"})
    assert again["id"] == order["id"] and len(sandbox.exchange.orders) == 2


def test_an_id_a_bot_used_before_a_restart_is_answered_with_its_order_not_sent_again_by_the_lane(
        sandbox: SandboxHandle, exchange_key: dict[str, Any], tmp_path: Path) -> None:
    config = gateway_config(sandbox, exchange_key, tmp_path, bots={"alpha": {}})
    with run_gateway(config) as first:
        key = bot_key(first, "alpha")
        bot = ccxt_bot(first, key)
        bot.load_markets()
        for i in range(3):
            bot.create_order("BTC/USDT", "market", "buy" if i % 2 == 0 else "sell", 0.001, None,
                             {"clientOrderId": f"old-{i}"})
    with run_gateway(config) as second:
        bot = ccxt_bot(second, key)
        bot.load_markets()
        bot.create_order("BTC/USDT", "market", "buy", 0.001, None, {"clientOrderId": "new-0"})
        lane = second.gateway.lane
        assert lane is not None
        deadline = time.monotonic() + 5  # verdicts are made just after the bot has its answer
        while not lane.reserved_times() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert lane.reserved_times(), "no verdict was out"
        replay = bot.create_order("BTC/USDT", "market", "sell", 0.001, None, {"clientOrderId": "old-1"})
    assert replay["clientOrderId"] == "old-1"
    assert len(sandbox.exchange.orders) == 4, "old-1 was answered with its order, not placed again"


def test_when_the_lane_dies_the_gateway_takes_its_address_back_and_bots_trade_on(
        start_gateway: GatewayFactory, sandbox: SandboxHandle) -> None:
    handle = start_gateway(bots={"alpha": {}})
    start = dict(sandbox.exchange.balances["main"])
    bot = ready(handle, "alpha")
    for i in range(3):
        bot.create_order("BTC/USDT", "market", "buy" if i % 2 == 0 else "sell", 0.001)
    lane = handle.gateway.lane
    assert lane is not None and lane._process is not None
    os.kill(lane._process.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while lane_facts(handle)["running"] and time.monotonic() < deadline:
        time.sleep(0.05)
    facts = lane_facts(handle)
    assert facts["running"] is False and "stopped" in (facts["problem"] or "")
    placed = None
    while placed is None and time.monotonic() < deadline + 10:
        try:
            placed = bot.create_order("BTC/USDT", "market", "sell", 0.001, None, {"clientOrderId": "after-lane"})
        except ccxt.NetworkError:
            time.sleep(0.1)  # the address is taken back within moments
    assert placed is not None and placed["clientOrderId"] == "after-lane"
    assert len(sandbox.exchange.orders) == 4
    assert books_match_the_account(handle, sandbox, start, ("alpha",))


def test_an_order_the_lane_sent_but_never_reported_is_booked_and_settled_at_the_next_start(
        start_gateway: GatewayFactory, sandbox: SandboxHandle, exchange_key: dict[str, Any], tmp_path: Path) -> None:
    # An order at the exchange under a Keyguard id, in the lane's intent log, in no journal row: as when the whole
    # host stopped between the lane's send and its report.
    intent = "ab" * 16
    cid = f"kg-{intent[:24]}-1"
    from keyguard.exchanges.binance_client import BinanceSpotClient

    direct = BinanceSpotClient(sandbox.url, exchange_key["api_key"], exchange_key["secret"], None)
    direct.new_order({"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.002",
                      "newClientOrderId": cid})
    state = tmp_path / "gateway"
    state.mkdir(parents=True, exist_ok=True)
    record = {"id": 1, "intent": intent, "cid": cid, "bot": "alpha", "bot_cid": "never-reported",
              "symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "qty": "0.002", "price": None,
              "wire": [["symbol", "BTCUSDT"], ["side", "BUY"], ["type", "MARKET"], ["quantity", "0.002"]],
              "sent_ms": int(time.time() * 1000)}
    lane_log_path(state).write_text(json.dumps(record) + "\n")

    handle = start_gateway(bots={"alpha": {}})
    bot = ready(handle, "alpha")
    found = bot.fetch_order(None, "BTC/USDT", {"origClientOrderId": "never-reported"})
    assert found["clientOrderId"] == "never-reported" and found["filled"] == pytest.approx(0.002)
    # Its fill is in the bot's books (net of the exchange's commission), as for any order the gateway placed.
    deadline = time.monotonic() + 10
    while not handle.gateway.desk.books.get("alpha") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert handle.gateway.desk.books["alpha"].positions.get("BTC", 0.0) == pytest.approx(0.002 * 0.999)


def test_verdicts_out_never_make_the_gateway_refuse_what_its_caps_allow(
        start_gateway: GatewayFactory, sandbox: SandboxHandle) -> None:
    # Two bots under one account cap of 0.5 BTC: each holds verdicts (reservations) after its first order. Orders
    # that fit the cap are placed however many verdicts are out; the one that would pass it is refused.
    handle = start_gateway(bots={"alpha": {}, "beta": {}})
    alpha, beta = ready(handle, "alpha"), ready(handle, "beta")
    for i, (name, client) in enumerate((("alpha", alpha), ("beta", beta)) * 4):
        if i in (2, 3):  # each bot's first order goes through Python; later ones as their verdicts allow
            verdict_out(handle, name, "BUY")
        client.create_order("BTC/USDT", "market", "buy", 0.0625)  # 8 x 0.0625: 0.5 bought, 0.4995 held
    assert lane_facts(handle)["orders_sent"] >= 2, "the lane took part"
    with pytest.raises(ccxt.ExchangeError, match="KEYGUARD_MAX_POSITION"):
        beta.create_order("BTC/USDT", "market", "buy", 0.001)
    assert base_moved(sandbox) == pytest.approx(0.5)


def test_an_exchange_refusal_of_a_lane_order_reaches_the_bot_and_frees_its_id(
        start_gateway: GatewayFactory, sandbox: SandboxHandle) -> None:
    handle, bot = one_order_in(start_gateway, "SELL")
    sandbox.set_faults(Fault(endpoint="POST /api/v3/order", kind="status", status=400, when="before", times=1))

    with pytest.raises(ccxt.BaseError) as refused:  # not a network error: a definite answer
        bot.create_order("BTC/USDT", "market", "sell", 0.001, None, {"clientOrderId": "refused-1"})
    assert not isinstance(refused.value, ccxt.NetworkError)

    assert lane_facts(handle)["orders_handed_back"] == 1, "the lane sent it and handed the refusal back"
    # Definitely not placed: the same id is the bot's to use again, at once (the order's lock was let go).
    again = bot.create_order("BTC/USDT", "market", "sell", 0.001, None, {"clientOrderId": "refused-1"})
    assert again["clientOrderId"] == "refused-1" and again["status"] == "closed"
    assert len(sandbox.exchange.orders) == 2


def test_the_lane_s_intent_log_is_emptied_once_its_orders_are_booked(
        start_gateway: GatewayFactory, sandbox: SandboxHandle, monkeypatch: pytest.MonkeyPatch) -> None:
    import keyguard.gateway.lane as lane_module

    monkeypatch.setattr(lane_module, "TRIM_BYTES", 1)  # any record at all counts as grown
    handle, bot = one_order_in(start_gateway, "SELL")
    bot.create_order("BTC/USDT", "market", "sell", 0.001, None, {"clientOrderId": "logged-1"})
    log_file = lane_log_path(handle.gateway.config.state_dir)
    assert sent_by_lane(handle, 1)["orders_sent"] == 1
    deadline = time.monotonic() + 10  # housekeeping rounds every 0.5 s here
    while log_file.stat().st_size and time.monotonic() < deadline:
        time.sleep(0.1)
    assert log_file.stat().st_size == 0, "the log of booked orders was kept"
    # The order itself is the journal's: its bot still finds it by its id.
    assert bot.fetch_order(None, "BTC/USDT", {"origClientOrderId": "logged-1"})["status"] == "closed"


def test_a_kill_switch_engaged_while_a_lane_order_is_out_cancels_it_once_it_rests(
        start_gateway: GatewayFactory, sandbox: SandboxHandle) -> None:
    # Revoke first: the round that obeys the switch waits for the lane's order in flight to be booked, then cancels
    # it with the rest, rather than cancelling before it exists and leaving it resting.
    handle, bot = one_order_in(start_gateway, "BUY")
    sandbox.set_faults(Fault(endpoint="POST /api/v3/order", kind="latency", latency_ms=1500, times=1))
    placed: list[dict[str, Any]] = []
    sending = threading.Thread(target=lambda: placed.append(
        bot.create_order("BTC/USDT", "limit", "buy", 0.001, 50000, {"clientOrderId": "in-flight-1"})))
    sending.start()
    time.sleep(0.4)
    assert handle.gateway.kill_switch is not None
    handle.gateway.kill_switch.engage("on-call: revoke first", by="oncall")
    sending.join(timeout=20)
    assert placed and placed[0]["clientOrderId"] == "in-flight-1"
    assert sent_by_lane(handle, 1)["orders_sent"] == 1, "the order went out through the lane"
    order = sandbox.exchange.orders[int(placed[0]["id"])]
    deadline = time.monotonic() + 10
    while order.status != "CANCELED" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert order.status == "CANCELED", f"the order sent as the switch engaged still rests: {order.status}"
