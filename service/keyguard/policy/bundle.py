"""The policy bundle: one `opa build` of the policy directory (rules and data, never tests), with a revision.

Every consumer loads the built bundle, not the directory: the managed OPA (`opa run --bundle`), the upload to an
external OPA, the rule catalogue (`opa inspect`), the CrossGuard pack, and the Python code that needs a value the
rules also use (`policy_data()`). Which files count as policy is decided here and nowhere else (`build_args`).
A wheel carries the bundle prebuilt (hatch_build.py runs `build_bundle`); a checkout builds it from policies/.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keyguard import __version__
from keyguard.errors import PolicyError
from keyguard.tools import OPA_IGNORE, opa_binary, opa_ignore_args, packaged_bundle, policy_source, schema_dir

# Not policy: tests, hidden files, and the CrossGuard pack's Python (keyguard.tools.OPA_IGNORE).
BUILD_IGNORE = (*OPA_IGNORE, "*_test.rego", ".?*")  # ".*" would match the root "." itself


@dataclass(frozen=True)
class PolicyBundle:
    """A built bundle: its file, revision, modules (id -> source) and the one merged data document."""

    path: Path
    revision: str
    modules: dict[str, str]
    data: dict[str, Any]
    source: Path  # the directory it was built from, or the bundle file itself

    def describe(self) -> str:
        return f"revision {self.revision} ({len(self.modules)} modules) from {self.source}"


def build_args(out: Path, revision: str | None = None) -> list[str]:
    """`opa build` of the current directory as a bundle: the one place that says which files are policy."""
    ignore = [arg for pattern in BUILD_IGNORE for arg in ("--ignore", pattern)]
    return ["build", "--bundle", ".", *ignore, *(["--revision", revision] if revision else []), "--output", str(out)]


def check_source(root: Path, opa: str | None = None) -> None:
    """Reject a broken policy directory with file and line: invalid JSON data, then `opa check` (type-checked
    against the input schemas when the schema directory exists, so a misspelt input field is an error)."""
    _finish_check(_start_check(root, opa or opa_binary()))


def _start_check(root: Path, opa: str) -> subprocess.Popen[str]:
    """The data files' JSON checked here, then `opa check` started (its verdict is `_finish_check`'s)."""
    if not root.is_dir():
        raise PolicyError(f"policy directory {root} does not exist")
    for path in sorted(root.rglob("data.json")):
        rel = path.relative_to(root)
        if any(part in OPA_IGNORE or part.startswith(".") for part in rel.parts[:-1]):
            continue
        try:
            value = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise PolicyError(f"{path}:{exc.lineno}:{exc.colno}: invalid JSON data: {exc.msg}") from None
        if not isinstance(value, dict):
            raise PolicyError(f"{path}: policy data must be a JSON object")
    if not any(p.suffix == ".rego" and not p.name.endswith("_test.rego") for p in root.rglob("*.rego")):
        raise PolicyError(f"policy directory {root} holds no .rego modules")
    return subprocess.Popen([opa, "check", "--format", "json", *schema_args(), *opa_ignore_args(), str(root)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish_check(proc: subprocess.Popen[str]) -> None:
    try:
        stdout, stderr = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise PolicyError("`opa check` did not finish within 120 s") from None
    if proc.returncode != 0:
        raise PolicyError("policy bundle rejected:\n" + format_opa_errors(stdout or stderr))


def schema_args() -> list[str]:
    """The input schemas for OPA's type checker (METADATA `schemas` in each area's package)."""
    schemas = schema_dir()
    return ["--schema", str(schemas)] if schemas.is_dir() else []


def format_opa_errors(raw: str | dict[str, Any]) -> str:
    try:
        doc = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError:
        return raw.strip() if isinstance(raw, str) else str(raw)
    lines = []
    for err in doc.get("errors", []) or [doc]:
        loc = err.get("location") or {}
        where = f"{loc.get('file', '?')}:{loc.get('row', '?')}" if loc else "?"
        lines.append(f"  {where}: {err.get('code', 'error')}: {err.get('message', '')}")
    return "\n".join(lines)


def build_bundle(root: Path, out: Path, opa: str | None = None, version: str = __version__) -> PolicyBundle:
    """Check `root`, then build it into `out` with revision `<version>+<digest of the built policy>`."""
    opa = opa or opa_binary()
    check = _start_check(root, opa)
    out.parent.mkdir(parents=True, exist_ok=True)
    draft = out.with_name(out.name + ".draft")
    try:
        # The check runs beside the first build (a cold `policy check` waits for the slower of the two, not both);
        # nothing is built into `out` unless the check passed.
        try:
            _opa_build(opa, root, draft)
        finally:
            _finish_check(check)
        _stamp_revision(draft, out, f"{version}+{_content_digest(draft)}")
    finally:
        if check.poll() is None:
            check.kill()
            check.wait()
        draft.unlink(missing_ok=True)
    bundle = load_bundle(out)
    return PolicyBundle(out, bundle.revision, bundle.modules, bundle.data, root)


def _opa_build(opa: str, root: Path, out: Path, revision: str | None = None) -> None:
    proc = subprocess.run([opa, *build_args(out.resolve(), revision)], cwd=root, capture_output=True, text=True,
                          timeout=120)
    if proc.returncode != 0:
        raise PolicyError(f"`opa build {root}` failed:\n{(proc.stderr or proc.stdout).strip()[:2000]}")


def _stamp_revision(draft: Path, out: Path, revision: str) -> None:
    """`draft` with its manifest's revision set: what `opa build --revision` writes, without building twice (the
    revision is a digest of the built policy, so it can only be known after one build)."""
    try:
        with tarfile.open(draft, "r:gz") as source, tarfile.open(out, "w:gz") as target:
            for member in source.getmembers():
                body = source.extractfile(member) if member.isfile() else None
                if member.name.lstrip("/") == ".manifest" and body is not None:
                    manifest = json.loads(body.read())
                    manifest["revision"] = revision
                    raw = json.dumps(manifest).encode()
                    member.size = len(raw)
                    target.addfile(member, io.BytesIO(raw))
                else:
                    target.addfile(member, body)
    except (OSError, tarfile.TarError, ValueError) as exc:
        raise PolicyError(f"{draft}: the built bundle could not be stamped with its revision: {exc}") from None


def _read_members(path: Path) -> dict[str, bytes]:
    try:
        with tarfile.open(path, "r:gz") as tar:
            return {m.name.lstrip("/"): tar.extractfile(m).read()  # type: ignore[union-attr]
                    for m in tar.getmembers() if m.isfile()}
    except (OSError, tarfile.TarError) as exc:
        raise PolicyError(f"{path}: not a readable OPA bundle (.tar.gz): {exc}") from None


def _content_digest(path: Path) -> str:
    members = _read_members(path)
    digest = hashlib.sha256()
    for name in sorted(members):
        if name != ".manifest":
            digest.update(name.encode() + b"\0" + members[name] + b"\0")
    return digest.hexdigest()[:12]


def load_bundle(path: Path) -> PolicyBundle:
    """Read a built bundle: its manifest's revision, its modules and its data."""
    members = _read_members(path)
    try:
        manifest = json.loads(members.get(".manifest", b"{}"))
        data = json.loads(members.get("data.json", b"{}"))
    except json.JSONDecodeError as exc:
        raise PolicyError(f"{path}: corrupt bundle manifest or data: {exc}") from None
    modules = {name: body.decode("utf-8") for name, body in members.items() if name.endswith(".rego")}
    if not modules:
        raise PolicyError(f"{path}: the bundle holds no .rego modules")
    revision = str(manifest.get("revision") or "")
    if not revision:
        raise PolicyError(f"{path}: the bundle has no revision (build it with `keyguard policy bundle`)")
    return PolicyBundle(path=path, revision=revision, modules=modules, data=data, source=path)


