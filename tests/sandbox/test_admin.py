"""The admin API: its own token, key life cycle, and a secret that is shown once and never again."""

from __future__ import annotations

import asyncio

import ccxt
import httpx
import pytest

from keyguard.sandbox import SandboxHandle

from .conftest import BinanceFactory


def test_admin_api_refuses_requests_without_its_token(sandbox: SandboxHandle) -> None:
    assert httpx.get(f"{sandbox.admin_url}/keys").status_code == 401
    wrong = httpx.get(f"{sandbox.admin_url}/keys", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    # The exchange API key cannot stand in for the admin token either.
    key = sandbox.create_key()
    assert httpx.get(f"{sandbox.admin_url}/keys", headers={"Authorization": f"Bearer {key['api_key']}"}
                     ).status_code == 401


def test_secret_is_returned_at_creation_and_never_again(sandbox: SandboxHandle) -> None:
    created = sandbox.create_key(flags={"enableWithdrawals": True}, ip_restrict=True, ips=["127.0.0.1"])
    secret = created["secret"]
    assert len(secret) == 64
    with sandbox.admin() as admin:
        responses = [
            admin.get("/keys"),
            admin.get(f"/keys/{created['api_key']}"),
            admin.patch(f"/keys/{created['api_key']}", json={"flags": {"enableWithdrawals": False}}),
            admin.delete(f"/keys/{created['api_key']}"),
        ]
    for response in responses:
        assert response.status_code == 200
        assert secret not in response.text
        assert created["api_key"] in response.text


def test_altered_flags_and_ip_list_are_what_the_exchange_reports(
    sandbox: SandboxHandle, binance: BinanceFactory
) -> None:
    key = sandbox.create_key()
    client = binance(key)
    assert client.sapi_get_account_apirestrictions()["enableWithdrawals"] is False
    with sandbox.admin() as admin:
        admin.patch(f"/keys/{key['api_key']}", json={"flags": {"enableWithdrawals": True}, "ip_restrict": True,
                                                     "ips": ["127.0.0.1"]}).raise_for_status()
    after = client.sapi_get_account_apirestrictions()
    assert after["enableWithdrawals"] is True and after["ipRestrict"] is True


def test_unknown_permission_flag_is_rejected_with_the_known_names(sandbox: SandboxHandle) -> None:
    with sandbox.admin() as admin:
        response = admin.post("/keys", json={"flags": {"enableEverything": True}})
    assert response.status_code == 422
    assert "enableEverything" in response.text and "enableWithdrawals" in response.text


def test_prices_and_balances_set_by_admin_are_what_clients_see(
    sandbox: SandboxHandle, binance: BinanceFactory
) -> None:
    client = binance(sandbox.create_key(account="desk-2"))
    with sandbox.admin() as admin:
        admin.put("/prices", json={"symbol": "ETHUSDT", "price": 2500.5}).raise_for_status()
        admin.put("/balances", json={"account": "desk-2", "asset": "USDT", "free": 1234.5}).raise_for_status()
        assert admin.put("/prices", json={"symbol": "DOGEUSDT", "price": 1}).status_code == 404
    assert client.public_get_ticker_price({"symbol": "ETHUSDT"})["price"] == "2500.50000000"
    assert client.fetch_balance()["USDT"]["free"] == 1234.5


def test_admin_order_listing_shows_what_really_executed(sandbox: SandboxHandle, binance: BinanceFactory) -> None:
    client = binance(sandbox.create_key(flags={"enableSpotAndMarginTrading": True}))
    sandbox.set_faults({"endpoint": "POST /api/v3/order", "kind": "reset", "when": "after", "times": 1})
    with pytest.raises(ccxt.NetworkError):
        client.create_order("BTC/USDT", "limit", "buy", 0.01, 59000, {"newClientOrderId": "seen-by-admin"})
    with sandbox.admin() as admin:
        orders = admin.get("/orders", params={"account": "main"}).json()
    assert [(o["clientOrderId"], o["status"]) for o in orders] == [("seen-by-admin", "NEW")]


def test_admin_api_refuses_non_loopback_clients_even_with_the_token() -> None:
    from keyguard.sandbox.app import create_app

    app = create_app(admin_token="t0ken-for-test")
    headers = {"Authorization": "Bearer t0ken-for-test"}

    async def get_keys_from(host: str) -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=(host, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as client:
            return await client.get("/admin/keys", headers=headers)

    refused = asyncio.run(get_keys_from("203.0.113.7"))
    allowed = asyncio.run(get_keys_from("127.0.0.1"))
    assert refused.status_code == 403 and "loopback" in refused.text
    assert allowed.status_code == 200
