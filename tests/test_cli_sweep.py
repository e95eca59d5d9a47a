"""Every file-taking command and flag, fed hostile files and canary secrets (scripts/sweep_cli.py): each ends in
one line and exit 2, with no traceback and no canary in the output."""

from __future__ import annotations

import subprocess
import sys

from keyguard.tools import PROJECT_ROOT

SWEEP = PROJECT_ROOT / "scripts" / "sweep_cli.py"


def sweep(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    # Its own process: the sweep forks one child per case, which is only safe from a single-threaded parent.
    return subprocess.run(
        [sys.executable, str(SWEEP), *args], capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=timeout
    )


def test_every_file_taking_command_refuses_hostile_input_with_exit_2_and_no_secret() -> None:
    proc = sweep("--jobs", "4", "--verbose", timeout=300)
    failures = [line for line in proc.stdout.splitlines() if " FAIL " in line]
    assert proc.returncode == 0 and not failures, "\n".join(failures) or proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = proc.stdout.strip().splitlines()[-1]
    cases = int(summary.split()[0])
    assert cases > 400, summary  # discovery found the commands (a broken walk would sweep nothing and pass)
    for command in ("worker run", "infra drift", "infra check", "keys inspect", "policy check", "serve"):
        assert f"\n{command} " in proc.stdout, f"{command} was not swept"


def test_the_same_cases_through_a_real_process_match() -> None:
    """The in-process sweep runs the CLI's own main(); three cases through `python -m keyguard.cli` confirm it."""
    for only, case in (
        ("worker status", "directory"),
        ("infra drift", "binary"),
        ("keys inspect", "canary in --api-key-env"),
    ):
        proc = sweep("--subprocess", "--only", only, "--case", case, timeout=180)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "0 failed" in proc.stdout.strip().splitlines()[-1]
