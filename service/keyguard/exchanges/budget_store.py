"""Where the shared rate-limit budget lives: one store per host (or per egress IP) for every process.

`FileBudgetStore` (the embedded default) keeps the state in a small file guarded by an exclusive `flock`;
`SqliteBudgetStore` does the same in a SQLite file with `BEGIN IMMEDIATE`. Both are safe across processes;
bench/limiter.py measures both and the file store is the faster (see docs/benchmarks.md).
A Redis backend for several hosts behind one IP fills the same `BudgetStore.update` contract.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import random
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from keyguard.errors import ConfigError
from keyguard.exchanges.budget import BudgetState, BudgetStore

T = TypeVar("T")
log = logging.getLogger(__name__)


class InMemoryBudgetStore:
    """One process only (threads share it); for tests of the arithmetic and single-process tools."""

    def __init__(self) -> None:
        self._state = BudgetState()
        self._lock = threading.Lock()

    def update(self, fn: Callable[[BudgetState], T]) -> T:
        with self._lock:
            return fn(self._state)

    def close(self) -> None:
        pass


# json.dumps(..., separators=(",", ":")) builds this encoder on every call; its output is the same.
_ENCODE = json.JSONEncoder(separators=(",", ":")).encode
_FIRST_READ = 1 << 16  # the file is a few hundred bytes; one larger than this is read again whole
_MAX_READ = 1 << 20


class FileBudgetStore:
    """The state as compact JSON in one file; `flock(LOCK_EX)` serialises read-modify-write across processes.

    Each update reads the whole file under the lock. When its bytes are the very bytes this store last wrote or read
    there, the state they hold is already known (the state is a function of the bytes alone, so it does not matter who
    wrote them): it is copied from the one kept then instead of parsed again. Any other bytes (another process wrote
    since, a torn write) are parsed as before. The kept state is never handed out, so nothing a caller does with the
    state it is given can change it. And when the update left the copy as it was given (see `_untouched`), its JSON
    is the file's bytes already: nothing is encoded or written (a usage header under our own count)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"limiter budget file {self.path}: cannot create its directory ({exc})") from exc
        self._thread_lock = threading.Lock()
        self._fd = -1
        self._pid = -1
        # The file's bytes as this store last wrote or read them, and the state they hold (as BudgetState.from_json
        # of their JSON makes it: JSON's own types, which the budget's arithmetic is made of, come back the same).
        self._known: tuple[bytes, BudgetState] | None = None

    def _descriptor(self) -> int:
        # flock belongs to the open file description, which a forked child shares: reopen after fork.
        if self._pid != os.getpid():
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            self._pid = os.getpid()
        return self._fd

    def update(self, fn: Callable[[BudgetState], T]) -> T:
        with self._thread_lock:
            fd = self._descriptor()
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                raw = os.pread(fd, _FIRST_READ, 0)
                if len(raw) == _FIRST_READ:
                    raw = os.pread(fd, _MAX_READ, 0)
                known = self._known
                kept = known[1] if known is not None and known[0] == raw else None
                state = _parse(raw, self.path) if kept is None else _copy(kept)
                result = fn(state)
                if kept is not None and _untouched(state, kept):
                    return result  # the file holds this state already (and `_known` still describes it)
                out = _ENCODE(state.to_json()).encode()
                if out != raw:
                    os.pwrite(fd, out, 0)
                    if len(out) < len(raw):
                        os.ftruncate(fd, len(out))
                # Kept only once the file holds `out`: a failed write leaves the next update to read what is there.
                self._known = (out, _copy(state))
                return result
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd >= 0 and self._pid == os.getpid():
            os.close(self._fd)
        self._fd, self._pid = -1, -1


def _copy(state: BudgetState) -> BudgetState:
    return BudgetState(pools={key: list(entry) for key, entry in state.pools.items()},
                       banned_until=dict(state.banned_until))


