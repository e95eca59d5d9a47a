"""OKX's master-account control of a sub-account's API key, as a stock ccxt okx client sees it over HTTP: query,
modify (permissions, IP list, label) and delete, who may call them, and their 1 request/s limit.

The sandbox names the OKX sub-account (subAcct) by its sandbox account name ("desk" below), not by its email."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

import ccxt
import httpx
import pytest

from keyguard.exchanges.transport import bound_session
from keyguard.sandbox import SandboxHandle

from .conftest import TRADER_FLAGS

SUB = "desk"


def _okx(sandbox: SandboxHandle, key: dict[str, Any], source_ip: str = "127.0.0.1") -> ccxt.okx:
    return ccxt.okx({"apiKey": key["api_key"], "secret": key["secret"], "password": key["passphrase"],
                     "urls": sandbox.ccxt_urls("okx"), "session": bound_session(source_ip),
                     "enableRateLimit": False, "timeout": 10000})


def _signed_post(sandbox: SandboxHandle, key: dict[str, Any], path: str, body: dict[str, str]) -> httpx.Response:
    """A POST signed as OKX documents it, for what ccxt does not show: the HTTP status."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    payload = json.dumps(body)
    sign = base64.b64encode(hmac.new(key["secret"].encode(), f"{stamp}POST{path}{payload}".encode(),
                                     hashlib.sha256).digest()).decode()
    headers = {"OK-ACCESS-KEY": key["api_key"], "OK-ACCESS-PASSPHRASE": key["passphrase"],
               "OK-ACCESS-TIMESTAMP": stamp, "OK-ACCESS-SIGN": sign, "Content-Type": "application/json"}
    with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.1")) as client:
        return client.post(f"{sandbox.url}/okx{path}", content=payload, headers=headers)


def _next_second(sandbox: SandboxHandle) -> None:
    """Move the sandbox clock past the 1 request/s window of modify-apikey and delete-apikey (well inside OKX's
    30 s timestamp tolerance), instead of sleeping."""
    sandbox.exchange.set_skew(sandbox.exchange.skew_ms + 1001)


def _setup(sandbox: SandboxHandle) -> tuple[dict[str, Any], dict[str, Any]]:
    """A master key on "main" as OKX asks of it (IP-bound, trade permission) and a trading key of its sub-account."""
    sandbox.add_sub_account("main", SUB, "desk@sub.example")
    master = sandbox.create_key(exchange="okx", flags=TRADER_FLAGS, ip_restrict=True, ips=["127.0.0.1"],
                                label="master-admin")
    sub = sandbox.create_key(exchange="okx", account=SUB, flags=TRADER_FLAGS, label="desk-bot")
    return master, sub


def test_master_lists_and_deletes_a_sub_account_key_which_is_refused_at_once(sandbox: SandboxHandle) -> None:
    master_key, sub_key = _setup(sandbox)
    other_sub_key = sandbox.create_key(exchange="okx", account=SUB, label="desk-ro")
    master = _okx(sandbox, master_key)
    sub = _okx(sandbox, sub_key)
    assert sub.private_get_account_config()["data"][0]["perm"] == "read_only,trade"

    listed = master.private_get_users_subaccount_apikey({"subAcct": SUB})
    assert listed["code"] == "0"
    assert [(k["apiKey"], k["label"], k["perm"], k["ip"]) for k in listed["data"]] == [
        (sub_key["api_key"], "desk-bot", "read_only,trade", ""), (other_sub_key["api_key"], "desk-ro", "read_only", "")]
    assert listed["data"][0]["ts"] == str(sub_key["key"]["create_time_ms"])
    narrowed = master.private_get_users_subaccount_apikey({"subAcct": SUB, "apiKey": sub_key["api_key"]})["data"]
    assert [k["apiKey"] for k in narrowed] == [sub_key["api_key"]]

    deleted = master.private_post_users_subaccount_delete_apikey({"subAcct": SUB, "apiKey": sub_key["api_key"]})
    assert deleted == {"code": "0", "msg": "", "data": [{"subAcct": SUB}]}
    with pytest.raises(ccxt.AuthenticationError, match='"code":"50111"'):
        sub.private_get_account_config()
    assert [k["apiKey"] for k in master.private_get_users_subaccount_apikey({"subAcct": SUB})["data"]] == [
        other_sub_key["api_key"]]
    assert master.private_get_users_subaccount_apikey({"subAcct": SUB, "apiKey": sub_key["api_key"]})["data"] == []
    # A deleted key is no longer the sub-account's key.
    _next_second(sandbox)
    with pytest.raises(ccxt.ExchangeError, match='"code":"59506"'):
        master.private_post_users_subaccount_delete_apikey({"subAcct": SUB, "apiKey": sub_key["api_key"]})
    assert _okx(sandbox, other_sub_key).private_get_account_config()["code"] == "0"


