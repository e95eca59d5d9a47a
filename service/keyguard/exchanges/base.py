"""The adapter core: inspect() that reports unknown (never safe) when the exchange can't answer, and the IP probe
from a second address, over any client (`ExchangeAdapter`); and for the exchanges reached through ccxt
(`CcxtAdapter`), a stock ccxt client per source address, every call through the limiter, ccxt's exceptions turned
into keyguard.exchanges.errors. Binance has its own client (keyguard.exchanges.binance)."""

from __future__ import annotations

import logging
import re
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, Literal, TypeVar

import ccxt
import requests
from pydantic import BaseModel, Field, SecretStr, field_validator

from keyguard.errors import ExchangeError, KeyguardError
from keyguard.exchanges.budget import SharedRateLimiter, retry_after_s
from keyguard.exchanges.budget_store import InMemoryBudgetStore
from keyguard.exchanges.errors import (
    Banned,
    ExchangeRejected,
    ExchangeTimeout,
    ExchangeUnavailable,
    InvalidKey,
    IPRefused,
    MalformedResponse,
    OutcomeUnknown,
    PermissionRefused,
    RateLimited,
)
from keyguard.exchanges.keystate import AllowedIp, KeyState, Permissions, ProbeResult, Storage
from keyguard.exchanges.transport import bound_session
from keyguard.loading import StrictModel
from keyguard.redact import install_log_redaction, redact_text, register_secret

# ccxt logs request headers at DEBUG (OKX's passphrase among them): scrub its records at the source.
install_log_redaction(logging.getLogger("ccxt"))
install_log_redaction(logging.getLogger("ccxt.base.exchange"))

log = logging.getLogger("keyguard.exchanges")

_CODE = re.compile(r'"(?:code|retCode|ret_code)"\s*:\s*"?(-?\d+)"?')

ClientT = TypeVar("ClientT")


class Credentials(BaseModel):
    api_key: str
    secret: SecretStr
    passphrase: SecretStr | None = None

    def model_post_init(self, __context: Any) -> None:
        # Registered so any later text that contains them (logs, errors, CLI output) is scrubbed.
        register_secret(self.secret.get_secret_value())
        if self.passphrase is not None:
            register_secret(self.passphrase.get_secret_value())


class DeclaredIp(StrictModel):
    value: str
    reason: str = ""


