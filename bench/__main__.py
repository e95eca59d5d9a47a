"""Run every benchmark: `uv run python -m bench [name ...]`. Each is also runnable alone
(`uv run python -m bench.limiter`). A benchmark is any module in this package with `main(argv)`."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from collections.abc import Callable
from pathlib import Path


def discover() -> dict[str, Callable[[list[str]], None]]:
    found = {}
    for info in sorted(pkgutil.iter_modules([str(Path(__file__).parent)]), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"bench.{info.name}")
        if callable(getattr(module, "main", None)):
            found[info.name] = module.main
    return found


def main() -> None:
    benchmarks = discover()
    chosen = sys.argv[1:] or list(benchmarks)
    unknown = [name for name in chosen if name not in benchmarks]
    if unknown:
        sys.exit(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(benchmarks)}")
    for name in chosen:
        print(f"\n== {name} ==", flush=True)
        benchmarks[name]([])


if __name__ == "__main__":
    main()
