"""Run the shipped Pulumi program with one resource transformation applied: how a mutated program is built
without editing the shipped code. Imported by each mutation program's __main__.py."""

from __future__ import annotations

import runpy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pulumi

SHIPPED_PROGRAM = Path(__file__).resolve().parents[3] / "infra"


def run_shipped_with(type_token: str, mutate: Callable[[dict[str, Any]], None]) -> None:
    def transformation(args: pulumi.ResourceTransformationArgs) -> pulumi.ResourceTransformationResult | None:
        if args.type_ != type_token:
            return None
        mutate(args.props)
        return pulumi.ResourceTransformationResult(args.props, args.opts)

    pulumi.runtime.register_stack_transformation(transformation)
    runpy.run_path(str(SHIPPED_PROGRAM), run_name="__main__")