def test_master_makes_a_sub_account_key_read_only_and_binds_it_to_another_address(sandbox: SandboxHandle) -> None:
    master_key, sub_key = _setup(sandbox)
    master = _okx(sandbox, master_key)
    ref = {"subAcct": SUB, "apiKey": sub_key["api_key"]}

    modified = master.private_post_users_subaccount_modify_apikey({**ref, "perm": "read_only", "ip": "127.0.0.2",
                                                                   "label": "desk-contained"})
    assert modified["data"] == [{"subAcct": SUB, "label": "desk-contained", "apiKey": sub_key["api_key"],
                                 "perm": "read_only", "ip": "127.0.0.2",
                                 "ts": str(sub_key["key"]["create_time_ms"])}]
    # The new IP list holds from the key's next call: refused from its old address with OKX's IP error...
    with pytest.raises(ccxt.PermissionDenied, match='"code":"50110"'):
        _okx(sandbox, sub_key, "127.0.0.1").private_get_account_config()
    # ...and read-only from the bound one.
    config = _okx(sandbox, sub_key, "127.0.0.2").private_get_account_config()["data"][0]
    assert (config["perm"], config["ip"], config["label"]) == ("read_only", "127.0.0.2", "desk-contained")

    # ip "" unbinds the key; a field not sent is kept (perm stays read_only).
    _next_second(sandbox)
    master.private_post_users_subaccount_modify_apikey({**ref, "ip": ""})
    config = _okx(sandbox, sub_key, "127.0.0.3").private_get_account_config()["data"][0]
    assert (config["perm"], config["ip"], config["label"]) == ("read_only", "", "desk-contained")
    _next_second(sandbox)
    assert master.private_post_users_subaccount_modify_apikey({**ref, "perm": "read_only,trade"})["data"][0][
        "perm"] == "read_only,trade"


def test_a_sub_account_key_an_unrelated_master_or_a_master_key_short_of_okx_terms_is_refused(
    sandbox: SandboxHandle,
) -> None:
    master_key, sub_key = _setup(sandbox)
    ref = {"subAcct": SUB, "apiKey": sub_key["api_key"]}
    delete = "private_post_users_subaccount_delete_apikey"

    # The sub-account's own key (IP-bound, trading) is no master key, for the query as for the changes.
    sub_bound = sandbox.create_key(exchange="okx", account=SUB, flags=TRADER_FLAGS, ip_restrict=True,
                                   ips=["127.0.0.1"])
    with pytest.raises(ccxt.ExchangeError, match='"code":"59500"'):
        getattr(_okx(sandbox, sub_bound), delete)(ref)
    with pytest.raises(ccxt.ExchangeError, match='"code":"59500"'):
        _okx(sandbox, sub_bound).private_get_users_subaccount_apikey({"subAcct": SUB})
    # Another master account's key: "desk" is not one of its sub-accounts.
    unrelated = sandbox.create_key(exchange="okx", account="elsewhere", flags=TRADER_FLAGS, ip_restrict=True,
                                   ips=["127.0.0.1"])
    with pytest.raises(ccxt.ExchangeError, match='"code":"59510"'):
        getattr(_okx(sandbox, unrelated), delete)(ref)
    with pytest.raises(ccxt.ExchangeError, match='"code":"59510"'):
        _okx(sandbox, unrelated).private_post_users_subaccount_modify_apikey({**ref, "perm": "read_only"})
    # The master's key without an IP binding (OKX answers HTTP 403), or without the trade permission.
    unbound = sandbox.create_key(exchange="okx", flags=TRADER_FLAGS)
    with pytest.raises(ccxt.ExchangeError, match='"code":"50035"'):
        getattr(_okx(sandbox, unbound), delete)(ref)
    _next_second(sandbox)
    refused = _signed_post(sandbox, unbound, "/api/v5/users/subaccount/delete-apikey", ref)
    assert (refused.status_code, refused.json()["code"]) == (403, "50035")
    read_only = sandbox.create_key(exchange="okx", ip_restrict=True, ips=["127.0.0.1"])
    _next_second(sandbox)
    with pytest.raises(ccxt.ExchangeError, match='"code":"50120"'):
        getattr(_okx(sandbox, read_only), delete)(ref)
    # Reading the sub-account's keys takes neither ("Permission: Read", no IP binding asked).
    assert len(_okx(sandbox, unbound).private_get_users_subaccount_apikey({"subAcct": SUB})["data"]) == 2
    # The master itself, naming a key that is not the sub-account's (its own), or a sub-account it lacks.
    master = _okx(sandbox, master_key)
    _next_second(sandbox)
    with pytest.raises(ccxt.ExchangeError, match='"code":"59506"'):
        getattr(master, delete)({"subAcct": SUB, "apiKey": master_key["api_key"]})
    _next_second(sandbox)
    with pytest.raises(ccxt.ExchangeError, match='"code":"59510"'):
        getattr(master, delete)({"subAcct": "desk@sub.example", "apiKey": sub_key["api_key"]})

    # None of the refused calls touched the key.
    config = _okx(sandbox, sub_key).private_get_account_config()["data"][0]
    assert (config["perm"], config["ip"]) == ("read_only,trade", "")
    assert master.private_get_account_config()["code"] == "0"


