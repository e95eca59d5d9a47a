"""The keys inventory (examples/keyguard.yaml): which keys exist, what they are for, where their secrets live,
and what the operator declares about them. Inspecting it yields the `keys` policy input."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, model_validator

from keyguard.errors import ConfigError
from keyguard.exchanges.base import Credentials, DeclaredIp, KeyDeclaration
from keyguard.exchanges.keystate import KeyState, Permissions, Storage
from keyguard.loading import EnvVarName, HttpUrlText, StrictModel, load_model
from keyguard.secrets.aws import AwsSecret


class SecretSource(StrictModel):
    """Where a key's credentials come from: environment variables, or a YAML/JSON file with
    api_key, secret (and passphrase for OKX). The inventory itself never holds a secret."""

    api_key_env: EnvVarName | None = None
    secret_env: EnvVarName | None = None
    passphrase_env: EnvVarName | None = None
    file: Path | None = None
    aws_secret: AwsSecret | None = Field(default=None, description="Secrets Manager: {secret_id, region}")

    @model_validator(mode="after")
    def _one_source(self) -> SecretSource:
        if self.file is None and self.aws_secret is None and not (self.api_key_env and self.secret_env):
            raise ValueError("give api_key_env and secret_env, or file, or aws_secret")
        return self

    def load(self) -> Credentials:
        """Read the credentials; a missing variable, file or secret is a ConfigError naming it."""
        if self.file is not None or self.aws_secret is not None:
            from keyguard.policy.documents import load_document

            if self.aws_secret is not None:
                data, where = self.aws_secret.read_json(), self.aws_secret.secret_id
            else:
                assert self.file is not None  # guaranteed by the branch condition
                data, where = load_document(self.file), str(self.file)
            missing = [f for f in ("api_key", "secret") if not data.get(f)]
            if missing:
                raise ConfigError(f"{where}: missing {', '.join(missing)} (expected api_key, secret, "
                                  "and passphrase for OKX)")
            return Credentials(api_key=str(data["api_key"]), secret=SecretStr(str(data["secret"])),
                               passphrase=SecretStr(str(data["passphrase"])) if data.get("passphrase") else None)
        values = {}
        for field in ("api_key_env", "secret_env", "passphrase_env"):
            name = getattr(self, field)
            if name is None:
                continue
            value = os.environ.get(name)
            if not value:
                raise ConfigError(f"environment variable {name} ({field}) is not set or empty")
            values[field] = value
        passphrase = values.get("passphrase_env")
        return Credentials(api_key=values["api_key_env"], secret=SecretStr(values["secret_env"]),
                           passphrase=SecretStr(passphrase) if passphrase else None)


class ActivityWatch(StrictModel):
    """Watch the account's activity: orders no Keyguard journal sent, withdrawals, transfers, the address book."""

    symbols: list[str] = Field(default_factory=list, description="symbols whose orders are read (default: the "
                                                                 "workers' strategy symbols and journal symbols)")
    expected_withdrawal_addresses: list[str] = Field(default_factory=list)
    expected_transfer_types: list[str] = Field(default_factory=list)
    lookback_h: float = Field(default=24.0, gt=0, le=24, description="how far back each read goes (Binance's "
                                                                      "allOrders takes at most 24 h per call)")


class ExchangeAdmin(StrictModel):
    """A separate admin (master-account) key that can cut the bot key at the exchange; the bots never see it."""

    credentials: SecretSource
    sub_account_email: str | None = Field(default=None, description="Binance: the sub-account the bot key is on")
    sub_account: str | None = Field(default=None, description="OKX: the sub-account's name (subAcct)")


class KeyContainment(StrictModel):
    admin: ExchangeAdmin | None = None


