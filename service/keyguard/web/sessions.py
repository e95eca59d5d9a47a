"""Dashboard sessions: an API token (or a one-time login link) is exchanged once for a session cookie; the store
keeps only digests, so every replica honours a session and a copy of the store opens none.

The CSRF token of a session is derived from its id (sha256 over a fixed label), so any replica can check a form
without shared state, and the page that carries it cannot be turned back into the cookie."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from keyguard.api.access import ENV_TOKEN_NAME, Principal, Role
from keyguard.store.db import session_scope
from keyguard.store.models import ApiToken, LoginLink, WebSession, as_utc

SESSION_COOKIE = "kg_session"
LOGIN_CSRF_COOKIE = "kg_login_csrf"
SESSION_LIFETIME = timedelta(hours=8)
LOGIN_LINK_LIFETIME = timedelta(minutes=10)
LINK_PREFIX = "kgl_"  # a login link's code, never an API token (those start kg_)


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def csrf_for(session_id: str) -> str:
    return hashlib.sha256(f"keyguard-csrf:{session_id}".encode()).hexdigest()[:43]


def csrf_matches(session_id: str, presented: str | None) -> bool:
    return bool(presented) and hmac.compare_digest(csrf_for(session_id), presented or "")


@dataclass(frozen=True)
class WebPrincipal:
    """The person behind a session: the API principal it was opened as, and the session's CSRF token."""

    principal: Principal
    csrf: str

    @property
    def may_operate(self) -> bool:
        return self.principal.may_operate


def open_session(store: Engine, principal: Principal, now: datetime) -> str:
    """A new session for `principal`; returns the session id, the only time it exists outside the cookie."""
    session_id = secrets.token_urlsafe(32)
    with session_scope(store) as session:
        session.add(WebSession(session_hash=digest(session_id), token_name=principal.name, role=principal.role.value,
                               created_at=now, expires_at=now + SESSION_LIFETIME))
    return session_id


def session_principal(store: Engine, session_id: str, now: datetime) -> WebPrincipal | None:
    """The session's principal, or None when it is unknown, ended, expired, or its token was revoked since."""
    with session_scope(store) as session:
        record = session.exec(select(WebSession).where(WebSession.session_hash == digest(session_id))).first()
        if record is None or record.ended_at is not None or as_utc(record.expires_at) <= now:
            return None
        if record.token_name != ENV_TOKEN_NAME:
            token = session.exec(select(ApiToken).where(ApiToken.name == record.token_name,
                                                        col(ApiToken.revoked_at).is_(None))).first()
            if token is None:
                return None
        return WebPrincipal(Principal(record.token_name, Role(record.role)), csrf_for(session_id))


def end_session(store: Engine, session_id: str, now: datetime) -> None:
    with session_scope(store) as session:
        record = session.exec(select(WebSession).where(WebSession.session_hash == digest(session_id))).first()
        if record is not None and record.ended_at is None:
            record.ended_at = now
            session.add(record)


def create_login_link(store: Engine, principal: Principal, now: datetime,
                      lifetime: timedelta = LOGIN_LINK_LIFETIME) -> str:
    """A one-time code for `principal`, good for `lifetime`; the dashboard URL carries it after `#`, so it never
    reaches a server log or a Referer header, and the login page wipes it from the history once used."""
    code = LINK_PREFIX + secrets.token_urlsafe(32)
    with session_scope(store) as session:
        session.add(LoginLink(code_hash=digest(code), token_name=principal.name, role=principal.role.value,
                              created_at=now, expires_at=now + lifetime))
    return code


def redeem_login_link(store: Engine, code: str, now: datetime) -> Principal | None:
    """The link's principal, once: the row is marked used in the same transaction, by a conditional update, so two
    replicas redeeming it at once cannot both succeed."""
    with session_scope(store) as session:
        record = session.exec(select(LoginLink).where(LoginLink.code_hash == digest(code))).first()
        if record is None or record.used_at is not None or as_utc(record.expires_at) <= now:
            return None
        claimed = session.execute(update(LoginLink).where(col(LoginLink.pk) == record.pk,
                                                          col(LoginLink.used_at).is_(None)).values(used_at=now))
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            return None
        return Principal(record.token_name, Role(record.role))
