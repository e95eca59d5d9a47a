"""The faces incident containment and foreign-activity detection use, as a client sees them over HTTP: Binance's
withdrawal and transfer history and address book, a master account's control of its sub-accounts' keys, and
Bybit's key update and delete calls."""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from typing import Any
from urllib.parse import urlencode

import ccxt
import httpx
import pytest

from keyguard.exchanges.transport import bound_session
from keyguard.sandbox import SandboxConfig, SandboxHandle

from .conftest import LOOPBACK_ONLY, TRADER_FLAGS, BinanceFactory

WALLET_FLAGS = {"enableWithdrawals": True, "permitsUniversalTransfer": True}
SUB_EMAIL = "desk@sub.example"


def _signed(sandbox: SandboxHandle, key: dict[str, Any], method: str, path: str, params: dict[str, str],
            source_ip: str = "127.0.0.1") -> httpx.Response:
    """A signed Binance request, for the sub-account calls ccxt has no method for."""
    query = urlencode({**params, "timestamp": str(int(time.time() * 1000))})
    signature = hmac.new(key["secret"].encode(), query.encode(), hashlib.sha256).hexdigest()
    with httpx.Client(transport=httpx.HTTPTransport(local_address=source_ip)) as client:
        return client.request(method, f"{sandbox.url}{path}?{query}&signature={signature}",
                              headers={"X-MBX-APIKEY": key["api_key"]})


def _master_and_sub(sandbox: SandboxHandle) -> tuple[dict[str, Any], dict[str, Any]]:
    """A master key on "main" (trading enabled, as Binance asks of it) and a key of its sub-account "desk"."""
    sandbox.add_sub_account("main", "desk", SUB_EMAIL)
    master = sandbox.create_key(flags=TRADER_FLAGS, label="master")
    sub = sandbox.create_key(account="desk", flags=TRADER_FLAGS, label="desk-bot")
    return master, sub


# -- Binance: wallet history and address book ----------------------------------------------------------
def test_withdrawal_shows_in_history_with_address_network_and_client_id(
    sandbox: SandboxHandle, binance: BinanceFactory
) -> None:
    client = binance(sandbox.create_key(flags=WALLET_FLAGS, **LOOPBACK_ONLY))
    applied = client.sapi_post_capital_withdraw_apply({"coin": "USDT", "address": "TXattacker", "amount": "500",
                                                       "network": "TRX", "withdrawOrderId": "kg-w-1"})

    withdrawals = client.fetch_withdrawals("USDT")
    assert [(w["id"], w["address"], w["amount"], w["status"]) for w in withdrawals] == [
        (applied["id"], "TXattacker", 500.0, "ok")]
    row = withdrawals[0]["info"]
    assert row["withdrawOrderId"] == "kg-w-1" and row["network"] == "TRX"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", row["applyTime"])
    assert row["amount"] == "500.00000000" and row["transferType"] == 0 and row["walletType"] == 0
    # A UID-weighted endpoint: 18000 of the account's 180000 per minute for this endpoint, not the IP's pool.
    assert client.last_response_headers["X-SAPI-USED-UID-WEIGHT-1M"] == "18000"
    assert "X-SAPI-USED-IP-WEIGHT-1M" not in client.last_response_headers
    # The history is the account's own: another account's key sees none of it.
    assert binance(sandbox.create_key(account="other")).sapi_get_capital_withdraw_history() == []


def test_withdraw_history_costs_a_tenth_of_the_accounts_minute_the_eleventh_call_is_refused(
    sandbox: SandboxHandle, binance: BinanceFactory
) -> None:
    client = binance(sandbox.create_key())
    for _ in range(10):
        client.sapi_get_capital_withdraw_history()
    assert client.last_response_headers["X-SAPI-USED-UID-WEIGHT-1M"] == "180000"
    with pytest.raises(ccxt.DDoSProtection, match='"code":-1003'):
        client.sapi_get_capital_withdraw_history()
    # The limit is the account's and this endpoint's: another account, or another endpoint, is not held back.
    assert binance(sandbox.create_key(account="other")).sapi_get_capital_withdraw_history() == []
    assert client.sapi_get_capital_withdraw_address_list() == []


