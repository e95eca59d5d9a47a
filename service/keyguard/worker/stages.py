"""The go-live stages a trading process (worker or gateway) has run in, and when it entered each: the history the
ladder rule (KG-LIVE-102) times, kept in the process's state directory."""

from __future__ import annotations

import json
import time
from pathlib import Path


class StageHistory:
    def __init__(self, path: Path) -> None:
        self.path = path

    def entries(self) -> list[dict[str, str]]:
        """What the file holds; an unreadable file is no history, which the ladder rule reports (never a pass)."""
        try:
            history = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return []
        return history if isinstance(history, list) else []

    def enter(self, stage: str, now: float) -> None:
        """Record `stage` as entered at `now` unless it is already the latest entry."""
        history = self.entries()
        if not history or history[-1].get("stage") != stage:
            history.append({"stage": stage, "entered_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))})
            self.path.write_text(json.dumps(history))