class InventoryKey(StrictModel):
    id: str
    exchange: str
    purpose: str = "unknown"
    services: list[str] = Field(default_factory=list)
    credentials: SecretSource
    allowed_ips: list[DeclaredIp] = Field(default_factory=list)
    storage: Storage | None = None
    permissions: Permissions | None = None
    created_at: datetime | None = None
    superseded_at: datetime | None = None
    active: bool = True
    workers: list[Path] = Field(default_factory=list, description="the worker or gateway configs trading with "
                                                                  "this key: their journals say what Keyguard sent, "
                                                                  "their kill switches are engaged on containment")
    activity: ActivityWatch | None = None
    containment: KeyContainment | None = None

    @property
    def resource(self) -> str:
        """The name findings give this key (lib.key_resource)."""
        return f"{self.exchange.lower()}/{self.id}"

    def declaration(self) -> KeyDeclaration:
        return KeyDeclaration(
            id=self.id, exchange=self.exchange, purpose=self.purpose, services=self.services,
            allowed_ips=self.allowed_ips, storage=self.storage or self.derived_storage(),
            permissions=self.permissions, created_at=self.created_at, superseded_at=self.superseded_at,
            active=self.active,
        )

    def derived_storage(self) -> Storage:
        """Storage facts implied by where the secret comes from when the operator declares none; for Secrets
        Manager, how the secret is really encrypted (asked of AWS, unknown if it cannot be described)."""
        if self.credentials.aws_secret is not None:
            return Storage(backend="aws_secretsmanager", kms=self.credentials.aws_secret.kms())  # type: ignore[arg-type]
        return Storage(backend="file" if self.credentials.file is not None else "env")


class Host(StrictModel):
    name: str
    ip: str
    authorized: bool = True


class ProbeSettings(StrictModel):
    source_ip: str | None = Field(default=None, description="the host's own address (None = the OS's choice)")
    from_ip: str | None = Field(default=None, alias="from", description="a second address that must be refused")


class Inventory(StrictModel):
    model_config = {"extra": "forbid", "populate_by_name": True}

    hosts: list[Host] = Field(default_factory=list)
    # exchange -> base URL of a Keyguard sandbox; an exchange not listed is the real one.
    exchange_urls: dict[str, HttpUrlText] = Field(default_factory=dict)
    probe: ProbeSettings = Field(default_factory=ProbeSettings)
    keys: list[InventoryKey] = Field(default_factory=list)


def load_inventory(path: Path) -> Inventory:
    """Parse the inventory; errors name the file and the field (keys.0.credentials, ...)."""
    inventory = load_model(Inventory, path, "keys inventory")
    for key in inventory.keys:
        # A file named relative to the inventory is relative to the inventory's directory.
        sources = [key.credentials]
        if key.containment is not None and key.containment.admin is not None:
            sources.append(key.containment.admin.credentials)
        for source in sources:
            if source.file is not None and not source.file.is_absolute():
                source.file = path.parent / source.file
        key.workers = [w if w.is_absolute() else path.parent / w for w in key.workers]
        if key.workers and key.activity is None:
            key.activity = ActivityWatch()  # a key Keyguard's workers trade with is watched for everything else
    return inventory


def inspect_inventory(inventory: Inventory, *, timeout_ms: int = 10000,
                      on_key: Callable[[KeyState], None] | None = None) -> list[KeyState]:
    """Inspect every key once (the CLI's one-shot), on the host's shared rate budget; a key whose secret cannot
    be loaded, or that the exchange could not answer for, is reported unknown, not skipped."""
    from keyguard.exchanges.inspector import KeyInspector

    return KeyInspector(request_timeout_s=timeout_ms / 1000).inspect(inventory, on_key=on_key)


def keys_document(states: Sequence[KeyState], hosts: Sequence[Host] = (), now: datetime | None = None
                  ) -> dict[str, Any]:
    """The `keys` policy input (docs/contracts.md)."""
    stamp = (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "kind": "keys",
        "now": stamp,
        "hosts": [h.model_dump() for h in hosts],
        "keys": [s.to_policy_input() for s in states],
    }