_workdir: Path | None = None
_workdir_lock = threading.Lock()


def _scratch() -> Path:
    """A private directory for bundles built from a checkout, removed when the process exits."""
    global _workdir
    with _workdir_lock:
        if _workdir is None:
            _workdir = Path(tempfile.mkdtemp(prefix="keyguard-bundle-"))
            atexit.register(shutil.rmtree, _workdir, True)
        return _workdir


def resolve_bundle(source: Path | None = None, opa: str | None = None) -> PolicyBundle:
    """The bundle for `source`: a directory is checked and built (once per content); a .tar.gz is used as built.
    None means the default: KEYGUARD_POLICY_DIR, else the checkout's policies/, else the bundle in the package."""
    source = source or default_source()
    if source.is_dir():
        return _checked_build(source, opa or opa_binary())
    if source.is_file():
        return load_bundle(source)
    raise PolicyError(f"policy bundle {source} does not exist (a policy directory or a built .tar.gz bundle)")


def _checked_build(root: Path, opa: str) -> PolicyBundle:
    """Check and build `root`, or reuse the bundle an earlier run checked and built from byte-identical inputs.

    The cache key covers everything `opa check` and `opa build` read (every file of the policy directory, the input
    schemas), the opa binary and Keyguard's version, so a changed policy is checked afresh and a broken one is
    still an error; only a successful check and build is ever cached."""
    out = Path(tempfile.mkdtemp(prefix="build-", dir=_scratch())) / "keyguard-policies.tar.gz"
    key = _inputs_digest(root, opa)
    cache = _bundle_cache() if key else None
    cached = cache / f"{key}.tar.gz" if cache else None
    if cached is not None and cached.is_file():
        # A copy, so nothing done to the returned bundle's file reaches the cache; an unreadable entry is rebuilt.
        with contextlib.suppress(OSError, PolicyError):
            shutil.copyfile(cached, out)
            bundle = load_bundle(out)
            with contextlib.suppress(OSError):
                os.utime(cached)  # recently used entries survive pruning
            return PolicyBundle(out, bundle.revision, bundle.modules, bundle.data, root)
    built = build_bundle(root, out, opa)
    if cached is not None:
        _store_in_cache(out, cached)
    return built


