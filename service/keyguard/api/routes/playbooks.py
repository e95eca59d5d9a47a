"""Playbooks: what to do, in order, when paged for a rule."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from keyguard.api.deps import ViewerDep
from keyguard.errors import ConfigError
from keyguard.incidents.playbooks import Playbook, playbook_for

router = APIRouter(prefix="/api/playbooks", tags=["playbooks"])


@router.get("/{rule_id}")
def get_playbook(rule_id: str, _: ViewerDep) -> Playbook:
    try:
        return playbook_for(rule_id)
    except ConfigError:
        raise HTTPException(status_code=404, detail=f"no playbook for rule {rule_id!r}") from None
