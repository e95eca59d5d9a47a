"""Policy: an operator reloads the bundle; a broken one is refused and the last good one keeps serving."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from keyguard.api.deps import ContextDep, OperatorDep
from keyguard.errors import PolicyError

router = APIRouter(prefix="/api/policy", tags=["policy"])


@router.post("/reload", name="policy.reload")
def reload_policies(operator: OperatorDep, context: ContextDep) -> JSONResponse:
    """Load the policy directory again; a broken bundle is refused and the last good one keeps serving."""
    try:
        bundle = context.service.engine.reload()
    except PolicyError as exc:
        operator.failed(str(exc))
        return JSONResponse(status_code=422, content={"reloaded": False, "error": str(exc)})
    context.rules.clear()
    operator.ok(f"bundle {bundle.revision}: {len(bundle.modules)} modules loaded")
    return JSONResponse({"reloaded": True, "revision": bundle.revision, "modules": len(bundle.modules)})