def test_modify_checks_every_field_before_changing_anything(sandbox: SandboxHandle) -> None:
    master_key, sub_key = _setup(sandbox)
    master = _okx(sandbox, master_key)
    modify = master.private_post_users_subaccount_modify_apikey
    ref = {"subAcct": SUB, "apiKey": sub_key["api_key"]}
    refusals = [
        ({"subAcct": SUB}, ccxt.BadRequest, "50014"),
        ({**ref, "perm": "read_only", "ip": "127.0.0.2,not-an-ip"}, ccxt.BadRequest, "51000"),
        ({**ref, "perm": "admin", "ip": "127.0.0.2"}, ccxt.BadRequest, "51000"),
        ({**ref, "perm": "read_only,withdraw"}, ccxt.ExchangeError, "59504"),
        ({**ref, "ip": ",".join(f"10.0.0.{n}" for n in range(1, 22))}, ccxt.ExchangeError, "59503"),
    ]
    for params, error, code in refusals:
        _next_second(sandbox)
        with pytest.raises(error, match=f'"code":"{code}"'):
            modify(params)
    config = _okx(sandbox, sub_key).private_get_account_config()["data"][0]
    assert (config["perm"], config["ip"], config["label"]) == ("read_only,trade", "", "desk-bot")


def test_modify_and_delete_take_one_request_a_second_per_account(sandbox: SandboxHandle) -> None:
    master_key, sub_key = _setup(sandbox)
    spare = sandbox.create_key(exchange="okx", account=SUB, label="desk-spare")
    master = _okx(sandbox, master_key)
    master.private_post_users_subaccount_modify_apikey({"subAcct": SUB, "apiKey": spare["api_key"],
                                                        "perm": "read_only"})
    # Each endpoint has its own limit: the delete right after the modify goes through.
    master.private_post_users_subaccount_delete_apikey({"subAcct": SUB, "apiKey": spare["api_key"]})
    # The account's second delete within the second is refused (HTTP 429), whichever of its keys sends it.
    second_master = sandbox.create_key(exchange="okx", flags=TRADER_FLAGS, ip_restrict=True, ips=["127.0.0.1"])
    with pytest.raises(ccxt.RateLimitExceeded, match='"code":"50011"'):
        _okx(sandbox, second_master).private_post_users_subaccount_delete_apikey(
            {"subAcct": SUB, "apiKey": sub_key["api_key"]})
    limited = _signed_post(sandbox, master_key, "/api/v5/users/subaccount/delete-apikey",
                           {"subAcct": SUB, "apiKey": sub_key["api_key"]})
    assert (limited.status_code, limited.json()) == (429, {"code": "50011", "msg": "Too Many Requests", "data": []})
    assert _okx(sandbox, sub_key).private_get_account_config()["code"] == "0"

    _next_second(sandbox)
    master.private_post_users_subaccount_delete_apikey({"subAcct": SUB, "apiKey": sub_key["api_key"]})
    with pytest.raises(ccxt.AuthenticationError, match="50111"):
        _okx(sandbox, sub_key).private_get_account_config()