# Room for the many history calls below (each costs 18000 of the account's 180000 a minute).
ROOMY_UID_POOL = SandboxConfig(align_windows_to_start=True, sapi_uid_weight_limit=1_000_000)


@pytest.mark.parametrize("sandbox_config", [ROOMY_UID_POOL])
def test_withdraw_history_honours_coin_status_client_id_window_and_paging(
    sandbox: SandboxHandle, binance: BinanceFactory
) -> None:
    client = binance(sandbox.create_key(flags=WALLET_FLAGS, **LOOPBACK_ONLY))
    first = client.sapi_post_capital_withdraw_apply({"coin": "USDT", "address": "T1", "amount": "10"})["id"]
    second = client.sapi_post_capital_withdraw_apply({"coin": "BTC", "address": "bc1x", "amount": "0.1",
                                                      "withdrawOrderId": "kg-w-2"})["id"]
    history = client.sapi_get_capital_withdraw_history

    assert [w["id"] for w in history()] == [second, first]  # newest first
    assert [w["id"] for w in history({"coin": "USDT"})] == [first]
    assert [w["id"] for w in history({"withdrawOrderId": "kg-w-2"})] == [second]
    assert "withdrawOrderId" not in history({"coin": "USDT"})[0]
    assert [w["id"] for w in history({"status": "6"})] == [second, first]
    assert history({"status": "4"}) == []
    assert [w["id"] for w in history({"limit": "1"})] == [second]
    assert [w["id"] for w in history({"offset": "1", "limit": "1"})] == [first]
    later = sandbox.exchange.now_ms() + 60_000
    assert history({"startTime": str(later), "endTime": str(later + 1000)}) == []
    now = sandbox.exchange.now_ms()
    with pytest.raises(ccxt.ExchangeError, match='"code":-4047'):
        history({"startTime": str(now - 91 * 86_400_000), "endTime": str(now)})
    with pytest.raises(ccxt.ExchangeError, match="-4047"):
        history({"withdrawOrderId": "kg-w-2", "startTime": str(now - 8 * 86_400_000)})


def test_transfer_then_its_history_by_type(sandbox: SandboxHandle, binance: BinanceFactory) -> None:
    client = binance(sandbox.create_key(flags=WALLET_FLAGS, **LOOPBACK_ONLY))
    tran_id = client.sapi_post_asset_transfer({"type": "MAIN_FUNDING", "asset": "USDT", "amount": "100"})["tranId"]
    client.sapi_post_asset_transfer({"type": "FUNDING_MAIN", "asset": "USDT", "amount": "40"})

    history = client.sapi_get_asset_transfer({"type": "MAIN_FUNDING"})
    assert history["total"] == 1
    (row,) = history["rows"]
    assert row["tranId"] == tran_id and row["asset"] == "USDT" and row["amount"] == "100"
    assert row["type"] == "MAIN_FUNDING" and row["status"] == "CONFIRMED"
    assert abs(row["timestamp"] - sandbox.exchange.now_ms()) < 10_000
    assert client.sapi_get_asset_transfer({"type": "FUNDING_MAIN", "size": "1", "current": "1"})["total"] == 1
    assert client.sapi_get_asset_transfer({"type": "MAIN_UMFUTURE"}) == {"total": 0}
    # The history is readable by a key that could not make the transfer itself.
    assert binance(sandbox.create_key()).sapi_get_asset_transfer({"type": "MAIN_FUNDING"})["total"] == 1
    with pytest.raises(ccxt.BadRequest, match="-1102"):
        client.sapi_get_asset_transfer()


