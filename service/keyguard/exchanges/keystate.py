"""KeyState: what one key can really do, with how each fact was learned; and its policy-input form."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from keyguard.loading import StrictModel
from keyguard.policy.bundle import policy_data

FactSource = Literal["reported", "probed", "declared"]
BindingSource = Literal["probed", "reported", "declared", "flagged", "unknown"]
ProbeOutcome = Literal["bound", "unbound", "host_refused", "unknown"]


class Permissions(StrictModel):
    """Normalised risk classes; None = could not be read (never read as False)."""

    read: bool | None = None
    trade: bool | None = None
    transfer: bool | None = None
    withdraw: bool | None = None


def flag_classes(exchange: str, flags: dict[str, Any]) -> set[str]:
    """The classes the exchange's raw flags grant, by the map the rules use (data.lib.raw_permission_flags),
    none when the exchange's read-only gate flag is set (data.lib.read_only_gate_flags, e.g. Bybit readOnly)."""
    gate = policy_data("lib", "read_only_gate_flags").get(exchange)
    if gate is not None and flags.get(gate) is True:
        return set()
    mapping = policy_data("lib", "raw_permission_flags", exchange)
    return {cls for flag, value in flags.items() if value is True for cls in mapping.get(flag, [])}


def permissions_from_flags(exchange: str, flags: dict[str, Any], can_always_read: bool = False) -> Permissions:
    """Normalised classes from the key's raw flags, by the rules' own map; `can_always_read` where the exchange
    answering the key's own call proves it reads."""
    granted = flag_classes(exchange, flags)
    return Permissions(read=can_always_read or "read" in granted, trade="trade" in granted,
                       transfer="transfer" in granted, withdraw="withdraw" in granted)


class AllowedIp(BaseModel):
    value: str
    reason: str = ""
    source: FactSource


class Storage(StrictModel):
    backend: Literal["aws_secretsmanager", "env", "file", "repository", "plaintext", "unknown"] = "unknown"
    kms: Literal["customer_managed", "aws_managed", "none", "unknown"] = "unknown"
    host_locked: bool = False


class ProbeResult(BaseModel):
    """The IP probe: the same signed read-only call from the host's address and from a second one."""

    outcome: ProbeOutcome
    host_ip: str | None
    other_ip: str
    detail: str


class KeyState(BaseModel):
    exchange: str
    key_id: str
    purpose: str = "unknown"
    services: list[str] = Field(default_factory=list)
    permissions: Permissions | None = None
    permissions_source: Literal["reported", "declared", "unknown"] = "unknown"
    raw_flags: dict[str, Any] = Field(default_factory=dict)
    ip_restricted: bool | None = None
    allowed_ips: list[AllowedIp] = Field(default_factory=list)
    ip_binding_source: BindingSource = "unknown"
    created_at: datetime | None = None
    expires_at: datetime | None = None
    superseded_at: datetime | None = None
    active: bool = True
    inspection_error: str | None = None
    # The typed error's class name (InvalidKey, ExchangeTimeout, ...) when inspection failed.
    error_kind: str | None = None
    server_time_offset_ms: int | None = None
    storage: Storage = Field(default_factory=Storage)
    probe: ProbeResult | None = None
    # fact -> reported | probed | declared, for every fact set (permissions, ip_restricted, created_at, ...).
    sources: dict[str, FactSource] = Field(default_factory=dict)
    # A watched key's account activity: the raw records as read, then the policy input the ledger made of them.
    activity_raw: dict[str, Any] | None = Field(default=None, exclude=True, repr=False)
    activity: dict[str, Any] | None = None

    @property
    def known(self) -> bool:
        return self.inspection_error is None and self.permissions is not None

    def to_policy_input(self) -> dict[str, Any]:
        """One element of `keys[]` in the `keys` policy input (docs/contracts.md)."""
        return {
            "id": self.key_id,
            "exchange": self.exchange,
            "purpose": self.purpose,
            "services": list(self.services),
            "permissions": self.permissions.model_dump() if self.permissions is not None else None,
            "permissions_source": self.permissions_source,
            "raw_flags": dict(self.raw_flags),
            "ip_restricted": self.ip_restricted,
            "allowed_ips": [ip.model_dump() for ip in self.allowed_ips],
            "ip_binding_source": self.ip_binding_source,
            "created_at": _rfc3339(self.created_at),
            "expires_at": _rfc3339(self.expires_at),
            "superseded_at": _rfc3339(self.superseded_at),
            "active": self.active,
            "inspection_error": self.inspection_error,
            "server_time_offset_ms": self.server_time_offset_ms,
            "storage": self.storage.model_dump(),
            **({"activity": self.activity} if self.activity is not None else {}),
        }


def _rfc3339(value: datetime | None) -> str | None:
    if value is None:
        return None
    # A naive time is UTC here, never the host's local zone.
    aware = value.replace(tzinfo=UTC) if value.tzinfo is None else value
    return aware.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def from_ms(ms: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(ms) / 1000, UTC) if ms not in (None, "", 0, "0") else None
    except (TypeError, ValueError):
        return None


def from_iso(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return None
