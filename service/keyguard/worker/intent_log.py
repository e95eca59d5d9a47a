"""The journal's intent log: a new order's rows made durable before its request leaves, without waiting on the
database's commit.

Each record is one JSON line, `[client order id, intent id, [[sql, parameters], ...]]`: the very INSERTs the journal
runs for the order's first row (and its companions), with their bound parameters. Appending it is one `write` to a
file opened for appending; the database's insert then runs while the request is out (see OrderExecutor.place). A
record survives what a committed row survives with the journal's settings (WAL, synchronous=NORMAL): a crash of the
process, not a power loss. On start the owner replays every record whose row the database lacks, in one transaction
per record, so a crash between the append and the insert leaves a SENT row that reconciliation settles by look-up,
as a crash during the request always did.

One process owns the log at a time (an exclusive `flock` held while it runs). Another process that opens the same
journal (a CLI reading rows, a second gateway by mistake) gets no log and inserts before sending, as before; it never
replays or truncates records a live owner may still be inserting. Once the file has grown past `COMPACT_AT` bytes it
is replaced, atomically (a new file, locked, renamed over it), by one holding only the records still waiting for their
rows, so it stays small however busy the gateway is.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

COMPACT_AT = 1 << 20
_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True).encode

Writes = list[tuple[str, Any]]


class IntentLog:
    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd = fd
        self._lock = threading.Lock()
        # client order id -> (intent id, its record) of records whose rows are not in the database yet
        self._pending: dict[str, tuple[str, bytes]] = {}
        self._size = os.fstat(fd).st_size

    @classmethod
    def claim(cls, path: Path) -> IntentLog | None:
        """The log at `path` for this process, or None while another process holds it."""
        fd = _locked(path, os.O_CREAT)
        if fd is None:
            log.info("intent log %s is held by another process: this one journals each order before sending", path)
            return None
        return cls(path, fd)

    def records(self) -> list[tuple[str, str, Writes]]:
        """Every whole record in the file. A line that is not one (a write cut short by a crash: its request never
        left) is skipped and named in the log."""
        with self._lock:
            size = os.fstat(self._fd).st_size
            raw = os.pread(self._fd, size, 0) if size else b""
        found: list[tuple[str, str, Writes]] = []
        for number, line in enumerate(raw.split(b"\n"), start=1):
            if not line.strip():
                continue
            try:
                cid, intent_id, writes = json.loads(line)
                if not (isinstance(cid, str) and isinstance(intent_id, str) and isinstance(writes, list)):
                    raise ValueError("not [client order id, intent id, writes]")
                found.append((cid, intent_id, [(str(sql), params) for sql, params in writes]))
            except (ValueError, TypeError) as exc:
                log.warning("intent log %s line %d: not a whole record (%s); skipped: an append cut short never "
                            "reached the exchange", self.path, number, exc)
        return found

    def append(self, cid: str, intent_id: str, writes: Writes) -> None:
        """Make the record durable (against a crash of this process) before the caller sends its request."""
        record = (_ENCODE([cid, intent_id, writes]) + "\n").encode()
        with self._lock:
            written = os.write(self._fd, record)
            if written != len(record):  # a regular file takes it whole or raises; never leave half a record
                os.ftruncate(self._fd, self._size)
                raise OSError(f"intent log {self.path}: short write ({written} of {len(record)} bytes)")
            self._size += written
            self._pending[cid] = (intent_id, record)

    def settled(self, cid: str) -> None:
        """The record's rows are in the database now."""
        with self._lock:
            if self._pending.pop(cid, None) is not None and self._size > COMPACT_AT:
                self._compact()

    def holds(self, intent_id: str) -> bool:
        """Whether an order of this intent is durable here but not yet in the database."""
        with self._lock:
            return any(pending == intent_id for pending, _ in self._pending.values())

    def clear(self) -> None:
        """Keep only the records still waiting for their rows (after a replay: none)."""
        with self._lock:
            self._compact()

    def _compact(self) -> None:
        """Replace the file by one holding only the pending records: written and locked under another name, then
        renamed over it, so a crash at any point leaves a whole log (the old one or the new) that holds them."""
        if not self._pending:
            os.ftruncate(self._fd, 0)
            self._size = 0
            return
        fresh_path = self.path.with_name(self.path.name + ".new")
        fd = _locked(fresh_path, os.O_CREAT | os.O_TRUNC)
        if fd is None:  # cannot happen while we hold the log; keep the long file rather than lose a record
            return
        try:
            kept = b"".join(record for _, record in self._pending.values())
            if os.write(fd, kept) != len(kept):
                raise OSError("short write")
            os.replace(fresh_path, self.path)
        except OSError as exc:
            os.close(fd)
            log.warning("intent log %s: compaction failed (%s); the log keeps growing until the next try",
                        self.path, exc)
            return
        os.close(self._fd)
        self._fd, self._size = fd, len(kept)

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(self._fd)  # the flock goes with it
                self._fd = -1


def _locked(path: Path, flags: int) -> int | None:
    """`path` opened for appending and locked for this process; None when another holds its lock."""
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC | flags, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd
