"""One APIRouter per resource; `keyguard.api.app` includes them all."""