def test_address_added_in_the_web_ui_is_listed_and_a_named_withdrawal_files_its_address(
    sandbox: SandboxHandle, binance: BinanceFactory
) -> None:
    client = binance(sandbox.create_key(flags=WALLET_FLAGS, **LOOPBACK_ONLY))
    assert client.sapi_get_capital_withdraw_address_list() == []
    assert client.last_response_headers["X-SAPI-USED-IP-WEIGHT-1M"] == "10"
    added = sandbox.add_withdraw_address("main", "BTC", "bc1qforeign", name="cold wallet", white_status=True)
    assert added["network"] == "BTC"

    assert client.sapi_get_capital_withdraw_address_list() == [{
        "address": "bc1qforeign", "addressTag": "", "coin": "BTC", "name": "cold wallet", "network": "BTC",
        "origin": "", "originType": "others", "whiteStatus": True,
    }]
    # Binance files the address of a withdrawal that names it.
    client.sapi_post_capital_withdraw_apply({"coin": "USDT", "address": "TXnew", "amount": "5", "network": "TRX",
                                             "name": "exit route"})
    listed = client.sapi_get_capital_withdraw_address_list()
    assert [(a["address"], a["network"], a["name"], a["whiteStatus"]) for a in listed] == [
        ("bc1qforeign", "BTC", "cold wallet", True), ("TXnew", "TRX", "exit route", False)]
    assert [w["address"] for w in client.sapi_get_capital_withdraw_history()] == ["TXnew"]
    with sandbox.admin() as admin:
        duplicate = admin.post("/addresses", json={"account": "main", "coin": "BTC", "address": "bc1qforeign"})
    assert duplicate.status_code == 409


# -- Binance: a master account's control of its sub-accounts' keys ---------------------------------------
def test_master_restricts_a_sub_account_key_and_the_key_is_refused_from_other_addresses(
    sandbox: SandboxHandle, binance: BinanceFactory
) -> None:
    master_key, sub_key = _master_and_sub(sandbox)
    master = binance(master_key)
    sub_here = binance(sub_key, source_ip="127.0.0.1")
    assert sub_here.fetch_balance()["USDT"]["free"] == pytest.approx(100000.0)

    restricted = master.sapiV2PostSubAccountSubAccountApiIpRestriction({
        "email": SUB_EMAIL, "subAccountApiKey": sub_key["api_key"], "status": "2", "ipAddress": "127.0.0.2"})
    assert restricted["status"] == "2" and restricted["ipList"] == ["127.0.0.2"]
    assert restricted["apiKey"] == sub_key["api_key"] and restricted["updateTime"] > 0
    assert master.last_response_headers["X-SAPI-USED-UID-WEIGHT-1M"] == "3000"

    with pytest.raises(ccxt.BaseError, match="-2015"):
        sub_here.fetch_balance()
    assert binance(sub_key, source_ip="127.0.0.2").sapi_get_account_apirestrictions()["ipRestrict"] is True
    shown = master.sapi_get_sub_account_subaccountapi_iprestriction({"email": SUB_EMAIL,
                                                                     "subAccountApiKey": sub_key["api_key"]})
    assert shown["ipRestrict"] == "true" and shown["ipList"] == ["127.0.0.2"]

    # Dropping the last trusted address leaves the restriction on: the key is refused from everywhere.
    emptied = master.sapi_delete_sub_account_subaccountapi_iprestriction_iplist({
        "email": SUB_EMAIL, "subAccountApiKey": sub_key["api_key"], "ipAddress": "127.0.0.2"})
    assert emptied["ipRestrict"] == "true" and emptied["ipList"] == []
    with pytest.raises(ccxt.BaseError, match="-2015"):
        binance(sub_key, source_ip="127.0.0.2").sapi_get_account_apirestrictions()

    # status 1 lifts the restriction.
    lifted = master.sapiV2PostSubAccountSubAccountApiIpRestriction({
        "email": SUB_EMAIL, "subAccountApiKey": sub_key["api_key"], "status": "1"})
    assert lifted["status"] == "1" and "ipList" not in lifted
    assert binance(sub_key, source_ip="127.0.0.3").sapi_get_account_apirestrictions()["ipRestrict"] is False


