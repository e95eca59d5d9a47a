"""Wheel build hook: the wheel carries the policy bundle, built by `opa build` with a revision, and the input
schemas, so an installed Keyguard evaluates policies with no checkout present (keyguard.tools.PACKAGED_BUNDLE).

The build needs the pinned opa (`make setup` puts it in .tools/bin; KEYGUARD_OPA_BIN or PATH also work) and
fails without one: a wheel without its policies would install cleanly and then refuse every check.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class PolicyBundleHook(BuildHookInterface):  # type: ignore[type-arg]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel" or version == "editable":
            return  # an editable install reads policies/ and schemas/ from the checkout itself
        root = Path(self.root)
        self._scratch = Path(tempfile.mkdtemp(prefix="keyguard-wheel-"))
        out = self._scratch / "keyguard-policies.tar.gz"
        # opa is found as keyguard finds it (keyguard.tools.opa_binary); none is a build error naming the fix.
        bundle = _bundle_module(root).build_bundle(root / "policies", out, version=self.metadata.version)
        self.app.display_info(f"policy bundle {bundle.describe()}")
        build_data["force_include"][str(out)] = "keyguard/bundle/keyguard-policies.tar.gz"
        build_data["force_include"][str(root / "schemas")] = "keyguard/schemas"

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        scratch = getattr(self, "_scratch", None)
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def _bundle_module(root: Path) -> Any:
    """keyguard.policy.bundle without keyguard.policy's __init__ (which needs the runtime dependencies)."""
    sys.path.insert(0, str(root / "service"))
    spec = importlib.util.spec_from_file_location("keyguard_bundle_build", root / "service/keyguard/policy/bundle.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module
