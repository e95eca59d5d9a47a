"""Binance spot's documented limits as the sandbox serves them: the unfilled order count (filled orders come off it),
GET /api/v3/rateLimit/order, SAPI's per-endpoint budgets that answer 429 and never ban, and 418 bans only for
repeated violations after a 429."""

from __future__ import annotations

import ccxt
import httpx
import pytest

from keyguard.exchanges.transport import bound_session
from keyguard.sandbox import SandboxConfig, SandboxHandle

from .conftest import TRADER_FLAGS, BinanceFactory

# An hour-long short ORDERS interval: no window rolls while a test runs, so only fills can lower the count.
NO_ROLL = {"orders_short_window_s": 3600, "align_windows_to_start": True}
READER_FLAGS = {"enableReading": True, "enableSpotAndMarginTrading": True}


def order_counts(client: ccxt.binance) -> dict[str, int]:
    """The account's unfilled order count per interval, from GET /api/v3/rateLimit/order."""
    return {f"{row['intervalNum']}{row['interval']}": int(row["count"]) for row in client.private_get_ratelimit_order()}


@pytest.mark.parametrize("sandbox_config", [SandboxConfig(**NO_ROLL)])
def test_the_101st_filled_market_order_in_one_interval_is_accepted(
    sandbox: SandboxHandle, binance: BinanceFactory
) -> None:
    client = binance(sandbox.create_key(flags=TRADER_FLAGS))
    for _ in range(101):
        order = client.create_order("BTC/USDT", "market", "buy", 0.0001)
        assert order["status"] == "closed"
        # The count at placement: this order, the earlier ones having traded and come off it.
        assert client.last_response_headers["X-MBX-ORDER-COUNT-1H"] == "1"
        assert client.last_response_headers["X-MBX-ORDER-COUNT-1D"] == "1"
    assert len(sandbox.exchange.orders_of("main")) == 101
    assert order_counts(client) == {"1HOUR": 0, "1DAY": 0}


@pytest.mark.parametrize("sandbox_config", [SandboxConfig(orders_short_limit=3, **NO_ROLL)])
def test_resting_orders_keep_counting_and_the_next_is_refused_with_1015(
    sandbox: SandboxHandle, binance: BinanceFactory
) -> None:
    client = binance(sandbox.create_key(flags=READER_FLAGS))
    resting = [client.create_order("BTC/USDT", "limit", "buy", 0.01, 59000) for _ in range(3)]
    assert client.last_response_headers["X-MBX-ORDER-COUNT-1H"] == "3"
    # Binance: "Canceling an order does not change the unfilled order count."
    client.cancel_order(resting[0]["id"], "BTC/USDT")
    assert order_counts(client)["1HOUR"] == 3
    with pytest.raises(ccxt.DDoSProtection, match="-1015.*3 orders per 1 HOUR"):
        client.create_order("BTC/USDT", "market", "buy", 0.0001)
    assert client.last_response_headers["X-MBX-ORDER-COUNT-1H"] == "4"
    assert 1 <= int(client.last_response_headers["Retry-After"]) <= 3600
    assert len(sandbox.exchange.orders_of("main")) == 3


@pytest.mark.parametrize("sandbox_config", [SandboxConfig(**NO_ROLL)])
def test_rate_limit_order_reports_the_unfilled_order_count_per_interval(
    sandbox: SandboxHandle, binance: BinanceFactory
) -> None:
    client = binance(sandbox.create_key(flags=READER_FLAGS))
    client.create_order("BTC/USDT", "limit", "buy", 0.01, 59000)
    client.create_order("BTC/USDT", "limit", "buy", 0.01, 59000)
    client.create_order("BTC/USDT", "market", "buy", 0.0001)
    # The market order counted at placement and came off once it traded: it is the resting two that count.
    assert client.last_response_headers["X-MBX-ORDER-COUNT-1H"] == "3"
    weight_before = int(client.last_response_headers["X-MBX-USED-WEIGHT-1M"])
    assert client.private_get_ratelimit_order() == [
        {"rateLimitType": "ORDERS", "interval": "HOUR", "intervalNum": 1, "limit": 100, "count": 2},
        {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000, "count": 2},
    ]
    assert int(client.last_response_headers["X-MBX-USED-WEIGHT-1M"]) == weight_before + 40
    # Counted per account: another account's key sees its own, empty count.
    other = binance(sandbox.create_key(account="other", flags=READER_FLAGS))
    assert order_counts(other) == {"1HOUR": 0, "1DAY": 0}