def test_only_the_master_of_the_email_may_restrict_that_sub_accounts_keys(
    sandbox: SandboxHandle, binance: BinanceFactory
) -> None:
    master_key, sub_key = _master_and_sub(sandbox)
    params = {"email": SUB_EMAIL, "subAccountApiKey": sub_key["api_key"], "status": "2", "ipAddress": "127.0.0.2"}
    unrelated = binance(sandbox.create_key(account="elsewhere", flags=TRADER_FLAGS))
    with pytest.raises(ccxt.ExchangeError, match='"code":-5021,"msg":"This parent sub have no relation"'):
        unrelated.sapiV2PostSubAccountSubAccountApiIpRestriction(params)
    # The sub-account's own key is no master either.
    with pytest.raises(ccxt.ExchangeError, match="-5021"):
        binance(sub_key).sapiV2PostSubAccountSubAccountApiIpRestriction(params)
    with pytest.raises(ccxt.ExchangeError, match="-5021"):
        binance(master_key).sapiV2PostSubAccountSubAccountApiIpRestriction({**params, "email": "nobody@x.example"})
    # The master, naming a key that is not that sub-account's.
    with pytest.raises(ccxt.ExchangeError, match="-1130"):
        binance(master_key).sapiV2PostSubAccountSubAccountApiIpRestriction(
            {**params, "subAccountApiKey": master_key["api_key"]})
    # The master's key without "Enable Spot & Margin Trading" may read the restriction but not change it.
    read_only_master = binance(sandbox.create_key(label="master-ro"))
    with pytest.raises(ccxt.AuthenticationError, match="-2015"):
        read_only_master.sapiV2PostSubAccountSubAccountApiIpRestriction(params)
    assert read_only_master.sapi_get_sub_account_subaccountapi_iprestriction(
        {"email": SUB_EMAIL, "subAccountApiKey": sub_key["api_key"]})["ipRestrict"] == "false"
    # None of the refused calls touched the key.
    assert binance(sub_key, source_ip="127.0.0.1").sapi_get_account_apirestrictions()["ipRestrict"] is False


def test_master_changes_a_sub_account_keys_permissions_and_deletes_it(
    sandbox: SandboxHandle, binance: BinanceFactory
) -> None:
    master_key, sub_key = _master_and_sub(sandbox)
    ref = {"email": SUB_EMAIL, "subAccountApiKey": sub_key["api_key"]}
    # The sub-account's own key (trading enabled, as these calls ask) is no master.
    not_master = _signed(sandbox, sub_key, "DELETE", "/sapi/v1/sub-account/subAccountApi", ref)
    assert (not_master.status_code, not_master.json()["code"]) == (400, -5021)

    changed = _signed(sandbox, master_key, "POST", "/sapi/v1/sub-account/subAccountApiPermission",
                      {**ref, "canTrade": "false", "canUniversalTransfer": "true"})
    assert changed.status_code == 200
    assert changed.json() | {"timestamp": 0} == {
        "apiName": "desk-bot", "apikey": sub_key["api_key"], "canTrade": False, "canMarginLoanRepay": False,
        "canFuturesTrade": False, "canUniversalTransfer": True, "canVanillaOptions": False, "timestamp": 0}
    restrictions = binance(sub_key).sapi_get_account_apirestrictions()
    assert restrictions["enableSpotAndMarginTrading"] is False and restrictions["permitsUniversalTransfer"] is True

    deleted = _signed(sandbox, master_key, "DELETE", "/sapi/v1/sub-account/subAccountApi", ref)
    assert (deleted.status_code, deleted.json()) == (200, {})
    with pytest.raises(ccxt.BaseError, match="-2015"):
        binance(sub_key).sapi_get_account_apirestrictions()
    # A deleted key is no longer that sub-account's key.
    again = _signed(sandbox, master_key, "DELETE", "/sapi/v1/sub-account/subAccountApi", ref)
    assert again.json()["code"] == -1130