def _inputs_digest(root: Path, opa: str) -> str | None:
    """A digest of every input of `check_source` and `build_bundle` for `root`; None when one cannot be read."""
    digest = hashlib.sha256()
    try:
        binary = Path(shutil.which(opa) or opa).resolve()
        stat = binary.stat()
        digest.update(f"{__version__}\0{BUILD_IGNORE}\0{binary}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
        schemas = schema_dir()
        for label, base in (("policy", root), ("schemas", schemas if schemas.is_dir() else None)):
            digest.update(f"{label}\0{base is not None}\0".encode())  # contents count, not where they are
            if base is None:
                continue
            for path in sorted(p for p in base.rglob("*") if p.is_file()):
                rel = path.relative_to(base)
                if label == "policy" and rel.parts[0] in OPA_IGNORE:  # `--ignore` for opa check and build alike
                    continue
                content = path.read_bytes()
                digest.update(f"{rel.as_posix()}\0{len(content)}\0".encode() + content)
    except OSError:
        return None
    return digest.hexdigest()


CACHE_ENTRIES = 32


def _bundle_cache() -> Path | None:
    with contextlib.suppress(RuntimeError):  # no home directory: build every time
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        return Path(base) / "keyguard" / "bundles"
    return None


def _store_in_cache(built: Path, entry: Path) -> None:
    """Add a checked build to the cache (atomically: a concurrent reader sees all of it or none), keeping the
    most recently used entries; a cache that cannot be written only costs the next run a build."""
    draft = entry.with_name(f".{entry.name}.{os.getpid()}.{threading.get_ident()}")
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(built, draft)
        os.replace(draft, entry)
        entries = sorted(entry.parent.glob("*.tar.gz"), key=lambda p: p.stat().st_mtime, reverse=True)
        for stale in entries[CACHE_ENTRIES:]:
            stale.unlink(missing_ok=True)
    except OSError:
        draft.unlink(missing_ok=True)


def default_source() -> Path:
    configured = policy_source()
    if configured is not None:
        return configured
    shipped = packaged_bundle()
    if shipped.is_file():
        return shipped
    raise PolicyError(f"no policy bundle: neither a checkout's policies/ nor the packaged {shipped} exists; set "
                      "KEYGUARD_POLICY_DIR to a policy directory or bundle")


_active: PolicyBundle | None = None
_active_lock = threading.Lock()


def activate(bundle: PolicyBundle) -> None:
    """The bundle the engine has loaded: policy_data() answers from it from now on."""
    global _active
    with _active_lock:
        _active = bundle


def active_bundle() -> PolicyBundle:
    global _active
    with _active_lock:
        if _active is None:
            _active = resolve_bundle()
        return _active


def policy_data(*path: str) -> Any:
    """A value from the loaded bundle's data (e.g. policy_data("execution", "retries")); the rules read the same."""
    value: Any = active_bundle().data
    for key in path:
        if not isinstance(value, dict) or key not in value:
            raise PolicyError(f"policy data {'.'.join(path)} is missing from bundle {active_bundle().describe()}")
        value = value[key]
    return value


def export_bundle(bundle: PolicyBundle, out: Path) -> Path:
    """Copy the built bundle to `out` (for an OPA bundle server or the CrossGuard pack)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(bundle.path, out)
    return out
