"""`keyguard` starts fast: a sub-command imports only what it uses, and `--help` imports no sub-command at all."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

from keyguard.cli import SUBCOMMANDS
from keyguard.tools import PROJECT_ROOT

# The service, the exchanges, the cloud and the OPA server client: none of them is needed to check a document.
NOT_FOR_POLICY_CHECK = ("fastapi", "sqlmodel", "sqlalchemy", "ccxt", "boto3", "botocore", "aiohttp", "pulumi",
                        "opa_client", "requests", "uvicorn", "apprise")

# Runs the real command in this interpreter and prints, after its output, every module it had imported.
RUN_AND_LIST_MODULES = """
import atexit, json, sys
atexit.register(lambda: print("\\nMODULES " + json.dumps(sorted(sys.modules))))
sys.argv = ["keyguard", *sys.argv[1:]]
from keyguard.cli import main
main()
"""


def run_keyguard(*args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    proc = subprocess.run([sys.executable, "-c", RUN_AND_LIST_MODULES, *args], capture_output=True, text=True,
                          cwd=PROJECT_ROOT, timeout=180)
    output, _, listed = proc.stdout.rpartition("\nMODULES ")
    proc.stdout = output
    return proc, set(json.loads(listed)) if listed else set()


def top_level(modules: set[str]) -> set[str]:
    return {name.partition(".")[0] for name in modules}


def test_policy_check_imports_no_server_exchange_or_cloud_library(tmp_path: Path) -> None:
    document = tmp_path / "keys.yaml"
    document.write_text("kind: keys\nnow: 2026-11-01T00:00:00Z\nkeys: []\n")
    proc, modules = run_keyguard("policy", "check", str(document), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []
    assert not top_level(modules) & set(NOT_FOR_POLICY_CHECK)


def test_importing_the_policy_commands_loads_no_server_exchange_or_cloud_library() -> None:
    code = "import json, sys, keyguard.policy.cli; print(json.dumps(sorted(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert not top_level(set(json.loads(proc.stdout))) & set(NOT_FOR_POLICY_CHECK)


def test_help_lists_every_sub_command_without_importing_any() -> None:
    proc, modules = run_keyguard("--help")
    assert proc.returncode == 0, proc.stderr
    for name, (module, _) in SUBCOMMANDS.items():
        assert name in proc.stdout
        assert module not in modules
    assert not top_level(modules) & set(NOT_FOR_POLICY_CHECK)


def test_help_shows_each_sub_commands_own_help() -> None:
    """The listing reads SUBCOMMANDS; `keyguard <area> --help` reads the sub-app: the two must say the same."""
    for name, (module, help_text) in SUBCOMMANDS.items():
        assert importlib.import_module(module).app.info.help == help_text, name
