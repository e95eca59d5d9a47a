"""Rules: the loaded policy bundle's rule catalogue (read once per bundle; a reload forgets it)."""

from __future__ import annotations

from fastapi import APIRouter

from keyguard.api.deps import ContextDep, ViewerDep
from keyguard.policy.catalogue import load_rules

router = APIRouter(prefix="/api/rules", tags=["rules"])


@router.get("")
def list_rules(_: ViewerDep, context: ContextDep) -> list[dict[str, str]]:
    if not context.rules:
        context.rules.extend(load_rules(context.service.engine.bundle or context.service.engine.policy_root))
    return context.rules