def test_admin_refuses_sub_account_relations_that_cannot_exist(sandbox: SandboxHandle) -> None:
    created = sandbox.add_sub_account("main", "desk", SUB_EMAIL)
    assert created["master"] == "main" and created["email"] == SUB_EMAIL
    with sandbox.admin() as admin:
        conflicts = [
            admin.post("/sub-accounts", json={"master": "main", "account": "desk", "email": "b@x.example"}),
            admin.post("/sub-accounts", json={"master": "main", "account": "d2", "email": SUB_EMAIL}),
            admin.post("/sub-accounts", json={"master": "desk", "account": "d3", "email": "c@x.example"}),
            admin.post("/sub-accounts", json={"master": "m2", "account": "main", "email": "d@x.example"}),
            admin.post("/sub-accounts", json={"master": "m3", "account": "m3", "email": "e@x.example"}),
        ]
        listed = admin.get("/sub-accounts").json()
    assert [r.status_code for r in conflicts] == [409] * 5
    assert [s["account"] for s in listed] == ["desk"]


# -- Bybit: key update and delete ----------------------------------------------------------------------
def _bybit(sandbox: SandboxHandle, key: dict[str, Any], source_ip: str = "127.0.0.1") -> ccxt.bybit:
    return ccxt.bybit({"apiKey": key["api_key"], "secret": key["secret"], "urls": sandbox.ccxt_urls("bybit"),
                       "session": bound_session(source_ip), "enableRateLimit": False, "timeout": 10000})


SPOT_ORDER = {"category": "spot", "symbol": "BTCUSDT", "side": "Buy", "orderType": "Limit", "qty": "0.01",
              "price": "59000"}


def test_bybit_update_api_makes_the_key_read_only_and_its_orders_are_refused(sandbox: SandboxHandle) -> None:
    key = sandbox.create_key(exchange="bybit", flags={"enableSpotAndMarginTrading": True,
                                                      "permitsUniversalTransfer": True})
    client = _bybit(sandbox, key)
    placed = client.private_post_v5_order_create({**SPOT_ORDER, "orderLinkId": "kg-b-1"})
    assert placed["retCode"] == 0 and placed["result"]["orderLinkId"] == "kg-b-1"

    # Bybit no longer takes IP changes on this call.
    with pytest.raises(ccxt.ExchangeError, match="141019"):
        client.private_post_v5_user_update_api({"ips": "127.0.0.1"})
    updated = client.private_post_v5_user_update_api({"readOnly": 1})
    assert updated["result"]["readOnly"] == 1 and updated["result"]["permissions"]["Spot"] == []

    with pytest.raises(ccxt.PermissionDenied, match='"retCode":10005'):
        client.private_post_v5_order_create(SPOT_ORDER)
    reported = client.private_get_v5_user_query_api()["result"]
    assert reported["readOnly"] == 1 and reported["permissions"]["Wallet"] == []
    assert len(sandbox.exchange.orders_of("main")) == 1


def test_bybit_update_api_replaces_the_groups_it_is_sent(sandbox: SandboxHandle) -> None:
    key = sandbox.create_key(exchange="bybit", flags={"enableSpotAndMarginTrading": True, "enableFutures": True,
                                                      "enableInternalTransfer": True})
    client = _bybit(sandbox, key)
    result = client.private_post_v5_user_update_api({"permissions": {"Spot": [], "Wallet": ["AccountTransfer"]}})[
        "result"]
    assert result["permissions"]["Spot"] == [] and result["permissions"]["Wallet"] == ["AccountTransfer"]
    assert result["permissions"]["ContractTrade"] == ["Order", "Position"]  # not sent: kept
    # Withdrawal cannot be added through the API.
    with pytest.raises(ccxt.ExchangeError, match="141020"):
        client.private_post_v5_user_update_api({"permissions": {"Wallet": ["AccountTransfer", "Withdraw"]}})
    with pytest.raises(ccxt.BadRequest, match="10001"):
        client.private_post_v5_user_update_api({"permissions": {"Spot": ["Everything"]}})


