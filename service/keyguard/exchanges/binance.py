"""Binance spot: GET /sapi/v1/account/apiRestrictions for flags, ipRestrict and createTime; the IP list is not
reported, so the binding is verified by the probe. Every call goes through the one Binance client
(keyguard.exchanges.binance_client), one per source address, charged to that address's shared budget."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from keyguard.errors import ExchangeError
from keyguard.exchanges.base import Credentials, ExchangeAdapter, KeyDeclaration, record_permissions
from keyguard.exchanges.binance_client import BinanceSpotClient
from keyguard.exchanges.budget import SharedRateLimiter
from keyguard.exchanges.errors import MalformedResponse
from keyguard.exchanges.keystate import KeyState, Permissions, from_ms, permissions_from_flags
from keyguard.redact import redact_text

if TYPE_CHECKING:
    from keyguard.worker.retry import RetryPolicy

log = logging.getLogger(__name__)

BINANCE_URL = "https://api.binance.com"
NON_FLAG_FIELDS = ("ipRestrict", "createTime", "tradingAuthorityExpirationTime")
# Binance's own default receive window for signed calls is 5 s; 10 s (ccxt's) tolerates a slower host clock.
RECV_WINDOW_MS = 10_000


def binance_permissions(flags: dict[str, Any]) -> Permissions:
    """The permission classes the key's flags grant, by the rules' own map (data.lib.raw_permission_flags)."""
    return permissions_from_flags("binance", flags)


def read_key_permissions(client: BinanceSpotClient, retry: RetryPolicy) -> dict[str, bool | None] | None:
    """What the exchange says the client's key may do (apiRestrictions); None, which the rules treat as unknown
    (never as safe), when it cannot be read."""
    from keyguard.worker.retry import retry_data_request  # the worker's module imports this package

    try:
        flags = retry_data_request(
            lambda: client.request("GET", "/sapi/v1/account/apiRestrictions", signed=True), retry)
    except ExchangeError as exc:
        log.warning("key permissions could not be read: %s", exc)
        return None
    return binance_permissions(flags).model_dump()


class BinanceAdapter(ExchangeAdapter[BinanceSpotClient]):
    exchange_id = "binance"
    probe_endpoint = ("GET", "/sapi/v1/account/apiRestrictions")

    def __init__(
        self,
        credentials: Credentials,
        *,
        base_url: str = BINANCE_URL,
        source_ip: str | None = None,
        limiter: SharedRateLimiter | None = None,
        timeout_ms: int = 10000,
        probe_limiter: SharedRateLimiter | None = None,
    ):
        super().__init__(credentials, source_ip=source_ip, limiter=limiter, timeout_ms=timeout_ms,
                         probe_limiter=probe_limiter)
        self.base_url = base_url.rstrip("/")
        self._clients: dict[str | None, BinanceSpotClient] = {}
        self._clients_lock = threading.Lock()

    # -- clients --------------------------------------------------------------------------------------------
    def client(self, source_ip: str | None) -> BinanceSpotClient:
        """This key's client leaving from `source_ip`, kept for the adapter's life: from the host it charges the
        host's budget, from any other address that address's (the probe's, or this adapter's own)."""
        with self._clients_lock:
            client = self._clients.get(source_ip)
            if client is None:
                limiter = (self.limiter if source_ip == self.source_ip
                           else self.probe_limiter or self.own_limiter(source_ip))
                client = self._clients[source_ip] = BinanceSpotClient(
                    self.base_url, self.credentials.api_key, self.credentials.secret.get_secret_value(), limiter,
                    timeout_s=self.timeout_ms / 1000, recv_window_ms=RECV_WINDOW_MS, source_address=source_ip)
            return client

    @property
    def host_client(self) -> BinanceSpotClient:
        return self.client(self.source_ip)

    def probe_client(self, source_ip: str) -> BinanceSpotClient:
        return self.client(source_ip)

    def close(self) -> None:
        with self._clients_lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()

    # -- calls ----------------------------------------------------------------------------------------------
    def send(self, client: BinanceSpotClient, method: str, path: str, params: dict[str, Any] | None = None, *,
             signed: bool = True) -> Any:
        """One call within the check's deadline: the wait for budget and for the answer both end by it."""
        left_s = self.time_left_s(method, path)
        timeout_s = self.timeout_ms / 1000 if left_s is None else max(0.001, min(self.timeout_ms / 1000, left_s))
        body = client.request(method, path, params, signed=signed, deadline_s=left_s, timeout_s=timeout_s)
        if (method, path) == self.probe_endpoint and client is self.host_client:
            self._host_probe_ok = True
        return body

    def send_for_object(self, method: str, path: str, params: dict[str, Any] | None = None, *,
                        signed: bool = True, client: BinanceSpotClient | None = None) -> dict[str, Any]:
        """As `send` (from the host unless `client` says otherwise), for the endpoints that answer a JSON object."""
        body = self.send(client or self.host_client, method, path, params, signed=signed)
        if not isinstance(body, dict):
            raise MalformedResponse(f"binance {method} {path} answered with a body that is not a JSON object: "
                                    f"{redact_text(str(body))[:120]!r}")
        return body

    def send_for_rows(self, method: str, path: str, params: dict[str, Any] | None = None) -> list[Any]:
        """As `send` from the host, for the endpoints that answer a JSON array (allOrders, withdraw history)."""
        body = self.send(self.host_client, method, path, params)
        if not isinstance(body, list):
            raise MalformedResponse(f"binance {method} {path} answered with a body that is not a JSON array: "
                                    f"{redact_text(str(body))[:120]!r}")
        return body

    # -- key inspection -------------------------------------------------------------------------------------
    def server_time_ms(self) -> int:
        body = self.send_for_object("GET", "/api/v3/time", signed=False)
        try:
            return int(body["serverTime"])
        except (KeyError, TypeError, ValueError):
            raise MalformedResponse("binance GET /api/v3/time: no integer serverTime in the answer") from None

    def exchange_info(self, symbol: str = "BTCUSDT") -> dict[str, Any]:
        """The published limits (rateLimits) with one symbol's filters: weight 20, not the whole market's."""
        return self.send_for_object("GET", "/api/v3/exchangeInfo", {"symbol": symbol}, signed=False)

    def api_restrictions(self, client: BinanceSpotClient | None = None) -> dict[str, Any]:
        """The key's own flags, ipRestrict and createTime, as the exchange reports them now."""
        return self.send_for_object(*self.probe_endpoint, client=client)

    def probe_call(self, client: BinanceSpotClient) -> dict[str, Any]:
        return self.api_restrictions(client)

    def read_key(self, state: KeyState, declared: KeyDeclaration) -> None:
        body = self.api_restrictions()
        if not isinstance(body.get("ipRestrict"), bool) or not isinstance(body.get("enableWithdrawals"), bool):
            raise MalformedResponse("binance GET /sapi/v1/account/apiRestrictions: ipRestrict or enableWithdrawals "
                                    "missing or not a boolean")
        flags = {k: v for k, v in body.items() if k not in NON_FLAG_FIELDS and isinstance(v, bool)}
        record_permissions(state, flags, binance_permissions(flags))
        state.ip_restricted = body["ipRestrict"]
        state.created_at = from_ms(body.get("createTime"))
        state.expires_at = from_ms(body.get("tradingAuthorityExpirationTime"))
        state.sources.update({"ip_restricted": "reported", "created_at": "reported"})
        if declared.allowed_ips:
            state.sources["allowed_ips"] = "declared"

    # -- activity (foreign-activity detection, evidence) --------------------------------------------------------
    TRANSFER_TYPES: ClassVar[tuple[str, ...]] = (
        "MAIN_FUNDING", "MAIN_UMFUTURE", "MAIN_CMFUTURE", "MAIN_MARGIN", "MAIN_OPTION", "MAIN_PORTFOLIO_MARGIN")

    _withdrawals: ClassVar[dict[tuple[str, str], tuple[float, int, list[Any]]]] = {}
    _withdrawals_lock: ClassVar[threading.Lock] = threading.Lock()

    def all_orders(self, symbol: str, since_ms: int) -> list[Any]:
        return self.send_for_rows("GET", "/api/v3/allOrders", {"symbol": symbol, "startTime": since_ms, "limit": 1000})

    def my_trades(self, symbol: str, since_ms: int) -> list[Any]:
        return self.send_for_rows("GET", "/api/v3/myTrades", {"symbol": symbol, "startTime": since_ms, "limit": 1000})

    def withdraw_history(self, since_ms: int, max_age_s: float = 0.0) -> list[Any]:
        """Withdrawals since `since_ms`. Each read costs 18,000 of the account's 180,000 UID weight per minute (ten
        reads a minute): a caller that can use an answer up to `max_age_s` old (the containment's evidence, read
        right after the check that found it) gets the last one instead of spending another read."""
        cache_key = (self.base_url, self.credentials.api_key)
        now = time.monotonic()
        with self._withdrawals_lock:
            cached = self._withdrawals.get(cache_key)
        if cached is not None and now - cached[0] < max_age_s and cached[1] <= since_ms:
            return [w for w in cached[2] if not isinstance(w, dict) or _apply_ms(w) >= since_ms]
        rows = self.send_for_rows("GET", "/sapi/v1/capital/withdraw/history", {"startTime": since_ms})
        with self._withdrawals_lock:
            self._withdrawals[cache_key] = (now, since_ms, rows)
        return rows

    def read_activity(self, since_ms: int, symbols: list[str], transfer_types: list[str],
                      withdrawals_max_age_s: float = 0.0) -> dict[str, Any]:
        """The account's records since `since_ms`: orders of `symbols` (allOrders), withdrawals, universal
        transfers out of the spot wallet, and the withdrawal address book; each through the shared budget."""
        orders: list[Any] = []
        for symbol in symbols:
            orders += self.all_orders(symbol, since_ms)
        withdrawals = self.withdraw_history(since_ms, withdrawals_max_age_s)
        transfers: list[dict[str, Any]] = []
        for kind in sorted({*self.TRANSFER_TYPES, *transfer_types}):
            body = self.send_for_object("GET", "/sapi/v1/asset/transfer",
                                        {"type": kind, "startTime": since_ms, "size": 100})
            transfers += [row for row in body.get("rows") or [] if isinstance(row, dict)]
        addresses = self.send_for_rows("GET", "/sapi/v1/capital/withdraw/address/list")
        return {"orders": orders, "withdrawals": withdrawals, "transfers": transfers, "addresses": addresses}

    # -- containment --------------------------------------------------------------------------------------------
    def open_orders(self) -> list[Any]:
        return self.send_for_rows("GET", "/api/v3/openOrders")

    def cancel_open_orders(self, symbol: str) -> Any:
        return self.send(self.host_client, "DELETE", "/api/v3/openOrders", {"symbol": symbol})

    def sub_account_ip_restriction(self, email: str, sub_account_api_key: str) -> dict[str, Any]:
        """A sub-account key's IP restriction, read with the master account's key (this adapter's)."""
        return self.send_for_object("GET", "/sapi/v1/sub-account/subAccountApi/ipRestriction",
                                    {"email": email, "subAccountApiKey": sub_account_api_key})

    def restrict_sub_account_key(self, email: str, sub_account_api_key: str, restricted: bool,
                                 ips: list[str]) -> dict[str, Any]:
        """Set a sub-account key's IP restriction from its master account (status 2: only `ips`; 1: unrestricted)."""
        params = {"email": email, "subAccountApiKey": sub_account_api_key, "status": "2" if restricted else "1",
                  **({"ipAddress": ",".join(ips)} if ips else {})}
        return self.send_for_object("POST", "/sapi/v2/sub-account/subAccountApi/ipRestriction", params)


def _apply_ms(withdrawal: dict[str, Any]) -> int:
    """A withdrawal's applyTime ("YYYY-MM-DD HH:MM:SS" UTC) in ms; unparsable: keep it (never drop a record)."""
    try:
        when = datetime.strptime(str(withdrawal.get("applyTime")), "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        return 2**62
    return int(when.timestamp() * 1000)
