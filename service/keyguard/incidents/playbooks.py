"""Looking up the playbook for a rule: the exact id first, then the longest matching id prefix."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import yaml
from pydantic import BaseModel, Field, ValidationError

from keyguard.errors import ConfigError

PLAYBOOKS_FILE = Path(__file__).with_name("playbooks.yaml")


class Playbook(BaseModel):
    key: str = ""
    title: str
    contain: list[str] = Field(min_length=1)
    checklist: list[str] = Field(default_factory=list)


@cache
def load_playbooks(path: Path = PLAYBOOKS_FILE) -> dict[str, Playbook]:
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    entries = raw.get("playbooks")
    if not isinstance(entries, dict):
        raise ConfigError(f"{path}: expected a top-level 'playbooks' mapping")
    books = {}
    for key, value in entries.items():
        try:
            books[key] = Playbook.model_validate({**value, "key": key})
        except (ValidationError, TypeError) as exc:
            raise ConfigError(f"{path}: playbook {key}: {exc}") from None
    return books


def playbook_for(rule_id: str) -> Playbook:
    books = load_playbooks()
    if rule_id in books:
        return books[rule_id]
    prefixes = [k for k in books if rule_id.startswith(k)]  # "KG-EXE-2" covers the live-state rules 2xx
    if not prefixes:
        raise ConfigError(f"no playbook for rule {rule_id!r}; known: {', '.join(sorted(books))}")
    return books[max(prefixes, key=len)]
