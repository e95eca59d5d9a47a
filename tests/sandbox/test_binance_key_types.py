"""Binance's three API key types on the sandbox: Ed25519 and RSA keys are created from the client's public key and
verified as Binance specifies, stock clients sign with them unchanged, and the sandbox never holds a private key.
Also Binance's rule that only a key restricted to trusted IPs may withdraw, and the explicit way around it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import pytest
from binance.client import Client as PythonBinanceClient
from binance_sdk_spot.rest_api.models import NewOrderSideEnum, NewOrderTimeInForceEnum, NewOrderTypeEnum
from binance_sdk_spot.spot import ConfigurationRestAPI, Spot
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from keyguard.errors import ConfigError
from keyguard.sandbox import SandboxHandle

from .conftest import LOOPBACK_ONLY, TRADER_FLAGS, BinanceFactory

PrivateKey = ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey
# A client's "read the account's USDT, place a limit buy" run: the USDT it saw and the order status it got.
Run = Callable[[], tuple[float, str]]
LIMIT_BUY = {"symbol": "BTCUSDT", "quantity": "0.001", "price": "59000"}


def new_private_key(key_type: str, bits: int = 2048) -> PrivateKey:
    if key_type == "ED25519":
        return ed25519.Ed25519PrivateKey.generate()
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def private_pem(private: PrivateKey) -> str:
    return private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption()).decode()


def public_pem(private: PrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return private.public_key().public_bytes(serialization.Encoding.PEM,
                                             serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def pem_body(pem: str) -> str:
    """The base64 body of a PEM block, without its armour lines: what must never leave its holder."""
    return "".join(line for line in pem.splitlines() if not line.startswith("-----"))


def sign(private: PrivateKey, payload: str) -> str:
    """Binance's recipe: sign the payload (Ed25519, or RSASSA-PKCS1-v1_5 with SHA-256), base64 the signature."""
    if isinstance(private, ed25519.Ed25519PrivateKey):
        raw = private.sign(payload.encode())
    else:
        raw = private.sign(payload.encode(), padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(raw).decode()


def signed_get(sandbox: SandboxHandle, api_key: str, path: str, params: dict[str, str],
               signature_of: Callable[[str], str]) -> httpx.Response:
    """A GET whose signature parameter is whatever `signature_of(payload)` gives, sent percent-encoded."""
    query = urlencode({**params, "timestamp": str(int(time.time() * 1000))})
    return httpx.get(f"{sandbox.url}{path}?{query}&signature={quote(signature_of(query), safe='')}",
                     headers={"X-MBX-APIKEY": api_key})


def refusal(response: httpx.Response) -> tuple[int, int]:
    return response.status_code, response.json()["code"]


# -- stock clients sign with Ed25519 and RSA keys -------------------------------------------------------------
def _ccxt(sandbox: SandboxHandle, binance: BinanceFactory, api_key: str, private: str) -> Run:
    # ccxt takes the PEM private key as its `secret` and picks Ed25519 or RSA from its length.
    client = binance({"api_key": api_key}, secret=private)

    def run() -> tuple[float, str]:
        usdt = client.fetch_balance()["USDT"]["free"]
        order = client.create_order("BTC/USDT", "limit", "buy", 0.001, 59000)
        return usdt, order["info"]["status"]

    return run


def _python_binance(sandbox: SandboxHandle, binance: BinanceFactory, api_key: str, private: str) -> Run:
    class AtSandbox(PythonBinanceClient):
        API_URL = f"{sandbox.url}/api"

    client = AtSandbox(api_key, private_key=private)

    def run() -> tuple[float, str]:
        balances = {b["asset"]: float(b["free"]) for b in client.get_account()["balances"]}
        order = client.order_limit_buy(**LIMIT_BUY)
        return balances["USDT"], order["status"]

    return run


def _binance_sdk_spot(sandbox: SandboxHandle, binance: BinanceFactory, api_key: str, private: str) -> Run:
    client = Spot(config_rest_api=ConfigurationRestAPI(api_key=api_key, private_key=private, base_path=sandbox.url,
                                                       timeout=10000, retries=0))

    def run() -> tuple[float, str]:
        account = client.rest_api.get_account().data()
        balances = {b.asset: float(b.free or 0) for b in account.balances or []}
        order = client.rest_api.new_order(symbol="BTCUSDT", side=NewOrderSideEnum.BUY, type=NewOrderTypeEnum.LIMIT,
                                          time_in_force=NewOrderTimeInForceEnum.GTC, quantity=0.001,
                                          price=59000.0).data()
        return balances["USDT"], str(order.status)

    return run


CLIENTS = {"ccxt": _ccxt, "python-binance": _python_binance, "binance-sdk-spot": _binance_sdk_spot}


@pytest.mark.parametrize("client_name", sorted(CLIENTS))
@pytest.mark.parametrize("key_type", ["ED25519", "RSA"])
def test_a_key_made_from_a_public_key_reads_the_account_and_trades_through_a_stock_client(
    sandbox: SandboxHandle, binance: BinanceFactory, key_type: str, client_name: str
) -> None:
    private = new_private_key(key_type)
    created = sandbox.create_key(key_type=key_type, public_key=public_pem(private), flags=TRADER_FLAGS)
    assert created["secret"] is None and created["key"]["key_type"] == key_type

    usdt, status = CLIENTS[client_name](sandbox, binance, created["api_key"], private_pem(private))()

    assert usdt == 100000
    assert status.endswith("NEW")
    (order,) = sandbox.exchange.orders_of("main")
    assert (order.symbol, order.side, order.price, order.orig_qty) == ("BTCUSDT", "BUY", 59000, 0.001)


# -- signatures the sandbox refuses -----------------------------------------------------------------------
@pytest.mark.parametrize("key_type", ["ED25519", "RSA"])
def test_a_signature_by_another_key_a_changed_payload_or_a_changed_case_is_1022(
    sandbox: SandboxHandle, key_type: str
) -> None:
    private = new_private_key(key_type)
    api_key = sandbox.create_key(key_type=key_type, public_key=public_pem(private))["api_key"]
    stranger = new_private_key(key_type)

    def account(signature_of: Callable[[str], str]) -> httpx.Response:
        return signed_get(sandbox, api_key, "/api/v3/account", {}, signature_of)

    assert account(lambda payload: sign(private, payload)).status_code == 200
    invalid = (400, -1022)
    assert refusal(account(lambda payload: sign(stranger, payload))) == invalid
    assert refusal(account(lambda payload: sign(private, payload + "&omitZeroBalances=true"))) == invalid
    # Unlike HMAC's hex, an Ed25519 or RSA signature is case-sensitive (Binance: Signature Case Sensitivity).
    assert refusal(account(lambda payload: sign(private, payload).swapcase())) == invalid
    assert refusal(account(lambda payload: "not base64 at all")) == invalid
    # The signature travels percent-encoded: sent raw, its '+' reads as a space and it no longer verifies.
    stamp = str(int(time.time() * 1000))
    query, raw = next((q, raw) for window in range(1000, 6000)
                      if "+" in (raw := sign(private, q := f"recvWindow={window}&timestamp={stamp}")))
    response = httpx.get(f"{sandbox.url}/api/v3/account?{query}&signature={raw}", headers={"X-MBX-APIKEY": api_key})
    assert refusal(response) == invalid
    percent_encoded = f"{sandbox.url}/api/v3/account?{query}&signature={quote(raw, safe='')}"
    assert httpx.get(percent_encoded, headers={"X-MBX-APIKEY": api_key}).status_code == 200


def test_an_ed25519_key_does_not_take_an_hmac_signature_by_its_public_key(sandbox: SandboxHandle) -> None:
    private = new_private_key("ED25519")
    pem = public_pem(private)
    api_key = sandbox.create_key(key_type="ED25519", public_key=pem)["api_key"]
    signed = signed_get(sandbox, api_key, "/api/v3/account", {}, lambda payload: sign(private, payload))
    assert signed.status_code == 200
    # The public key is public: an HMAC keyed with it proves nothing.
    response = signed_get(sandbox, api_key, "/api/v3/account", {},
                          lambda payload: hmac.new(pem.encode(), payload.encode(), hashlib.sha256).hexdigest())
    assert refusal(response) == (400, -1022)


# -- the admin API: public keys in, never a private key out ----------------------------------------------------
def test_ed25519_without_a_public_key_is_a_400_that_names_the_field(sandbox: SandboxHandle) -> None:
    with sandbox.admin() as admin:
        response = admin.post("/keys", json={"key_type": "ED25519"})
        assert response.status_code == 400
        assert response.json()["detail"].startswith("public_key: an ED25519 key needs the client's public key")
        assert admin.get("/keys").json() == []


@pytest.fixture(scope="module")
def sample_public_keys() -> dict[str, str]:
    """Public keys of each kind, made once (an RSA key takes a while to generate)."""
    return {"ED25519-PUBLIC": public_pem(new_private_key("ED25519")),
            "RSA-PUBLIC": public_pem(new_private_key("RSA")),
            "RSA-3072-PUBLIC": public_pem(new_private_key("RSA", bits=3072)),
            "EC-PUBLIC": public_pem(ec.generate_private_key(ec.SECP256R1()))}


@pytest.mark.parametrize(("spec", "field", "says"), [
    ({"key_type": "DSA"}, "key_type", "'DSA' is not a Binance API key type; one of ['HMAC_SHA256', 'ED25519', 'RSA']"),
    ({"key_type": "ED25519", "public_key": "not a key"}, "public_key", "does not parse as a PEM public key"),
    ({"key_type": "RSA", "public_key": "ED25519-PUBLIC"}, "public_key",
     "is an ED25519 public key, but key_type is RSA"),
    ({"key_type": "ED25519", "public_key": "RSA-PUBLIC"}, "public_key", "is an RSA (2048 bits) public key"),
    ({"key_type": "ED25519", "public_key": "EC-PUBLIC"}, "public_key",
     "is an EC (secp256r1) public key, but key_type is ED25519"),
    ({"key_type": "RSA", "public_key": "RSA-3072-PUBLIC"}, "public_key",
     "is a 3072-bit RSA key; Binance takes RSA keys of 2048 or 4096 bits"),
    ({"key_type": "ED25519", "public_key": "ED25519-PUBLIC", "secret": "s3cr3t"}, "secret", "has no secret"),
    ({"public_key": "ED25519-PUBLIC"}, "public_key", "an HMAC_SHA256 key has no public key"),
    ({"exchange": "okx", "key_type": "ED25519", "public_key": "ED25519-PUBLIC"}, "key_type", "Binance face only"),
])
def test_a_key_spec_the_sandbox_cannot_honour_is_a_400_naming_the_field(
    sandbox: SandboxHandle, sample_public_keys: dict[str, str], spec: dict[str, Any], field: str, says: str
) -> None:
    body = {name: sample_public_keys.get(value, value) if name == "public_key" else value
            for name, value in spec.items()}
    with sandbox.admin() as admin:
        response = admin.post("/keys", json=body)
        assert response.status_code == 400
        detail = response.json()["detail"]
        assert detail.startswith(f"{field}: ") and says in detail
        assert admin.get("/keys").json() == []


def test_a_private_key_sent_as_the_public_key_is_refused_and_never_echoed(sandbox: SandboxHandle) -> None:
    leaked = private_pem(new_private_key("ED25519"))
    with sandbox.admin() as admin:
        response = admin.post("/keys", json={"key_type": "ED25519", "public_key": leaked})
        assert response.status_code == 400
        assert response.json()["detail"].startswith("public_key: is a private key; send only the public half")
        assert pem_body(leaked) not in response.text
        assert admin.get("/keys").json() == []
    with pytest.raises(ConfigError, match="public_key: is a private key"):
        sandbox.create_key(key_type="ED25519", public_key=leaked)


@pytest.mark.parametrize("key_type", ["ED25519", "RSA"])
def test_the_sandbox_holds_and_shows_only_the_public_key(sandbox: SandboxHandle, key_type: str) -> None:
    private = new_private_key(key_type)
    secret_part = pem_body(private_pem(private))
    created = sandbox.create_key(key_type=key_type, public_key=public_pem(private))
    api_key = created["api_key"]
    assert created["secret"] is None
    with sandbox.admin() as admin:
        shown = [admin.get("/keys"), admin.get(f"/keys/{api_key}"),
                 admin.patch(f"/keys/{api_key}", json={"label": "bot"}), admin.delete(f"/keys/{api_key}")]
        changing = admin.patch(f"/keys/{api_key}", json={"public_key": public_pem(new_private_key(key_type))})
    for response in shown:
        assert response.status_code == 200
        assert secret_part not in response.text
    view = shown[1].json()
    assert view["key_type"] == key_type
    assert pem_body(view["public_key"]) == pem_body(public_pem(private))
    # A key's material is fixed at creation, as on Binance: another public key is another key.
    assert changing.status_code == 400 and changing.json()["detail"].startswith("public_key: is fixed")
    stored = sandbox.exchange.keys[api_key]
    assert stored.secret == "" and secret_part not in repr(stored)


def test_an_hmac_key_reports_its_type_and_no_public_key(sandbox: SandboxHandle) -> None:
    created = sandbox.create_key()
    assert created["key"]["key_type"] == "HMAC_SHA256" and created["key"]["public_key"] is None
    assert len(created["secret"]) == 64


# -- withdrawals only from trusted IPs -------------------------------------------------------------------------
WITHDRAW = {"enableWithdrawals": True}


def test_a_withdraw_key_without_an_ip_restriction_is_refused_at_creation(sandbox: SandboxHandle) -> None:
    with sandbox.admin() as admin:
        response = admin.post("/keys", json={"flags": WITHDRAW})
        assert response.status_code == 400
        detail = response.json()["detail"]
        assert detail.startswith("flags.enableWithdrawals: You must apply the IP Access Restriction filter")
        assert "ip_restrict" in detail and "unsafe_unrestricted_withdraw" in detail
        # A list of IPs without the restriction switched on restricts nothing.
        assert admin.post("/keys", json={"flags": WITHDRAW, "ips": ["127.0.0.1"]}).status_code == 400
        assert admin.get("/keys").json() == []


def test_a_restricted_withdraw_key_withdraws(sandbox: SandboxHandle, binance: BinanceFactory) -> None:
    created = sandbox.create_key(flags=WITHDRAW, **LOOPBACK_ONLY)
    assert created["key"]["unsafe_unrestricted_withdraw"] is False
    client = binance(created)
    assert client.sapi_post_capital_withdraw_apply({"coin": "USDT", "address": "TXcold", "amount": "5"})["id"]
    restrictions = client.sapi_get_account_apirestrictions()
    assert restrictions["enableWithdrawals"] is True and restrictions["ipRestrict"] is True


def test_an_unsafe_unrestricted_withdraw_key_is_made_only_when_asked_and_says_so(
    sandbox: SandboxHandle, binance: BinanceFactory
) -> None:
    created = sandbox.create_key(flags=WITHDRAW, unsafe_unrestricted_withdraw=True)
    assert created["key"]["unsafe_unrestricted_withdraw"] is True and created["key"]["ip_restrict"] is False
    client = binance(created)
    assert client.sapi_post_capital_withdraw_apply({"coin": "USDT", "address": "TXcold", "amount": "5"})["id"]
    assert client.sapi_get_account_apirestrictions()["ipRestrict"] is False
    # Other exchanges' faces do not carry Binance's rule.
    assert sandbox.create_key(exchange="okx", flags=WITHDRAW)["key"]["unsafe_unrestricted_withdraw"] is False


def test_changing_a_key_so_it_could_withdraw_from_anywhere_is_refused_unless_asked(sandbox: SandboxHandle) -> None:
    restricted = sandbox.create_key(flags=WITHDRAW, **LOOPBACK_ONLY)["api_key"]
    open_key = sandbox.create_key()["api_key"]
    with sandbox.admin() as admin:
        lifted = admin.patch(f"/keys/{restricted}", json={"ip_restrict": False})
        widened = admin.patch(f"/keys/{open_key}", json={"flags": WITHDRAW})
        for response in (lifted, widened):
            assert response.status_code == 400
            assert response.json()["detail"].startswith("flags.enableWithdrawals: You must apply the IP Access")
        # Refused whole: neither key changed.
        assert admin.get(f"/keys/{restricted}").json()["ip_restrict"] is True
        assert admin.get(f"/keys/{open_key}").json()["flags"]["enableWithdrawals"] is False
        # Dropping withdrawals while lifting the restriction is fine; so is asking for the unsafe key.
        both = admin.patch(f"/keys/{restricted}", json={"ip_restrict": False, "flags": {"enableWithdrawals": False}})
        assert both.status_code == 200 and both.json()["ip_restrict"] is False
        asked = admin.patch(f"/keys/{open_key}", json={"flags": WITHDRAW, "unsafe_unrestricted_withdraw": True})
        assert asked.status_code == 200 and asked.json()["unsafe_unrestricted_withdraw"] is True


def test_a_master_cannot_lift_the_ip_restriction_of_a_sub_account_withdraw_key(sandbox: SandboxHandle) -> None:
    """Through Binance's own key-management API the rule holds too: the change is refused and nothing changes."""
    sandbox.add_sub_account("main", "desk", "desk@sub.example")
    master_private = new_private_key("ED25519")
    master = sandbox.create_key(key_type="ED25519", public_key=public_pem(master_private), flags=TRADER_FLAGS)
    sub = sandbox.create_key(account="desk", flags=WITHDRAW, ip_restrict=True, ips=["127.0.0.1", "10.1.2.3"])
    params = {"email": "desk@sub.example", "subAccountApiKey": sub["api_key"], "status": "1"}
    query = urlencode({**params, "timestamp": str(int(time.time() * 1000))})
    response = httpx.post(f"{sandbox.url}/sapi/v2/sub-account/subAccountApi/ipRestriction?{query}"
                          f"&signature={quote(sign(master_private, query), safe='')}",
                          headers={"X-MBX-APIKEY": master["api_key"]})
    assert refusal(response) == (400, -1130)
    assert "IP Access Restriction" in response.json()["msg"]
    key = sandbox.exchange.keys[sub["api_key"]]
    assert key.ip_restrict is True and key.ips == ["127.0.0.1", "10.1.2.3"]