class KeyDeclaration(BaseModel):
    """What the operator declares about a key in the inventory (keyguard.yaml)."""

    id: str
    exchange: str
    purpose: str = "unknown"
    services: list[str] = Field(default_factory=list)
    allowed_ips: list[DeclaredIp] = Field(default_factory=list)
    storage: Storage = Field(default_factory=Storage)
    permissions: Permissions | None = None
    # For exchanges that do not report it (OKX, Bitget, Coinbase): when the key was created, per the operator.
    created_at: datetime | None = None
    superseded_at: datetime | None = None
    active: bool = True

    @field_validator("created_at", "superseded_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        # A timestamp without a zone in the inventory is UTC, like every timestamp Keyguard writes.
        return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


class ExchangeAdapter(ABC, Generic[ClientT]):
    """One key at one exchange: what it can do (`inspect`) and whether it is bound to the host (`probe_ip`), over
    the exchange's client type `ClientT`, every call charged to the shared budget of the address it leaves from."""

    exchange_id: ClassVar[str]
    # The signed read-only call the IP probe repeats from two addresses: (method, path).
    probe_endpoint: ClassVar[tuple[str, str]]

    def __init__(
        self,
        credentials: Credentials,
        *,
        source_ip: str | None = None,
        limiter: SharedRateLimiter | None = None,
        timeout_ms: int = 10000,
        probe_limiter: SharedRateLimiter | None = None,
    ):
        self.credentials = credentials
        self.source_ip = source_ip
        self.timeout_ms = timeout_ms
        # The host's budget; without a host-wide one, this adapter's own (which still honours 429/418 Retry-After).
        self.limiter = limiter or self.own_limiter(source_ip)
        # The budget of the probe's second address (None: this adapter's own for that address).
        self.probe_limiter = probe_limiter
        # Wall-clock time (time.time) by which every call must be done; None = only the per-request timeout.
        self.deadline: float | None = None
        self._host_probe_ok = False  # the probe's signed call succeeded from the host during this inspection

    def own_limiter(self, source_ip: str | None) -> SharedRateLimiter:
        """A budget for `source_ip` kept in this process only: for an adapter given no host-wide one."""
        return SharedRateLimiter(InMemoryBudgetStore(), egress_ip=source_ip or "127.0.0.1", exchange=self.exchange_id,
                                 default_deadline_s=self.timeout_ms / 1000)

    def time_left_s(self, method: str, path: str) -> float | None:
        """Seconds left before the deadline (None: no deadline); a call the deadline has passed is not sent."""
        if self.deadline is None:
            return None
        left_s = self.deadline - time.time()
        if left_s <= 0:
            raise ExchangeTimeout(f"{self.exchange_id} {method} {path} not sent: the check's deadline has passed")
        return left_s

    def close(self) -> None:
        """Let go of the adapter's own connections (shared ones stay with their owner)."""

    # -- what each exchange implements ----------------------------------------------------------------------
    @property
    @abstractmethod
    def host_client(self) -> ClientT:
        """The client leaving from the host's address, charging the host's budget."""

    @abstractmethod
    def probe_client(self, source_ip: str) -> ClientT:
        """A client with this key leaving from `source_ip`, charging that address's budget."""

    @abstractmethod
    def server_time_ms(self) -> int | None:
        """The exchange's clock, from its public time endpoint (None: the exchange publishes none)."""

    @abstractmethod
    def read_key(self, state: KeyState, declared: KeyDeclaration) -> None:
        """Fill permissions, raw flags, IP facts and times from the key-introspection endpoint."""

    @abstractmethod
    def probe_call(self, client: ClientT) -> dict[str, Any]:
        """The signed read-only call the IP probe sends; a success from the host sets `_host_probe_ok`."""

    # -- the public surface ---------------------------------------------------------------------------------
    def server_time_offset_ms(self) -> int | None:
        """Local clock minus the exchange's, measured at the request's midpoint."""
        sent = time.time() * 1000
        server = self.server_time_ms()
        received = time.time() * 1000
        return None if server is None else round((sent + received) / 2 - server)

    def inspect(self, declared: KeyDeclaration, probe_from: str | None = None,
                time_offset_ms: int | None | Literal["measure"] = "measure") -> KeyState:
        """Ask the exchange what the key can do; any failure yields a KeyState marked unknown with the reason.

        `time_offset_ms`: the clock offset already measured for this exchange in this cycle (one time call per
        exchange, not per key); "measure" asks the exchange's time endpoint now."""
        state = KeyState(
            exchange=self.exchange_id, key_id=declared.id, purpose=declared.purpose, services=declared.services,
            storage=declared.storage, active=declared.active,
            allowed_ips=[AllowedIp(value=ip.value, reason=ip.reason, source="declared")
                         for ip in declared.allowed_ips],
        )
        state.superseded_at = declared.superseded_at
        self._host_probe_ok = False
        if declared.allowed_ips:
            state.ip_binding_source = "declared"
        try:
            state.server_time_offset_ms = (self.server_time_offset_ms() if time_offset_ms == "measure"
                                           else time_offset_ms)
            self.read_key(state, declared)
            if probe_from is not None:
                # Where read_key's own call was the probe call, the host's half of the probe is already answered.
                self.apply_probe(state, self.probe_ip(probe_from, host_accepted=self._host_probe_ok))
            if state.created_at is None and declared.created_at is not None:
                state.created_at = declared.created_at
                state.sources["created_at"] = "declared"
        except KeyguardError as exc:
            state.created_at = declared.created_at
            state.inspection_error = redact_text(str(exc))
            state.error_kind = type(exc).__name__
            state.permissions = declared.permissions
            state.permissions_source = "declared" if declared.permissions is not None else "unknown"
            state.ip_restricted = None
            state.raw_flags = {}
            log.warning("key %s/%s could not be inspected (%s): %s", self.exchange_id, declared.id,
                        state.error_kind, state.inspection_error)
        else:
            log.info("key %s/%s inspected: permissions %s, ip_restricted %s, binding %s", self.exchange_id,
                     declared.id, state.permissions.model_dump() if state.permissions else None,
                     state.ip_restricted, state.ip_binding_source)
        return state

    def probe_ip(self, other_ip: str, host_accepted: bool = False) -> ProbeResult:
        """Host address must be accepted, `other_ip` must be refused with the exchange's IP error."""
        method, path = self.probe_endpoint
        host = self.source_ip
        if not host_accepted:
            try:
                self.probe_call(self.host_client)
            except (OutcomeUnknown, RateLimited) as exc:
                return ProbeResult(outcome="unknown", host_ip=host, other_ip=other_ip,
                                   detail=f"host call failed, binding unverified: {type(exc).__name__}: {exc}")
            except (InvalidKey, IPRefused, PermissionRefused) as exc:
                return ProbeResult(outcome="host_refused", host_ip=host, other_ip=other_ip,
                                   detail=f"the exchange refused the key from the host itself: {exc}")
        try:
            self.probe_call(self.probe_client(other_ip))
        except IPRefused as exc:
            return ProbeResult(outcome="bound", host_ip=host, other_ip=other_ip,
                               detail=f"{method} {path} accepted from the host, refused from {other_ip}: "
                                      f"{type(exc).__name__}")
        except ExchangeError as exc:
            return ProbeResult(outcome="unknown", host_ip=host, other_ip=other_ip,
                               detail=f"call from {other_ip} failed without an IP refusal, binding unverified: "
                                      f"{type(exc).__name__}: {exc}")
        return ProbeResult(outcome="unbound", host_ip=host, other_ip=other_ip,
                           detail=f"{method} {path} was accepted from {other_ip}: the key is not bound to the host")

    @staticmethod
    def apply_probe(state: KeyState, probe: ProbeResult) -> None:
        state.probe = probe
        if probe.outcome == "bound":
            state.ip_binding_source = "probed"
            state.sources["ip_binding"] = "probed"
            if state.ip_restricted is None:
                # Exchanges that report no IP facts (Coinbase): a refusal from elsewhere proves a restriction.
                state.ip_restricted = True
                state.sources["ip_restricted"] = "probed"
            if probe.host_ip:
                for entry in state.allowed_ips:
                    if entry.value == probe.host_ip:
                        entry.source = "probed"
                        break
                else:
                    state.allowed_ips.append(AllowedIp(value=probe.host_ip, source="probed"))
        elif probe.outcome == "unknown":
            state.ip_binding_source = "unknown"
        else:
            state.ip_binding_source = "flagged"


class CcxtAdapter(ExchangeAdapter[ccxt.Exchange]):
    """An exchange reached through a stock ccxt client per source address."""

    # Exchange error code -> family member, from the exchange's documentation.
    error_codes: ClassVar[dict[str, type[ExchangeRejected]]] = {}

    def __init__(
        self,
        credentials: Credentials,
        *,
        urls: Mapping[str, Any] | None = None,
        source_ip: str | None = None,
        limiter: SharedRateLimiter | None = None,
        timeout_ms: int = 10000,
        options: Mapping[str, Any] | None = None,
        sessions: Callable[[str | None], requests.Session] | None = None,
        probe_limiter: SharedRateLimiter | None = None,
        clients: ClientPool | None = None,
    ):
        super().__init__(credentials, source_ip=source_ip, limiter=limiter, timeout_ms=timeout_ms,
                         probe_limiter=probe_limiter)
        self.urls = dict(urls) if urls else None
        self.options = dict(options or {})
        # Where HTTP sessions come from: shared per source address by the service, so connections are reused.
        self._sessions = sessions or bound_session
        # Shared ccxt clients (the service's: building one costs milliseconds); None = this adapter's own.
        self._pool = clients
        self._host_client: ccxt.Exchange | None = None
        self._other_clients: dict[str, ccxt.Exchange] = {}
        # Clients leaving from another address spend that address's budget, not the host's (id(client) -> limiter).
        self._limiters: dict[int, SharedRateLimiter] = {}
        self._probe_limiters: dict[str, SharedRateLimiter] = {}

    # -- clients --------------------------------------------------------------------------------------------
    def client(self, source_ip: str | None) -> ccxt.Exchange:
        """A stock ccxt client for this exchange, with this key's credentials, leaving from `source_ip` (None =
        the OS's choice): the pool's client for this thread when there is a pool, else a new one."""
        if self._pool is not None:
            return self._pool.client(self, source_ip)
        return self.new_client(source_ip)

    def new_client(self, source_ip: str | None) -> ccxt.Exchange:
        session = self._sessions(source_ip)
        if _record_status not in session.hooks["response"]:
            session.hooks["response"].append(_record_status)
        config: dict[str, Any] = {
            "apiKey": self.credentials.api_key,
            "secret": self.credentials.secret.get_secret_value(),
            "session": session,
            "timeout": self.timeout_ms,
            # The limiter decides pacing; ccxt's own throttle would double-count.
            "enableRateLimit": False,
        }
        if self.credentials.passphrase is not None:
            config["password"] = self.credentials.passphrase.get_secret_value()
        if self.urls:
            config["urls"] = self.urls
        if self.options:
            config["options"] = dict(self.options)
        return getattr(ccxt, self.exchange_id)(config)

    def apply_credentials(self, client: ccxt.Exchange) -> None:
        client.apiKey = self.credentials.api_key
        client.secret = self.credentials.secret.get_secret_value()
        client.password = self.credentials.passphrase.get_secret_value() if self.credentials.passphrase else None

    @property
    def host_client(self) -> ccxt.Exchange:
        if self._pool is not None:
            return self._pool.client(self, self.source_ip)
        if self._host_client is None:
            self._host_client = self.client(self.source_ip)
        return self._host_client

    def probe_client(self, source_ip: str) -> ccxt.Exchange:
        other = self._other_clients.get(source_ip) if self._pool is None else None
        if other is None:
            other = self.client(source_ip)
            if self._pool is None:
                self._other_clients[source_ip] = other
        limiter = self.probe_limiter or self._probe_limiters.get(source_ip)
        if limiter is None:
            limiter = self._probe_limiters[source_ip] = self.own_limiter(source_ip)
        self._limiters[id(other)] = limiter
        return other

    # -- calls ----------------------------------------------------------------------------------------------
    def call(self, client: ccxt.Exchange, method: str, path: str, fn: Callable[[], Any],
             params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """One exchange call through the limiter; returns the JSON object or raises from the family."""
        result = self.call_any(client, method, path, fn, params)
        if not isinstance(result, dict):
            raise MalformedResponse(
                f"{self.exchange_id} {method} {path} answered with a body that is not a JSON object: "
                f"{redact_text(str(result))[:120]!r}"
            )
        return result

    def call_any(self, client: ccxt.Exchange, method: str, path: str, fn: Callable[[], Any],
                 params: Mapping[str, Any] | None = None) -> Any:
        limiter = self._limiters.get(id(client), self.limiter)
        left_s = self.time_left_s(method, path)
        permit = limiter.acquire(method, path, params, deadline_s=left_s)
        client.timeout = self.timeout_ms
        if self.deadline is not None:  # never wait on the wire past the deadline either
            client.timeout = max(1, min(self.timeout_ms, int((self.deadline - time.time()) * 1000)))
        # Cleared first, so a call that gets no response never reports the previous call's status or headers.
        _last_status.value = 0
        client.last_response_headers = {}
        try:
            result = fn()
        except ccxt.BaseError as exc:
            status = _last_status.value
            headers = dict(client.last_response_headers or {})
            limiter.observe(permit, status, headers)
            raise self.translate(exc, status, headers, f"{method} {path}", int(client.timeout)) from None
        limiter.observe(permit, _last_status.value or 200, dict(client.last_response_headers or {}))
        if (method, path) == self.probe_endpoint and client is self.host_client:
            self._host_probe_ok = True
        return result

    def translate(self, exc: ccxt.BaseError, status: int, headers: Mapping[str, str], what: str,
                  timeout_ms: int | None = None) -> ExchangeError:
        text = redact_text(str(exc))[:400]
        match = _CODE.search(text)
        code = match.group(1) if match else None
        number = int(code) if code is not None else None
        retry = retry_after_s(headers)
        context = f"{self.exchange_id} {what}"
        if status == 418:
            return Banned(status, number, text, retry, context=context)
        if status == 429 or isinstance(exc, ccxt.RateLimitExceeded):
            return RateLimited(status or 429, number, text, retry, context=context)
        if code is not None and code in self.error_codes:
            return self.error_codes[code](status, number, text, context=context)
        if isinstance(exc, ccxt.RequestTimeout):
            return ExchangeTimeout(f"{context}: no answer within {timeout_ms or self.timeout_ms} ms")
        if isinstance(exc, ccxt.DDoSProtection):
            return RateLimited(status, number, text, retry, context=context)
        if isinstance(exc, ccxt.NetworkError):
            return ExchangeUnavailable(f"{context}: {text}")
        if isinstance(exc, ccxt.PermissionDenied):
            return PermissionRefused(status, number, text, context=context)
        if isinstance(exc, ccxt.AuthenticationError):
            return InvalidKey(status, number, text, context=context)
        return ExchangeError(f"{context}: {text}")

    def public_time_ms(self, path: str, fetch: Callable[[], Any], pick: Callable[[dict[str, Any]], Any],
                       described: str) -> int:
        """The exchange's clock in ms from its public time endpoint `path`: `pick` finds it in the answer,
        `described` names what was looked for when the answer lacks it."""
        body = self.call(self.host_client, "GET", path, fetch)
        try:
            return int(pick(body))
        except (KeyError, IndexError, TypeError, ValueError):
            raise MalformedResponse(f"{self.exchange_id} GET {path}: no {described} in the answer") from None


class ClientPool:
    """ccxt clients kept per thread, exchange, source address and endpoints, lent to one key's call at a time with
    that key's credentials set: a ccxt client costs milliseconds to build, too much to build per key per cycle."""

    def __init__(self) -> None:
        self._local = threading.local()

    def client(self, adapter: CcxtAdapter, source_ip: str | None) -> ccxt.Exchange:
        clients: dict[tuple[str, ...], ccxt.Exchange] = self._local.__dict__.setdefault("clients", {})
        key = (adapter.exchange_id, str(source_ip), repr(adapter.urls), repr(adapter.options))
        client = clients.get(key)
        if client is None:
            client = clients[key] = adapter.new_client(source_ip)
        adapter.apply_credentials(client)
        return client


# ccxt does not keep the HTTP status; the limiter needs it to tell 429/418 from other errors. A call runs in one
# thread from send to answer, so the status is kept per thread and sessions can be shared between clients.
class _StatusLocal(threading.local):
    value = 0


_last_status = _StatusLocal()


def _record_status(response: requests.Response, *args: Any, **kwargs: Any) -> None:
    _last_status.value = response.status_code


def declared_reason(declared: KeyDeclaration, ip: str) -> str:
    return next((d.reason for d in declared.allowed_ips if d.value == ip), "")


def record_permissions(state: KeyState, raw_flags: dict[str, Any], permissions: Permissions,
                       source: Literal["reported", "declared"] = "reported") -> None:
    """The key's permissions as the exchange's own flags and as risk classes, and where the classes came from."""
    state.raw_flags = raw_flags
    state.permissions = permissions
    state.permissions_source = source
    state.sources["permissions"] = source


def record_reported_ips(state: KeyState, declared: KeyDeclaration, ips: list[str]) -> None:
    """The IP allowlist the exchange reported (each with the operator's reason for it); none = not restricted."""
    state.ip_restricted = bool(ips)
    state.allowed_ips = [AllowedIp(value=ip, reason=declared_reason(declared, ip), source="reported") for ip in ips]
    state.ip_binding_source = "reported" if ips else "unknown"
    state.sources.update({"ip_restricted": "reported", "allowed_ips": "reported"})
