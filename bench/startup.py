"""CLI start-up: the wall time of `keyguard policy check` on one small document, and of `keyguard --help`.

Every variant is a fresh process, run --runs times, the variants interleaved so that load on the machine falls on
all of them alike; wall time (median, min, 90th percentile) and the CPU time of the process and its children.
- Keyguard: `keyguard policy check` as a user runs it: only the imports the check uses, the bundle built from
  this checkout taken from the cache of checked builds, one `opa eval` of it while the document is validated.
  Its first run, with an empty cache, also runs `opa check` and `opa build`.
- Baseline: the path the command took before, in the same interpreter: the OPA server client imported at start,
  the policy directory checked and built, `opa run --server` started and polled until healthy, the document
  queried over HTTP (PolicyEngine.managed), the findings printed.
- Floors: `opa eval` of the built bundle alone (what OPA needs whatever Python does), and the interpreter
  importing the policy commands and exiting.
- `keyguard --help`, and the baseline that imports every sub-command to list it (what the listing did before).

    uv run python -m bench.startup [--runs 20] [--policy-dir policies]
"""

from __future__ import annotations

import argparse
import itertools
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from keyguard.policy.bundle import resolve_bundle
from keyguard.tools import PROJECT_ROOT, opa_binary

DOCUMENT = "kind: keys\nnow: 2026-11-01T00:00:00Z\nkeys: []\n"

BASELINE_CHECK = """
import sys
from pathlib import Path

import opa_client, requests  # imported with the engine on every start before
from rich.console import Console

import keyguard.cli, keyguard.policy.cli
from keyguard.policy.documents import load_document
from keyguard.policy.engine import PolicyEngine
from keyguard.policy.report import print_findings

path = Path(sys.argv[1])
document = load_document(path)
with PolicyEngine.managed() as engine:
    findings = engine.evaluate(document, source=str(path))
print_findings(findings, Console())
"""

BASELINE_HELP = """
import importlib, sys
from keyguard.cli import SUBCOMMANDS, main
for module, _ in SUBCOMMANDS.values():
    importlib.import_module(module)
sys.argv = ["keyguard", "--help"]
main()
"""


def keyguard_command() -> list[str]:
    script = Path(sys.executable).with_name("keyguard")  # the console script a user runs, not `uv run`
    return [str(script)] if script.is_file() else [sys.executable, "-m", "keyguard.cli"]


def timed(args: list[str], env: dict[str, str], expect: str) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300, cwd=PROJECT_ROOT)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0 or expect not in proc.stdout:
        raise SystemExit(f"{' '.join(args[:4])} failed ({proc.returncode}):\n{proc.stdout[-1000:]}"
                         f"{proc.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def run(runs: int, policy_dir: Path) -> list[tuple[str, list[float], list[float]]]:
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as scratch:
        tmp = Path(scratch)
        document = tmp / "small.yaml"
        document.write_text(DOCUMENT)
        (tmp / "small.json").write_text('{"kind": "keys", "now": "2026-11-01T00:00:00Z", "keys": []}')
        # Bytecode is written and reused, as for an installed Keyguard (the untimed first run writes it).
        env = {**{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
               "KEYGUARD_POLICY_DIR": str(policy_dir), "XDG_CACHE_HOME": str(tmp / "cache"), "COLUMNS": "120"}
        bundle = resolve_bundle(policy_dir).path  # also fills the bench's own cache: the warm variant's state
        cold_runs = itertools.count()

        def cold_env() -> dict[str, str]:
            return {**env, "XDG_CACHE_HOME": str(tmp / f"cold-{next(cold_runs)}")}  # an empty cache every run

        keyguard = keyguard_command()
        variants: list[tuple[str, Callable[[], tuple[float, float]]]] = [
            ("Keyguard: `keyguard policy check` (cached checked bundle, `opa eval`)",
             lambda: timed([*keyguard, "policy", "check", str(document)], env, "no findings")),
            ("Keyguard, first run: empty cache (+ `opa check`, `opa build`)",
             lambda: timed([*keyguard, "policy", "check", str(document)], cold_env(), "no findings")),
            ("baseline: server client imported, check + build, `opa run --server`, HTTP",
             lambda: timed([sys.executable, "-c", BASELINE_CHECK, str(document)], cold_env(), "no findings")),
            ("floor: `opa eval` of the built bundle alone",
             lambda: timed([opa_binary(), "eval", "--bundle", str(bundle), "--input", str(tmp / "small.json"),
                            "--format", "json", "data.keyguard.main.findings"], env, "result")),
            ("floor: `python -c 'import keyguard.policy.cli'`",
             lambda: timed([sys.executable, "-c", "import keyguard.policy.cli; print('imported')"], env, "imported")),
            ("Keyguard: `keyguard --help`", lambda: timed([*keyguard, "--help"], env, "policy")),
            ("baseline: `--help` importing every sub-command",
             lambda: timed([sys.executable, "-c", BASELINE_HELP], env, "policy")),
        ]
        samples: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name, _ in variants}
        for _, measure in variants:  # one untimed run each: caches of the OS and of Python's bytecode
            measure()
        for _ in range(runs):
            for name, measure in variants:
                wall, cpu = measure()
                samples[name][0].append(wall)
                samples[name][1].append(cpu)
    return [(name, *samples[name]) for name, _ in variants]


def print_rows(rows: list[tuple[str, list[float], list[float]]], runs: int) -> None:
    print(f"{runs} runs each, interleaved; wall seconds, and CPU seconds (user + system, with child processes)")
    print(f"{'variant':<76}{'p50':>7}{'min':>7}{'p90':>7}{'CPU p50':>9}")
    for name, walls, cpus in rows:
        ordered = sorted(walls)
        p90 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]
        print(f"{name:<76}{statistics.median(walls):>7.3f}{ordered[0]:>7.3f}{p90:>7.3f}{statistics.median(cpus):>9.3f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--policy-dir", type=Path, default=PROJECT_ROOT / "policies")
    args = parser.parse_args(argv)
    print_rows(run(args.runs, args.policy_dir.resolve()), args.runs)


if __name__ == "__main__":
    main(sys.argv[1:])