def _untouched(state: BudgetState, kept: BudgetState) -> bool:
    """Whether `state`, a `_copy` of `kept`, still holds what kept holds. Then its JSON says what the file already
    says: it could differ only in how an equal number is spelt (5 and 5.0), and no update here assigns one of those
    (charges are whole numbers added, corrections and back-offs are written only when larger)."""
    return state.pools == kept.pools and state.banned_until == kept.banned_until


def _parse(raw: bytes, path: Path) -> BudgetState:
    if not raw:
        return BudgetState()
    try:
        return BudgetState.from_json(json.loads(raw))
    except (ValueError, TypeError, AttributeError):
        # A torn write (crash between write and truncate): start over; the next response's usage headers
        # put the exchange's own count back.
        log.warning("limiter budget file %s was unreadable; rebuilt from the next usage headers", path)
        return BudgetState()


class SqliteBudgetStore:
    """The state as rows in a SQLite file; `BEGIN IMMEDIATE` takes the write lock before reading."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._thread_lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = -1

    def _connection(self) -> sqlite3.Connection:
        if self._pid != os.getpid() or self._conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            # Switching to WAL while another process creates the file can answer "database is locked" at once,
            # without waiting on the busy timeout; retry that first set-up briefly instead of failing the caller.
            for attempt in range(100):
                try:
                    conn.execute("PRAGMA journal_mode=WAL")
                    # The budget is advisory state that header correction rebuilds; durability is not needed.
                    conn.execute("PRAGMA synchronous=OFF")
                    conn.execute(
                        "CREATE TABLE IF NOT EXISTS budget (key TEXT PRIMARY KEY, a REAL NOT NULL, b REAL NOT NULL)"
                    )
                    break
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) or attempt == 99:
                        raise
                    time.sleep(0.01 + random.random() * 0.04)
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    def update(self, fn: Callable[[BudgetState], T]) -> T:
        with self._thread_lock:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                state = BudgetState()
                for key, a, b in conn.execute("SELECT key, a, b FROM budget"):
                    if key.startswith("ban:"):
                        state.banned_until[key[4:]] = a
                    else:
                        state.pools[key] = [a, b]
                before = state.to_json()
                before = {"p": {k: list(v) for k, v in before["p"].items()}, "b": dict(before["b"])}
                result = fn(state)
                for key, (a, b) in state.pools.items():
                    if before["p"].get(key) != [a, b]:
                        conn.execute("INSERT OR REPLACE INTO budget VALUES (?, ?, ?)", (key, a, b))
                for ip, until in state.banned_until.items():
                    if before["b"].get(ip) != until:
                        conn.execute("INSERT OR REPLACE INTO budget VALUES (?, ?, 0)", (f"ban:{ip}", until))
                conn.execute("COMMIT")
                return result
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def close(self) -> None:
        if self._conn is not None and self._pid == os.getpid():
            self._conn.close()
        self._conn, self._pid = None, -1


def default_budget_path(egress_ip: str, backend: str) -> Path:
    """Where every process on the host finds the budget of `egress_ip`: the worker, the gateway and the service's
    inspections all charge this one. $KEYGUARD_BUDGET_DIR moves the directory (default <tmp>/keyguard-budget)."""
    directory = os.environ.get("KEYGUARD_BUDGET_DIR") or str(Path(tempfile.gettempdir()) / "keyguard-budget")
    return Path(directory) / f"{egress_ip}.{backend}"


def open_budget_store(backend: str, path: str | Path) -> BudgetStore:
    """The store named in config: `file` (default, fastest measured), `sqlite`, or `memory` (one process)."""
    if backend == "file":
        return FileBudgetStore(path)
    if backend == "sqlite":
        return SqliteBudgetStore(path)
    if backend == "memory":
        return InMemoryBudgetStore()
    raise ConfigError(f"limiter.backend: unknown budget store {backend!r}; use one of file, sqlite, memory")
