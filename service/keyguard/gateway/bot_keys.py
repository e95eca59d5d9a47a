"""Per-bot gateway keys: a bot signs with these, Binance-style, and never holds the exchange's key or secret.

The file holds each bot's key and secret (the gateway needs the secret to check HMAC signatures), is written
atomically with mode 0600, and is re-read when it changes, so `keyguard gateway keys create` takes effect on a
running gateway without a restart."""

from __future__ import annotations

import json
import os
import secrets
import string
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from keyguard.errors import ConfigError
from keyguard.redact import register_secret

_ALPHABET = string.ascii_letters + string.digits


@dataclass(frozen=True)
class BotKey:
    bot: str
    api_key: str
    secret: str
    created_at: str
    revoked_at: str | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def _token(length: int = 64) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


class BotKeyStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._where = os.fspath(path)  # stat'ed on every lookup: the str, not the Path, each time
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._by_key: dict[str, BotKey] = {}
        self._active: dict[str, BotKey] = {}  # what lookup answers: the keys not revoked

    def _load(self) -> list[BotKey]:
        try:
            if self.path.stat().st_mode & 0o077:
                raise ConfigError(f"gateway keys file {self.path} is readable by other users; chmod 600 it")
            raw = json.loads(self.path.read_text())
        except FileNotFoundError:
            return []
        except (OSError, ValueError, UnicodeDecodeError):
            raise ConfigError(f"gateway keys file {self.path} is not readable JSON") from None
        entries = raw.get("keys") if isinstance(raw, dict) else None
        if not isinstance(entries, list):
            raise ConfigError(f"gateway keys file {self.path}: expected an object with a list `keys`")
        keys = []
        for n, entry in enumerate(entries):
            try:
                key = BotKey(str(entry["bot"]), str(entry["api_key"]), str(entry["secret"]),
                             str(entry["created_at"]), entry.get("revoked_at"))
            except (KeyError, TypeError):
                raise ConfigError(f"gateway keys file {self.path}: keys[{n}] needs bot, api_key, secret and "
                                  "created_at") from None
            register_secret(key.secret)
            keys.append(key)
        return keys

    def _refresh(self) -> None:
        try:
            st = os.stat(self._where)
            stamp = (st.st_mtime_ns, st.st_ino, st.st_size)
        except FileNotFoundError:
            stamp = (0, 0, 0)
        if stamp != self._stamp:
            self._by_key = {k.api_key: k for k in self._load()}
            self._active = {api_key: k for api_key, k in self._by_key.items() if k.active}
            self._stamp = stamp

    def lookup(self, api_key: str) -> BotKey | None:
        """The active key with this id, or None (unknown or revoked)."""
        with self._lock:
            self._refresh()
            return self._active.get(api_key)

    def keys(self) -> list[BotKey]:
        with self._lock:
            self._refresh()
            return list(self._by_key.values())

    def _write(self, keys: list[BotKey]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump({"keys": [k.__dict__ for k in keys]}, out, indent=2)
        os.replace(tmp, self.path)
        self._stamp = None

    def create(self, bot: str) -> BotKey:
        """A new key and secret for `bot`; the bot's earlier keys stay valid until revoked."""
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        key = BotKey(bot, _token(), _token(), now)
        register_secret(key.secret)
        with self._lock:
            self._refresh()
            self._write([*self._by_key.values(), key])
        return key

    def revoke(self, bot: str) -> int:
        """Revoke every active key of `bot`; returns how many were revoked."""
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        with self._lock:
            self._refresh()
            keys = list(self._by_key.values())
            hit = [k for k in keys if k.bot == bot and k.active]
            self._write([BotKey(k.bot, k.api_key, k.secret, k.created_at, now) if k in hit else k for k in keys])
        return len(hit)
