"""Shared by the gate tests: canary credentials made at run time (this repository's own gate scans its diffs,
so no credential shape is ever written into a file here), a user repository in git, and the SARIF schema."""

from __future__ import annotations

import json
import random
import shutil
import string
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft4Validator

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "gate"
USER_REPO = FIXTURES / "user-repo"
ALNUM = string.ascii_letters + string.digits
BASE32 = string.ascii_uppercase + "234567"
BASE64 = ALNUM + "/+"
HEX = "0123456789abcdef"

_rng = random.Random(20261129)  # fixed: the same canaries every run, so a failure reproduces


def canary(alphabet: str, length: int, prefix: str = "") -> str:
    return prefix + "".join(_rng.choice(alphabet) for _ in range(length - len(prefix)))


def aws_access_key() -> str:
    return "AK" + "IA" + canary(BASE32, 16, "KGC7")


def binance_secret() -> str:
    return canary(ALNUM, 64, "Kg7q")


def uuid_shaped() -> str:
    return "-".join(canary(HEX, n, "7f") for n in (8, 4, 4, 4, 12))


def git(repo: Path, *args: str) -> str:
    proc = subprocess.run(["git", "-C", str(repo), "-c", "user.name=Keyguard Test",
                           "-c", "user.email=gate-test@example.invalid", "-c", "commit.gpgsign=false", *args],
                          capture_output=True, text=True, check=True, timeout=60)
    return proc.stdout.strip()


def user_repo(tmp: Path) -> tuple[Path, str]:
    """The sample user repository as a git repo with one commit (the PR's base); returns it and the base sha."""
    repo = tmp / "user-repo"
    shutil.copytree(USER_REPO, repo)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base")
    return repo, git(repo, "rev-parse", "HEAD")


def commit_files(repo: Path, files: dict[str, str], message: str = "head") -> str:
    for name, text in files.items():
        path = repo / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


@cache
def _sarif_validator() -> Draft4Validator:
    schema = json.loads((FIXTURES / "sarif-schema-2.1.0.json").read_text(encoding="utf-8"))
    Draft4Validator.check_schema(schema)
    return Draft4Validator(schema)


def assert_valid_sarif(log: Any) -> None:
    errors = sorted(_sarif_validator().iter_errors(log), key=lambda e: list(e.absolute_path))
    assert not errors, "; ".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:5])


def line_of(path: Path, needle: str, after: str | None = None) -> int:
    """1-based line of the first line containing `needle` (after the first containing `after`)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if after in line) if after else 0
    return next(i for i, line in enumerate(lines) if i >= start and needle in line) + 1