def test_bybit_delete_api_invalidates_the_calling_key_at_once(sandbox: SandboxHandle) -> None:
    key = sandbox.create_key(exchange="bybit", flags={"enableWithdrawals": True})
    client = _bybit(sandbox, key)
    assert client.private_post_v5_user_delete_api()["retCode"] == 0
    with pytest.raises(ccxt.AuthenticationError, match='"retCode":10003'):
        client.private_get_v5_user_query_api()
    # A key without a wallet permission may not delete itself.
    trader = _bybit(sandbox, sandbox.create_key(exchange="bybit", flags=TRADER_FLAGS))
    with pytest.raises(ccxt.PermissionDenied, match="10005"):
        trader.private_post_v5_user_delete_api()
    assert trader.private_get_v5_user_query_api()["retCode"] == 0


def test_bybit_update_sub_api_by_a_master_without_a_wallet_permission_is_refused(sandbox: SandboxHandle) -> None:
    sandbox.add_sub_account("main", "desk", SUB_EMAIL)
    sub_key = sandbox.create_key(exchange="bybit", account="desk", flags=TRADER_FLAGS)
    master = _bybit(sandbox, sandbox.create_key(exchange="bybit", flags=TRADER_FLAGS))
    with pytest.raises(ccxt.PermissionDenied, match='"retCode":10005'):
        master.private_post_v5_user_update_sub_api({"apikey": sub_key["api_key"], "readOnly": 1})
    with pytest.raises(ccxt.PermissionDenied, match="10005"):
        master.private_post_v5_user_delete_sub_api({"apikey": sub_key["api_key"]})
    assert _bybit(sandbox, sub_key).private_get_v5_user_query_api()["result"]["readOnly"] == 0


def test_bybit_master_binds_a_sub_account_keys_ips_then_deletes_it(sandbox: SandboxHandle) -> None:
    sandbox.add_sub_account("main", "desk", SUB_EMAIL)
    sub_key = sandbox.create_key(exchange="bybit", account="desk", flags=TRADER_FLAGS)
    master = _bybit(sandbox, sandbox.create_key(exchange="bybit", flags={"enableWithdrawals": True}))
    sub_here = _bybit(sandbox, sub_key)
    reported = sub_here.private_get_v5_user_query_api()["result"]
    assert reported["isMaster"] is False and reported["parentUid"] != "0"

    updated = master.private_post_v5_user_update_sub_api({"apikey": sub_key["api_key"], "ips": "127.0.0.2",
                                                          "permissions": {"Spot": []}})["result"]
    assert updated["ips"] == ["127.0.0.2"] and updated["readOnly"] == 1
    with pytest.raises(ccxt.ExchangeError, match='"retCode":10010'):
        sub_here.private_get_v5_user_query_api()
    assert _bybit(sandbox, sub_key, "127.0.0.2").private_get_v5_user_query_api()["result"]["ips"] == ["127.0.0.2"]

    # A key that is not one of the master's sub-accounts' keys.
    outsider = sandbox.create_key(exchange="bybit", account="elsewhere")
    with pytest.raises(ccxt.ExchangeError, match='"retCode":141004'):
        master.private_post_v5_user_delete_sub_api({"apikey": outsider["api_key"]})
    assert master.private_post_v5_user_delete_sub_api({"apikey": sub_key["api_key"]})["retCode"] == 0
    with pytest.raises(ccxt.AuthenticationError, match="10003"):
        _bybit(sandbox, sub_key, "127.0.0.2").private_get_v5_user_query_api()


def test_bybit_sub_account_key_manages_itself_only_without_naming_a_key(sandbox: SandboxHandle) -> None:
    sandbox.add_sub_account("main", "desk", SUB_EMAIL)
    sub_key = sandbox.create_key(exchange="bybit", account="desk",
                                 flags={"enableSpotAndMarginTrading": True, "permitsUniversalTransfer": True})
    client = _bybit(sandbox, sub_key)
    with pytest.raises(ccxt.BadRequest, match="10001"):
        client.private_post_v5_user_update_sub_api({"apikey": sub_key["api_key"], "readOnly": 1})
    # update-api is for a master's own key.
    with pytest.raises(ccxt.PermissionDenied, match="10005"):
        client.private_post_v5_user_update_api({"readOnly": 1})
    assert client.private_post_v5_user_update_sub_api({"readOnly": 1})["result"]["readOnly"] == 1
