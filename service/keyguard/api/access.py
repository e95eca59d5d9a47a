"""Who may call the API: bearer tokens with a role, kept in the store as sha256 only, so every replica sharing
the store honours a new or revoked token on its next request, with no restart.

The environment token (`service.api_token_env`) stays an operator token named `env`; it lives outside the store."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from keyguard.errors import AccessError
from keyguard.store.db import session_scope
from keyguard.store.models import ApiToken, as_utc

ENV_TOKEN_NAME = "env"
TOKEN_PREFIX = "kg_"
TOKEN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# last_used_at is a hint for spotting unused tokens; writing it on every request would make each read a write.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class Role(StrEnum):
    viewer = "viewer"  # reads: every GET endpoint
    operator = "operator"  # a viewer's reads, plus the actions: run checks, reload policies, and later ack/contain


@dataclass(frozen=True)
class Principal:
    """The caller, as the audit log names it."""

    name: str
    role: Role

    @property
    def may_operate(self) -> bool:
        return self.role is Role.operator


def token_digest(token: str) -> str:
    """What the store keeps of a token: tokens are 256 random bits, so a plain sha256 cannot be brute-forced."""
    return hashlib.sha256(token.encode()).hexdigest()


def parse_role(value: str) -> Role:
    try:
        return Role(value.strip().lower())
    except ValueError:
        raise AccessError(f"role {value!r} is not known: use {' or '.join(r.value for r in Role)}") from None


def _check_name(name: str) -> str:
    if name == ENV_TOKEN_NAME:
        raise AccessError(f"token name {ENV_TOKEN_NAME!r} is reserved for the environment token "
                          "(service.api_token_env); choose another name")
    if not TOKEN_NAME.match(name):
        raise AccessError(f"token name {name!r} is not usable: use 1-64 letters, digits, '.', '_' or '-', "
                          "starting with a letter or digit")
    return name


def create_token(store: Engine, name: str, role: Role | str, now: datetime | None = None) -> str:
    """Mint a token, keep its digest, and return the token: the only time it exists outside the caller's hands."""
    role = role if isinstance(role, Role) else parse_role(role)
    _check_name(name)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    record = ApiToken(name=name, role=role.value, token_hash=token_digest(token), created_at=now or datetime.now(UTC))
    try:
        with session_scope(store) as session:
            if session.exec(select(ApiToken).where(ApiToken.name == name)).first() is not None:
                raise AccessError(f"a token named {name!r} already exists (names are never reused, revoked ones "
                                  "included); choose another name, e.g. for a rotation")
            session.add(record)
    except IntegrityError:  # created by someone else between the look-up and the insert
        raise AccessError(f"a token named {name!r} already exists; choose another name") from None
    return token


def list_tokens(store: Engine) -> list[ApiToken]:
    with session_scope(store) as session:
        return list(session.exec(select(ApiToken).order_by(col(ApiToken.created_at), col(ApiToken.name))).all())


def revoke_token(store: Engine, name: str, now: datetime | None = None) -> tuple[ApiToken, bool]:
    """Revoke a token by name; returns it and whether this call revoked it (a second revocation changes nothing)."""
    if name == ENV_TOKEN_NAME:
        raise AccessError(f"the {ENV_TOKEN_NAME!r} token is not in the store: change the variable named by "
                          "service.api_token_env and restart the service to replace it")
    with session_scope(store) as session:
        record = session.exec(select(ApiToken).where(ApiToken.name == name)).first()
        if record is None:
            raise AccessError(f"no token named {name!r}; `keyguard token list` shows the names")
        if record.revoked_at is not None:
            return record, False
        record.revoked_at = now or datetime.now(UTC)
        session.add(record)
        return record, True


class TokenRegistry:
    """Turns a presented bearer token into a Principal. Each call reads the unrevoked tokens from the store (a
    small table), so a token revoked on any host stops working on every replica at its next request."""

    def __init__(self, store: Engine, env_token: str | None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.store, self.clock = store, clock
        self._env_digest = token_digest(env_token) if env_token else None

    def authenticate(self, presented: str) -> Principal | None:
        digest = token_digest(presented)
        if self._env_digest is not None and hmac.compare_digest(digest, self._env_digest):
            return Principal(ENV_TOKEN_NAME, Role.operator)
        now = self.clock()
        with session_scope(self.store) as session:
            match = None
            for record in session.exec(select(ApiToken).where(col(ApiToken.revoked_at).is_(None))):
                # Every row is compared, so the time taken does not tell how much of a digest matched.
                if hmac.compare_digest(record.token_hash, digest):
                    match = record
            if match is None:
                return None
            if match.last_used_at is None or now - as_utc(match.last_used_at) >= LAST_USED_RESOLUTION:
                match.last_used_at = now
                session.add(match)
            return Principal(match.name, Role(match.role))