@pytest.mark.parametrize("sandbox_config", [SandboxConfig(order_count_maker_credit=5, **NO_ROLL)])
def test_an_order_that_first_fills_resting_comes_off_by_the_maker_credit(
    sandbox: SandboxHandle, binance: BinanceFactory
) -> None:
    """Binance's FAQ example 2: five resting orders, the first to trade as maker takes the count from 5 to 0."""
    client = binance(sandbox.create_key(flags=READER_FLAGS))
    client.create_order("BTC/USDT", "limit", "buy", 0.01, 59000)
    for _ in range(4):
        client.create_order("BTC/USDT", "limit", "buy", 0.01, 58000)
    assert order_counts(client)["1HOUR"] == 5
    sandbox.exchange.set_price("BTCUSDT", 59000)  # the market comes down to the first order, which fills
    assert order_counts(client) == {"1HOUR": 0, "1DAY": 0}
    client.create_order("BTC/USDT", "limit", "buy", 0.01, 57000)
    assert client.last_response_headers["X-MBX-ORDER-COUNT-1H"] == "1"
    # A taker's first fill takes one off, and never below zero.
    client.create_order("BTC/USDT", "market", "buy", 0.0001)
    client.create_order("BTC/USDT", "market", "buy", 0.0001)
    assert order_counts(client)["1HOUR"] == 1


@pytest.mark.parametrize("sandbox_config", [SandboxConfig(**NO_ROLL)])
def test_an_order_comes_off_the_count_at_its_first_fill_only(sandbox: SandboxHandle, binance: BinanceFactory) -> None:
    client = binance(sandbox.create_key(flags=READER_FLAGS))
    client.create_order("BTC/USDT", "limit", "buy", 0.01, 59000)
    client.create_order("BTC/USDT", "limit", "buy", 0.01, 59000)
    # Through the touch: two ask levels (0.5 BTC each) fill at once as taker, the rest rests.
    partial = client.create_order("BTC/USDT", "limit", "buy", 1.2, 60061)
    assert partial["status"] == "open" and partial["filled"] == 1.0
    assert client.last_response_headers["X-MBX-ORDER-COUNT-1H"] == "3"
    assert order_counts(client)["1HOUR"] == 2
    sandbox.exchange.set_price("BTCUSDT", 60061)  # the rest fills later: no second decrement
    assert client.fetch_order(partial["id"], "BTC/USDT")["status"] == "closed"
    assert order_counts(client) == {"1HOUR": 2, "1DAY": 2}


@pytest.mark.parametrize("sandbox_config", [SandboxConfig(orders_long_limit=2, align_windows_to_start=True)])
def test_over_the_daily_order_count_the_short_interval_stops_counting(
    sandbox: SandboxHandle, binance: BinanceFactory
) -> None:
    client = binance(sandbox.create_key(flags=READER_FLAGS))
    client.create_order("BTC/USDT", "limit", "buy", 0.01, 59000)
    client.create_order("BTC/USDT", "limit", "buy", 0.01, 59000)
    with pytest.raises(ccxt.DDoSProtection, match="-1015.*2 orders per 1 DAY"):
        client.create_order("BTC/USDT", "limit", "buy", 0.01, 59000)
    assert client.last_response_headers["X-MBX-ORDER-COUNT-1D"] == "3"
    assert client.last_response_headers["X-MBX-ORDER-COUNT-10S"] == "2"


# No in-flight grace: every request after a 429 would count as ignoring it, were SAPI on the /api ladder.
SMALL_SAPI = SandboxConfig(sapi_weight_limit=3, ban_grace_s=0, align_windows_to_start=True)


@pytest.mark.parametrize("sandbox_config", [SMALL_SAPI])
def test_sapi_over_its_limit_is_429_with_retry_after_never_a_ban_and_api_goes_on(
    sandbox: SandboxHandle, binance: BinanceFactory
) -> None:
    client = binance(sandbox.create_key(flags=READER_FLAGS))
    for used in ("1", "2", "3"):
        client.sapi_get_account_apirestrictions()
        assert client.last_response_headers["X-SAPI-USED-IP-WEIGHT-1M"] == used
    for _ in range(6):  # well past any number of violations an /api limit would tolerate
        with pytest.raises(ccxt.DDoSProtection, match="429"):
            client.sapi_get_account_apirestrictions()
        assert 1 <= int(client.last_response_headers["Retry-After"]) <= 60
    assert client.public_get_time()["serverTime"] > 0
    assert client.private_get_account()["balances"]
    assert "X-SAPI-USED-IP-WEIGHT-1M" not in client.last_response_headers


