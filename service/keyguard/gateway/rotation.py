"""Rotating the exchange key behind a running gateway, without touching a bot.

The new key is named by where it lives (a 0600 file or a Secrets Manager secret), never pasted. The gateway reads it
itself, refuses a key that could move funds, is not IP-bound or belongs to another account, swaps it in between two
requests (an order in flight finishes on the key that signed it), settles the open orders with the new key, and
remembers the source so a restart keeps using it. The caller then marks the old key superseded in the inventory, so
the rotation rule (KG-ROT-104) fires if it is still alive at the exchange after the grace period."""

from __future__ import annotations

import json
import os
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keyguard.errors import ConfigError, ExchangeError, KeyguardError
from keyguard.exchanges.inventory import SecretSource
from keyguard.redact import register_secret

if TYPE_CHECKING:
    from keyguard.gateway.app import Gateway

ADMIN_PREFIX = "/keyguard/admin/"


class RotationRefused(KeyguardError):
    """The new key failed a check; the gateway keeps trading on the old one."""

    exit_code = 1


def parse_source(text: str, aws_region: str | None = None) -> SecretSource:
    """`file:PATH`, `aws:SECRET_ID` or `env:KEY_VAR,SECRET_VAR` as a credentials source (a reference, no secret)."""
    kind, _, rest = text.partition(":")
    if kind == "file" and rest:
        return SecretSource(file=Path(rest).resolve())
    if kind == "aws" and rest:
        from keyguard.secrets.aws import AwsSecret

        return SecretSource(aws_secret=AwsSecret(secret_id=rest, region=aws_region))
    if kind == "env" and "," in rest:
        key_var, secret_var = (part.strip() for part in rest.split(",", 1))
        return SecretSource(api_key_env=key_var, secret_env=secret_var)
    raise ConfigError(f"--new-secret-from {text.split(':', 1)[0]}:...: say file:PATH (JSON api_key and secret, mode "
                      "0600), aws:SECRET_ID or env:KEY_VAR,SECRET_VAR; never the secret itself")


def source_credentials(source: SecretSource) -> tuple[str, str]:
    if source.file is not None and source.file.exists() and source.file.stat().st_mode & 0o077:
        raise ConfigError(f"{source.file} is readable by other users; chmod 600 it before using it as a key source")
    creds = source.load()
    secret = creds.secret.get_secret_value()
    register_secret(creds.api_key)
    register_secret(secret)
    return creds.api_key, secret


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class AdminChannel:
    """The gateway's local admin door: a bearer token in the state directory (0600) and the URL the gateway listens
    on, written when it starts; only someone who can read the state directory can use it."""

    def __init__(self, state_dir: Path) -> None:
        self.token_path = state_dir / "admin-token"
        self.endpoint_path = state_dir / "endpoint.json"

    def create(self, url: str) -> str:
        token = secrets.token_urlsafe(32)
        fd = os.open(self.token_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(token)
        register_secret(token)
        self.endpoint_path.write_text(json.dumps({"url": url}))
        return token

    def read(self) -> tuple[str, str]:
        try:
            token = self.token_path.read_text().strip()
            url = str(json.loads(self.endpoint_path.read_text())["url"])
        except (OSError, ValueError, KeyError):
            raise ConfigError(f"no running gateway found in {self.token_path.parent} (admin-token and endpoint.json "
                              "are written when `keyguard gateway serve` starts)") from None
        register_secret(token)
        return url, token


def check_new_key(gw: Gateway, api_key: str, secret: str) -> dict[str, Any]:
    """The exchange's own answer about the new key: trade yes, withdraw and transfer no, IP-bound, same account."""
    from keyguard.exchanges.binance import binance_permissions
    from keyguard.exchanges.binance_client import BinanceSpotClient

    config = gw.config
    assert config.exchange.base_url is not None
    candidate = BinanceSpotClient(config.exchange.base_url, api_key, secret, gw.limiter,
                                  timeout_s=config.exchange.timeout_s, recv_window_ms=config.exchange.recv_window_ms,
                                  source_address=config.exchange.source_address, clock=gw.clock)
    candidate.time_offset_ms = gw.client.time_offset_ms
    try:
        flags = candidate.request("GET", "/sapi/v1/account/apiRestrictions", signed=True)
        new_uid = candidate.request("GET", "/api/v3/account", {"omitZeroBalances": "true"}, signed=True).get("uid")
        old_uid = gw.client.request("GET", "/api/v3/account", {"omitZeroBalances": "true"}, signed=True).get("uid")
    except ExchangeError as exc:
        raise RotationRefused(f"the exchange did not accept the new key: {exc}") from None
    finally:
        candidate.close()
    permissions = binance_permissions({k: v for k, v in flags.items() if isinstance(v, bool)})
    problems = []
    if permissions.withdraw is not False:
        problems.append("it can withdraw (or the exchange did not say it cannot)")
    if permissions.transfer is not False:
        problems.append("it can transfer funds")
    if permissions.trade is not True:
        problems.append("it cannot trade")
    if flags.get("ipRestrict") is not True:
        problems.append("it is not bound to an IP allowlist")
    if new_uid is None or new_uid != old_uid:
        problems.append("it belongs to another account than the key it replaces (open orders would be orphaned)")
    if problems:
        raise RotationRefused("the new key was refused, the gateway keeps the old one: " + "; ".join(problems))
    return {"permissions": permissions.model_dump(), "ip_restricted": True}


def rotate(gw: Gateway, source: SecretSource) -> dict[str, Any]:
    """Check the key `source` names, swap it in, settle open orders with it, and remember the source."""
    api_key, secret = source_credentials(source)
    old_key = gw.client.api_key_id
    if api_key == old_key:
        raise RotationRefused("the new key is the key the gateway already uses")
    facts = check_new_key(gw, api_key, secret)
    if gw.lane is not None:
        try:
            gw.lane.rotate(api_key, secret)  # first: a lane that cannot take the key leaves the old one everywhere
        except OSError as exc:
            raise RotationRefused(f"the gateway's fast lane did not take the new key ({exc}); nothing was "
                                  "switched") from None
    gw.client.replace_credentials(api_key, secret)
    gw.key_permissions = facts["permissions"]
    record = {"source": json.loads(source.model_dump_json(exclude_none=True)), "rotated_at": _now(),
              "previous_key": f"{old_key[:8]}...", "new_key": f"{api_key[:8]}..."}
    path = gw.config.state_dir / "exchange-credentials.json"
    path.write_text(json.dumps(record))
    settled = gw.desk.settle_open(most=1000)
    return {**record, **facts, "open_orders_settled": settled}


def remembered_source(state_dir: Path) -> SecretSource | None:
    """The source a rotation switched to, so a restarted gateway keeps the new key."""
    path = state_dir / "exchange-credentials.json"
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        raise ConfigError(f"{path} is not readable JSON: fix or remove it (it names the key a rotation switched to)") \
            from None
    return SecretSource.model_validate(raw["source"])
