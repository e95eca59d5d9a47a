"""The persistent kill switch: a small file any process (the worker, the CLI, the service) can flip.

Engaged state survives restarts because it lives on disk. The worker sees another process's change with one
`stat` before each order (mtime/inode/size changed -> re-read), so the pre-trade check stays in memory.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from keyguard.errors import ConfigError


@dataclass(frozen=True)
class KillSwitchState:
    engaged: bool
    reason: str = ""
    changed_at: str = ""
    changed_by: str = ""
    # When it was last engaged (kept across releases): the evidence the switch has been exercised.
    last_engaged_at: str = ""


class KillSwitch:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._stamp: tuple[int, int, int] | None = None
        self._state = KillSwitchState(engaged=False)
        self.refresh()

    def _read(self) -> KillSwitchState:
        try:
            raw = self.path.read_text()
        except FileNotFoundError:
            return KillSwitchState(engaged=False)
        try:
            data = json.loads(raw)
            return KillSwitchState(bool(data["engaged"]), str(data.get("reason", "")),
                                   str(data.get("changed_at", "")), str(data.get("changed_by", "")),
                                   str(data.get("last_engaged_at", "")))
        except (ValueError, KeyError, TypeError):
            # A file we cannot read is not evidence the switch is off: treat it as engaged.
            return KillSwitchState(engaged=True, reason=f"unreadable kill switch file {self.path}")

    def refresh(self) -> bool:
        """Re-read the file only if it changed since the last look; returns whether the switch is engaged."""
        try:
            st = os.stat(self.path)
            stamp = (st.st_mtime_ns, st.st_ino, st.st_size)
        except FileNotFoundError:
            stamp = (0, 0, 0)
        if stamp != self._stamp:
            self._stamp = stamp
            self._state = self._read()
        return self._state.engaged

    @property
    def state(self) -> KillSwitchState:
        return self._state

    @property
    def engaged(self) -> bool:
        return self._state.engaged

    def set(self, engaged: bool, reason: str, by: str = "worker") -> KillSwitchState:
        self.refresh()
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        state = KillSwitchState(engaged, reason, now, by, now if engaged else self._state.last_engaged_at)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(state.__dict__))
            # rename is atomic: a reader sees the old file or the new one, never half of it
            os.replace(tmp, self.path)
        except OSError as exc:
            raise ConfigError(f"kill switch file {self.path}: cannot write ({exc})") from exc
        self._stamp = None
        self.refresh()
        return state

    def engage(self, reason: str, by: str = "worker") -> KillSwitchState:
        return self.set(True, reason, by)

    def release(self, reason: str, by: str = "operator") -> KillSwitchState:
        return self.set(False, reason, by)