@pytest.mark.parametrize("sandbox_config", [SMALL_SAPI])
def test_each_sapi_endpoint_has_its_own_ip_budget_and_reports_its_own_use(
    sandbox: SandboxHandle, binance: BinanceFactory
) -> None:
    client = binance(sandbox.create_key(flags=READER_FLAGS))
    for _ in range(3):
        client.sapi_get_account_apirestrictions()
    with pytest.raises(ccxt.DDoSProtection, match="429"):
        client.sapi_get_account_apirestrictions()
    client.sapi_get_margin_allpairs()  # weight 1, in a pool of its own
    assert client.last_response_headers["X-SAPI-USED-IP-WEIGHT-1M"] == "1"
    assert "X-SAPI-USED-UID-WEIGHT-1M" not in client.last_response_headers
    # Per IP as well: another address has the whole budget of the spent endpoint.
    elsewhere = binance(sandbox.create_key(flags=READER_FLAGS), source_ip="127.0.0.2")
    elsewhere.sapi_get_account_apirestrictions()
    assert elsewhere.last_response_headers["X-SAPI-USED-IP-WEIGHT-1M"] == "1"


@pytest.mark.parametrize("sandbox_config", [SandboxConfig(sapi_uid_weight_limit=36000, align_windows_to_start=True)])
def test_uid_weighted_sapi_endpoints_report_uid_weight_and_their_429_leaves_the_ip_alone(
    sandbox: SandboxHandle, binance: BinanceFactory
) -> None:
    client = binance(sandbox.create_key(flags=READER_FLAGS))
    client.sapi_get_capital_withdraw_history()  # Weight(UID) 18000
    assert client.last_response_headers["X-SAPI-USED-UID-WEIGHT-1M"] == "18000"
    assert "X-SAPI-USED-IP-WEIGHT-1M" not in client.last_response_headers
    client.sapi_get_capital_withdraw_history()
    for _ in range(4):
        with pytest.raises(ccxt.DDoSProtection, match="429"):
            client.sapi_get_capital_withdraw_history()
    client.sapi_get_account_apirestrictions()
    assert client.last_response_headers["X-SAPI-USED-IP-WEIGHT-1M"] == "1"
    assert "X-SAPI-USED-UID-WEIGHT-1M" not in client.last_response_headers
    assert client.public_get_time()["serverTime"] > 0


@pytest.mark.parametrize("sandbox_config", [SandboxConfig(weight_limit=30, ban_grace_s=0, align_windows_to_start=True)])
def test_sapi_requests_during_an_api_back_off_are_served_and_earn_no_ban(
    sandbox: SandboxHandle, binance: BinanceFactory
) -> None:
    client = binance(sandbox.create_key(flags=READER_FLAGS))
    client.public_get_exchangeinfo()  # 20 of 30
    with pytest.raises(ccxt.DDoSProtection, match="429"):
        client.public_get_exchangeinfo()
    for _ in range(5):
        client.sapi_get_account_apirestrictions()
    with pytest.raises(ccxt.DDoSProtection, match="429"):
        client.public_get_time()


@pytest.mark.parametrize("sandbox_config", [SandboxConfig(weight_limit=30, ban_grace_s=0, align_windows_to_start=True)])
def test_one_request_sent_after_a_429_is_refused_again_not_banned(sandbox: SandboxHandle) -> None:
    with httpx.Client(base_url=sandbox.url) as client:
        assert client.get("/api/v3/exchangeInfo").status_code == 200
        assert client.get("/api/v3/exchangeInfo").status_code == 429
        again = client.get("/api/v3/time")
        assert again.status_code == 429
        assert again.json()["code"] == -1003
        assert 1 <= int(again.headers["Retry-After"]) <= 60


@pytest.mark.parametrize("sandbox_config", [SandboxConfig(weight_limit=30, ban_base_s=60, ban_grace_s=0,
                                                          ban_after_violations=3, align_windows_to_start=True)])
def test_the_ban_needs_repeated_violations_and_holds_sapi_too(sandbox: SandboxHandle) -> None:
    session = bound_session("127.0.0.1")
    url = sandbox.url
    assert session.get(f"{url}/api/v3/exchangeInfo").status_code == 200
    assert session.get(f"{url}/api/v3/exchangeInfo").status_code == 429
    statuses = [session.get(f"{url}/api/v3/time").status_code for _ in range(4)]
    assert statuses == [429, 429, 418, 418]
    banned = session.get(f"{url}/api/v3/time")
    assert 55 <= int(banned.headers["Retry-After"]) <= 60
    # An IP ban is the IP's: its SAPI requests are refused as well while it lasts.
    assert session.get(f"{url}/sapi/v1/account/apiRestrictions").status_code == 418
