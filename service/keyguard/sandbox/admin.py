"""Admin API: loopback-only, its own bearer token; it shows a key's secret once, in the create response. ED25519 and
RSA keys have no secret: the admin gives the client's public key, and the sandbox never holds the private key."""

from __future__ import annotations

import ipaddress
import secrets
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel

from keyguard.sandbox.binance import render_order
from keyguard.sandbox.state import Fault, KeySpec, KeySpecError, SandboxExchange


def _exchange(request: Request) -> SandboxExchange:
    return request.app.state.exchange


def require_admin(request: Request) -> None:
    host = request.client.host if request.client else ""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise HTTPException(403, "the sandbox admin API answers loopback clients only")
    expected = request.app.state.admin_token
    given = request.headers.get("Authorization", "")
    if not secrets.compare_digest(given.encode(), f"Bearer {expected}".encode()):
        raise HTTPException(401, "missing or wrong admin bearer token (Authorization: Bearer <token>)")


router = APIRouter(prefix="/admin", dependencies=[Depends(require_admin)])


class CreatedKey(BaseModel):
    api_key: str
    # None for ED25519 and RSA keys: their holder signs with a private key the sandbox never sees.
    secret: str | None
    passphrase: str | None = None
    key: dict[str, Any]


class BalanceSet(BaseModel):
    account: str = "main"
    asset: str
    free: float


class PriceSet(BaseModel):
    symbol: str
    price: float


class ClockSet(BaseModel):
    skew_ms: int


class SubAccountSpec(BaseModel):
    """Make `account` a sub-account of `master`; Binance names it by `email` in the master's sub-account calls."""

    master: str
    account: str
    email: str


class AddressSpec(BaseModel):
    """An address filed in an account's withdrawal address book, as its owner (or an intruder) would in the web UI.
    network defaults to the coin's own (the sandbox lists one network per coin, named after the coin)."""

    account: str = "main"
    coin: str
    address: str
    network: str | None = None
    name: str = ""
    tag: str = ""
    white_status: bool = False


def _known(exchange: SandboxExchange, api_key: str) -> None:
    if api_key not in exchange.keys:
        raise HTTPException(404, "no such key in the sandbox")


@router.post("/keys", status_code=201)
def create_key(spec: KeySpec, exchange: SandboxExchange = Depends(_exchange)) -> CreatedKey:
    try:
        key = exchange.create_key(spec)
    except KeySpecError as exc:
        raise HTTPException(400, str(exc)) from None
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    return CreatedKey(api_key=key.api_key, secret=key.secret or None, passphrase=key.passphrase,
                      key=key.public_view())


@router.get("/keys")
def list_keys(exchange: SandboxExchange = Depends(_exchange)) -> list[dict[str, Any]]:
    with exchange.lock:
        return [k.public_view() for k in exchange.keys.values()]


@router.get("/keys/{api_key}")
def show_key(api_key: str, exchange: SandboxExchange = Depends(_exchange)) -> dict[str, Any]:
    _known(exchange, api_key)
    return exchange.keys[api_key].public_view()


@router.patch("/keys/{api_key}")
def alter_key(api_key: str, spec: KeySpec, exchange: SandboxExchange = Depends(_exchange)) -> dict[str, Any]:
    _known(exchange, api_key)
    try:
        return exchange.alter_key(api_key, spec).public_view()
    except KeySpecError as exc:
        raise HTTPException(400, str(exc)) from None
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None


@router.delete("/keys/{api_key}")
def revoke_key(api_key: str, exchange: SandboxExchange = Depends(_exchange)) -> dict[str, Any]:
    _known(exchange, api_key)
    exchange.revoke_key(api_key)
    return exchange.keys[api_key].public_view()


@router.put("/balances")
def set_balance(body: BalanceSet, exchange: SandboxExchange = Depends(_exchange)) -> dict[str, Any]:
    exchange.set_balance(body.account, body.asset, body.free)
    return {"account": body.account, "balances": dict(exchange.balances[body.account])}


@router.put("/prices")
def set_price(body: PriceSet, exchange: SandboxExchange = Depends(_exchange)) -> dict[str, Any]:
    try:
        exchange.set_price(body.symbol, body.price)
    except KeyError:
        raise HTTPException(404, f"unknown symbol {body.symbol}; listed: {sorted(exchange.symbols)}") from None
    return {"symbol": body.symbol, "price": body.price}


@router.put("/faults")
def set_faults(faults: list[Fault], exchange: SandboxExchange = Depends(_exchange)) -> list[Fault]:
    exchange.set_faults(faults)
    return exchange.faults


@router.delete("/faults")
def clear_faults(exchange: SandboxExchange = Depends(_exchange)) -> list[Fault]:
    exchange.set_faults([])
    return []


@router.put("/clock")
def set_clock(body: ClockSet, exchange: SandboxExchange = Depends(_exchange)) -> ClockSet:
    exchange.set_skew(body.skew_ms)
    return body


@router.get("/orders")
def list_orders(account: str = "main", exchange: SandboxExchange = Depends(_exchange)) -> list[dict[str, Any]]:
    return [render_order(o, query=True) for o in exchange.orders_of(account)]


@router.post("/sub-accounts", status_code=201)
def add_sub_account(body: SubAccountSpec, exchange: SandboxExchange = Depends(_exchange)) -> dict[str, Any]:
    try:
        return exchange.add_sub_account(body.master, body.account, body.email).public_view()
    except ValueError as exc:
        raise HTTPException(409, str(exc)) from None


@router.get("/sub-accounts")
def list_sub_accounts(exchange: SandboxExchange = Depends(_exchange)) -> list[dict[str, Any]]:
    with exchange.lock:
        return [s.public_view() for s in exchange.sub_accounts.values()]


@router.post("/addresses", status_code=201)
def add_address(body: AddressSpec, exchange: SandboxExchange = Depends(_exchange)) -> dict[str, Any]:
    try:
        return exchange.add_withdraw_address(body.account, body.coin, body.address, body.network, body.name,
                                             body.tag, body.white_status)
    except ValueError as exc:
        raise HTTPException(409, str(exc)) from None
