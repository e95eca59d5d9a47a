"""The lines a change adds: read from `git diff` between two commits, or from a unified diff file.

Errors name the ref, file or diff line number that is wrong, never a line's content: a malformed line may
be the very credential the scan is looking for.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from keyguard.errors import ConfigError, ToolError

HUNK_HEADER = re.compile(r"^@@ -\d+(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
# The options that make `git diff` print the same shape whatever the user's git config says.
GIT_DIFF_ARGS = ("diff", "--no-color", "--no-ext-diff", "--no-textconv", "--unified=0",
                 "--src-prefix=a/", "--dst-prefix=b/")


@dataclass(frozen=True)
class AddedLine:
    path: str  # as the diff names it, relative to the repository root
    line: int  # 1-based line number in the new file
    text: str


def added_lines(diff: str) -> Iterator[AddedLine]:
    """Every added line of a unified diff (git's or `diff -u`'s), with its file and line in the new version."""
    path: str | None = None
    git_style = False
    old_path = ""
    old_left = new_left = 0
    new_line = 0
    saw_header = False
    # Split on newlines only: a form feed or a lone CR inside a line is content, not a line break.
    lines = diff.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for number, raw in enumerate((line.removesuffix("\r") for line in lines), start=1):
        if old_left > 0 or new_left > 0:  # inside a hunk: the counts, not the prefixes, say where it ends
            marker = raw[:1]
            if marker == "+" and new_left > 0:
                if path is not None:
                    yield AddedLine(path, new_line, raw[1:])
                new_line += 1
                new_left -= 1
            elif marker == "-" and old_left > 0:
                old_left -= 1
            elif marker in (" ", "") and old_left > 0 and new_left > 0:  # "": a context line's space stripped
                new_line += 1
                old_left -= 1
                new_left -= 1
            elif marker == "\\":  # "\ No newline at end of file"
                pass
            else:
                raise ConfigError(f"diff line {number}: the hunk ends early (expected {old_left} more old and "
                                  f"{new_left} more new lines); the diff is truncated or not a unified diff")
            continue
        if raw.startswith("diff --git "):
            path, git_style, old_path = None, True, ""
        elif raw.startswith("--- "):
            old_path = _header_path(raw[4:])
        elif raw.startswith("+++ "):
            saw_header = True
            new_path = _header_path(raw[4:])
            if new_path == "/dev/null":
                path = None  # a deleted file adds nothing
            else:
                strip = git_style or old_path.startswith("a/") or old_path == "/dev/null"
                path = new_path[2:] if strip and new_path.startswith("b/") else new_path
        elif raw.startswith("@@"):
            match = HUNK_HEADER.match(raw)
            if match is None:
                raise ConfigError(f"diff line {number}: malformed hunk header (expected `@@ -l,s +l,s @@`)")
            if not saw_header:
                raise ConfigError(f"diff line {number}: a hunk before any file header (`+++ b/<path>`)")
            old_left = int(match.group(1) if match.group(1) is not None else 1)
            new_line = int(match.group(2))
            new_left = int(match.group(3) if match.group(3) is not None else 1)
    if old_left > 0 or new_left > 0:
        raise ConfigError(f"the diff ends inside a hunk ({old_left} old and {new_left} new lines missing): "
                          "it is truncated")
    if diff.strip() and not saw_header:
        raise ConfigError("not a unified diff: no `+++ <path>` file header found")


def _header_path(field: str) -> str:
    """The path of a `---`/`+++` header: git quotes unusual names C-style; `diff -u` appends a tab and a date."""
    field = field.rstrip("\n")
    if field.startswith('"'):
        return _unquote_c(field)
    return field.split("\t", 1)[0].rstrip()


_C_ESCAPES = {"a": 7, "b": 8, "t": 9, "n": 10, "v": 11, "f": 12, "r": 13, '"': 34, "\\": 92}


def _unquote_c(field: str) -> str:
    body = field[1:field.rindex('"')] if field.count('"') >= 2 else field[1:]
    out = bytearray()
    i = 0
    while i < len(body):
        char = body[i]
        if char == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            if re.fullmatch(r"[0-7]{3}", body[i + 1:i + 4]):
                out.append(int(body[i + 1:i + 4], 8))
                i += 4
                continue
            if nxt in _C_ESCAPES:
                out.append(_C_ESCAPES[nxt])
                i += 2
                continue
        out.extend(char.encode("utf-8"))
        i += 1
    return out.decode("utf-8", errors="replace")


def read_diff_file(path: Path | None) -> str:
    """A unified diff from a file, or from standard input when path is None (`-`)."""
    if path is None:
        return sys.stdin.buffer.read().decode("utf-8", errors="replace")
    try:
        return path.read_bytes().decode("utf-8", errors="replace")
    except FileNotFoundError:
        raise ConfigError(f"--diff {path}: file not found") from None
    except OSError as exc:
        raise ConfigError(f"--diff {path}: cannot read it ({exc.strerror or exc.__class__.__name__})") from None


def git_diff(base: str, head: str, repo: Path) -> str:
    """What `head` adds since it left `base`: `git diff` from their merge base (the PR's own changes)."""
    git = shutil.which("git")
    if git is None:
        raise ToolError("git not found on PATH: the diff scan reads `git diff`")
    if _git(git, repo, "rev-parse", "--git-dir").returncode != 0:
        raise ConfigError(f"{repo}: not a git repository (run the scan inside the checked-out repository)")
    commits = {}
    for option, ref in (("--base", base), ("--head", head)):
        if not ref or ref.startswith("-"):
            raise ConfigError(f"{option} {ref!r}: expected a commit, branch or tag")
        resolved = _git(git, repo, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}")
        if resolved.returncode != 0:
            raise ConfigError(f"{option} {ref}: not a commit in {repo} (a typo, or a shallow clone: check out "
                              "with `fetch-depth: 0`)")
        commits[option] = resolved.stdout.strip()
    merge_base = _git(git, repo, "merge-base", commits["--base"], commits["--head"])
    if merge_base.returncode != 0:
        raise ConfigError(f"--base {base} and --head {head} have no common ancestor in {repo} (a shallow clone? "
                          "check out with `fetch-depth: 0`)")
    diff = _git(git, repo, *GIT_DIFF_ARGS, merge_base.stdout.strip(), commits["--head"])
    if diff.returncode != 0:
        first = (diff.stderr.strip().splitlines() or ["no message"])[0]
        raise ConfigError(f"`git diff {base}...{head}` failed in {repo}: {first}")
    return diff.stdout


def _git(git: str, repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([git, "-C", str(repo), *args], capture_output=True, text=True, encoding="utf-8",
                          errors="replace", timeout=300, check=False)
