"""Feed every file-taking `keyguard` command and flag hostile input; each must end in one line and exit 2.

The commands and their file options are discovered from the Typer apps (a new command is swept without an edit
here); the table below only says what each file is (worker settings, an inventory, stack outputs, ...) so the
hostile variants start from a valid document of that kind. Each file-taking flag gets: a missing file, an empty
file, a directory, a binary file, non-UTF-8 text, invalid YAML and invalid JSON (both quoting a canary secret),
wrong types, an unknown nested field, a duplicate key, `.nan`, an impossible date, negative caps, a canary
secret in every environment-variable-name field and in every URL (as its password). Flags that take an
environment variable's name or a URL get the canary too. Every case must exit 2, print no traceback, never
print the canary, and name the file (or flag) it refuses.

    uv run python scripts/sweep_cli.py              # the table; exit 1 on any failure
    uv run python scripts/sweep_cli.py --subprocess # each case as a real `python -m keyguard.cli` process (slow)
    uv run python scripts/sweep_cli.py --only worker --case nan

Cases run in-process in forked children (the CLI imported once), each with its own directory and a timeout.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

CANARY_CORE = "7f3a9cq2x"
CANARY = f"Kg-{CANARY_CORE}-S3CR3T/+="  # not an env var name: has - / + =
URL_CANARY = f"nosuch://sweep:Kg-{CANARY_CORE}-S3CR3T@192.0.2.1:9/x"  # a password in a URL of the wrong scheme
# Alert routes take any apprise scheme, so theirs is refused for its shape (no `//`), at load time.
APPRISE_CANARY = f"sweep:Kg-{CANARY_CORE}-S3CR3T@192.0.2.1/x"
EXPECTED_EXIT = 2


# --- what each file is: a valid document of the kind, and the fields hostile variants aim at ----------------


@dataclass(frozen=True)
class Kind:
    name: str
    base: dict[str, Any] | None  # None: not a document (a directory, a diff)
    filename: str = "input.yaml"
    wrong_type: tuple[tuple[str | int, ...], Any] | None = None  # a wrong-typed value: the canary
    unknown_nested: tuple[str | int, ...] | None = None  # a nested mapping that must refuse `intervall_s`
    negatives: tuple[tuple[str | int, ...], ...] = ()
    skip: frozenset[str] = frozenset()  # cases that do not apply, with the reason in SKIP_REASONS
    companions: dict[str, dict[str, Any]] = field(default_factory=dict)  # other files beside it: name -> doc


SETTINGS = Kind(
    "keyguard-settings",
    {
        "service": {"port": 8700, "api_token_env": "KEYGUARD_API_TOKEN"},
        "store": {"url": "sqlite:///state/keyguard.db"},
        "opa": {"url": "http://127.0.0.1:9"},
        "checks": {"interval_s": 60, "budget": {"share": 0.2}},
        "alerts": {"routes": [{"url": "json://127.0.0.1:9/alerts"}], "give_up_s": 3600},
        "incidents": {"max_silence_s": 3600},
    },
    "keyguard.yaml",
    wrong_type=(("checks", "interval_s"), CANARY),
    unknown_nested=("checks",),
    negatives=(("checks", "interval_s"), ("incidents", "max_silence_s")),
)

WORKER = Kind(
    "worker-settings",
    {
        "worker": "sweep",
        "stage": "sandbox",
        "state_dir": "state",
        "journal_url": "sqlite:///state/journal.db",
        "exchange": {
            "base_url": "http://127.0.0.1:9",
            "api_key_env": "SWEEP_KEY",
            "api_secret_env": "SWEEP_SECRET",
            "timeout_s": 1,
        },
        "risk": {"max_orders_per_minute": 30, "max_order_notional": 100, "max_position": {"BTC": 0.5}},
        "strategy": {"orders": 1, "interval_s": 0.1},
    },
    "worker.yaml",
    wrong_type=(("risk", "max_orders_per_minute"), CANARY),
    unknown_nested=("risk",),
    negatives=(("risk", "max_orders_per_minute"), ("risk", "max_order_notional"), ("exchange", "timeout_s")),
)

GATEWAY = Kind(
    "gateway-settings",
    {
        "gateway": "sweep",
        "stage": "sandbox",
        "state_dir": "state",
        "listen": {"host": "127.0.0.1", "port": 0},
        "exchange": {"base_url": "http://127.0.0.1:9", "api_key_env": "SWEEP_KEY", "api_secret_env": "SWEEP_SECRET"},
        "account": {"max_orders_per_minute": 30, "max_order_notional": 100},
        "bots": {"alpha": {"max_orders_per_minute": 10}},
    },
    "gateway.yaml",
    wrong_type=(("account", "max_orders_per_minute"), CANARY),
    unknown_nested=("account",),
    negatives=(("account", "max_orders_per_minute"), ("bots", "alpha", "max_orders_per_minute")),
)

INVENTORY = Kind(
    "keys-inventory",
    {
        "hosts": [{"name": "exec-1", "ip": "127.0.0.1"}],
        "exchange_urls": {"binance": "http://127.0.0.1:9"},
        "probe": {"source_ip": "127.0.0.1"},
        "keys": [
            {
                "id": "bot-1",
                "exchange": "binance",
                "purpose": "execution",
                "credentials": {"api_key_env": "SWEEP_KEY", "secret_env": "SWEEP_SECRET"},
                "created_at": "2026-01-01T00:00:00Z",
                "permissions": {"read": True, "withdraw": False},
                "activity": {"lookback_h": 12},
            }
        ],
    },
    "keyguard.yaml",
    wrong_type=(("keys", 0, "services"), CANARY),
    unknown_nested=("keys", 0, "permissions"),
    negatives=(("keys", 0, "activity", "lookback_h"),),
)

POLICY_DOCUMENT = Kind(
    "policy-document",
    {
        "kind": "keys",
        "now": "2026-11-25T00:00:00Z",
        "hosts": [{"name": "exec-1", "ip": "203.0.113.10", "authorized": True}],
        "keys": [
            {
                "id": "bot-1",
                "exchange": "binance",
                "purpose": "execution",
                "services": ["worker"],
                "permissions": {"read": True, "trade": True, "transfer": False, "withdraw": False},
                "ip_restricted": True,
                "allowed_ips": [{"value": "203.0.113.10", "reason": "exec-1", "source": "declared"}],
                "created_at": "2026-10-01T00:00:00Z",
                "active": True,
            }
        ],
    },
    "keys.yaml",
    wrong_type=(("keys", 0, "permissions", "withdraw"), CANARY),
    unknown_nested=("keys", 0, "permissions"),
)

WAIVERS = Kind(
    "waivers",
    {
        "waivers": [
            {
                "rule": "KG-KEY-101",
                "resource": "binance/bot-1",
                "reason": "accepted for the sweep",
                "approver": "sweep",
                "expires": "2026-12-31T00:00:00Z",
            }
        ],
    },
    "waivers.yaml",
    skip=frozenset({"wrong-types", "unknown-nested"}),
    companions={"keys.yaml": POLICY_DOCUMENT.base or {}},
)

STACK_OUTPUTS = Kind(
    "stack-outputs",
    {
        "instanceId": "i-0123456789abcdef0",
        "staticIp": "203.0.113.75",
        "roleArn": "arn:aws:iam::123456789012:role/r",
        "secretArns": {"bot-1": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:keyguard/bot-1"},
        "kmsKeyArn": "arn:aws:kms:eu-west-1:123456789012:key/k",
        "securityGroupId": "sg-1",
    },
    "outputs.json",
    wrong_type=(("instanceId",), [CANARY]),
    skip=frozenset({"unknown-nested"}),
)

KEY_BINDINGS = Kind(
    "key-bindings",
    {"key_bindings": [{"key": "bot-1", "ips": ["203.0.113.75"]}]},
    "bindings.yaml",
    wrong_type=(("key_bindings", 0, "ips"), CANARY),
    unknown_nested=("key_bindings", 0),
)

STACK_CONFIG = Kind(
    "pulumi-stack-config",
    {"config": {"aws:region": "us-east-1"}},
    "Pulumi.sweep.yaml",
    wrong_type=(("config",), [CANARY]),
    skip=frozenset({"unknown-nested", "invalid-json", "empty-stack"}),
    companions={"Pulumi.yaml": {"name": "keyguard", "runtime": "python"}},
)

PULUMI_PROJECT = Kind(
    "pulumi-project",
    {"name": "keyguard", "runtime": "python"},
    "Pulumi.yaml",
    wrong_type=(("name",), [CANARY]),
    skip=frozenset({"unknown-nested", "invalid-json"}),
    companions={"Pulumi.sweep.yaml": {"config": {"aws:region": "us-east-1"}}},
)

SARIF = Kind(
    "sarif-report",
    {"version": "2.1.0", "runs": []},
    "report.sarif",
    wrong_type=(("runs",), CANARY),
    skip=frozenset({"unknown-nested", "missing-report"}),
)

DIRECTORY = Kind("directory", None)
DIFF = Kind("diff", None, "change.diff", skip=frozenset({"empty-diff"}))

KINDS = {
    k.name: k
    for k in (
        SETTINGS,
        WORKER,
        GATEWAY,
        INVENTORY,
        POLICY_DOCUMENT,
        WAIVERS,
        STACK_OUTPUTS,
        KEY_BINDINGS,
        STACK_CONFIG,
        PULUMI_PROJECT,
        SARIF,
        DIRECTORY,
        DIFF,
    )
}

# (command, parameter) -> kind; `*` matches any command of a group. Unlisted file parameters are swept as
# generic documents (so a new command is covered), and unlisted directories as directories.
KIND_OF = {
    ("serve", "config"): "keyguard-settings",
    ("incident *", "config"): "keyguard-settings",
    ("silence *", "config"): "keyguard-settings",
    ("token *", "config"): "keyguard-settings",
    ("worker *", "config"): "worker-settings",
    ("gateway *", "config"): "gateway-settings",
    ("gateway keys *", "config"): "gateway-settings",
    ("keys rotate", "gateway"): "gateway-settings",
    ("keys *", "inventory_file"): "keys-inventory",
    ("keys *", "inventory"): "keys-inventory",
    ("policy check", "files"): "policy-document",
    ("policy check", "waivers_file"): "waivers",
    ("infra drift", "outputs"): "stack-outputs",
    ("infra *", "key_bindings"): "key-bindings",
    ("infra check", "config"): "pulumi-stack-config",
    ("infra check", "project_file"): "pulumi-project",
    ("infra check", "program"): "directory",
    ("policy *", "policy_root"): "directory",
    ("gate scan-diff", "repo"): "directory",
    ("gate scan-diff", "diff"): "diff",
    ("gate report", "declared"): "sarif-report",
    ("gate report", "infra"): "sarif-report",
    ("gate report", "secrets"): "sarif-report",
}
# Parameters that name where output goes (or a working directory), not a file the command reads.
WRITES = {
    ("*", "output"): "writes its report there",
    ("gate report", "sarif"): "writes the merged SARIF there",
    ("gate report", "comment"): "writes the PR comment there",
    ("gate report", "outputs"): "appends to it",
    ("gate report", "summary"): "appends to it",
    ("incident evidence", "out"): "writes the evidence there",
    ("demo", "state_dir"): "the demo's working directory (it creates it)",
    ("policy bundle", "output"): "writes the bundle there",
}
# Values for required parameters that the sweep does not aim at (the file parameters get a valid file).
FILL = {
    ("infra drift", "region"): "us-east-1",
    ("gateway kill-switch", "action"): "engage",
    ("gateway trading-state", "state"): "HALTED",
    ("token create", "role"): "viewer",
    ("keys rotate", "new_secret_from"): "file:/nonexistent/new-key.json",
    ("keys rotate", "key"): "bot-1",
}
# Extra arguments a command needs for the aimed-at flag to be read at all.
COMPANION_FLAGS = {
    ("gate report", "declared"): ["--declared-exit", "0"],
    ("gate report", "infra"): ["--infra-exit", "0"],
    ("gate report", "secrets"): ["--secrets-exit", "0"],
    ("silence add", "config"): ["--for", "1h"],
    ("gate scan-diff", "repo"): ["--base", "HEAD~1", "--head", "HEAD"],
}
# Flags that take an environment variable's name or a URL: the arguments that make the command otherwise
# runnable; the aimed-at flag's value is replaced by the canary.
FLAG_CONTEXT = {
    "keys inspect": [
        "--exchange",
        "binance",
        "--key-id",
        "bot-1",
        "--api-key-env",
        "SWEEP_KEY",
        "--secret-env",
        "SWEEP_SECRET",
        "--exchange-url",
        "http://127.0.0.1:9",
        "--timeout-ms",
        "200",
    ],
    "policy check": ["@policy-document"],
    "infra drift": ["--outputs", "@stack-outputs", "--region", "us-east-1"],
}
SKIP_REASONS = {
    "wrong-types": "a malformed waiver is reported and not applied (its findings stay open), by design",
    "unknown-nested": "no nested settings in this kind of file",
    "invalid-json": "the file's name is fixed (Pulumi.<stack>.yaml, Pulumi.yaml): YAML by definition",
    "missing-report": "a missing SARIF report is a check that stopped before writing it: the gate fails (exit 1)",
    "empty-diff": "an empty diff is a change without added lines: clean (exit 0)",
    "empty-stack": "an empty Pulumi.<stack>.yaml is a stack without config; the program then names the missing key",
}
SKIP_FLAGS = {"sandbox serve", "demo", "policy test", "policy bundle", "policy rules"}  # servers; tool runs


# --- discovery ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    command: str  # "worker run"
    name: str  # python name: config
    flag: str | None  # --config; None for an argument
    annotation: str
    required: bool


def discover() -> list[tuple[str, list[Param]]]:
    """Every leaf command and its parameters, from the Typer apps (the lazy sub-apps imported on the way)."""
    import typer
    from typer._click import core as click_core  # typer >= 0.29 ships its own click
    from typer.core import TyperGroup

    from keyguard.cli import app

    commands: list[tuple[str, list[Param]]] = []

    def walk(command: Any, path: list[str]) -> None:
        if isinstance(command, TyperGroup):
            ctx = click_core.Context(command)
            for name in command.list_commands(ctx):
                walk(command.get_command(ctx, name), [*path, name])
            return
        params = []
        for p in command.params:
            annotation = str(getattr(p, "type_descriptor", None) and p.type_descriptor.annotation)
            flag = next((o for o in p.opts if o.startswith("--")), None) if p.param_type_name == "option" else None
            params.append(Param(" ".join(path), p.name, flag, annotation, bool(p.required)))
        commands.append((" ".join(path), params))

    walk(typer.main.get_command(app), [])
    return commands


def _match(table: dict[tuple[str, str], Any], command: str, name: str) -> Any:
    for (pattern, param), value in table.items():
        if param != name:
            continue
        if pattern == "*" or pattern == command or (pattern.endswith(" *") and command.startswith(pattern[:-1])):
            return value
    return None


def is_path(param: Param) -> bool:
    return "Path" in param.annotation


# --- hostile inputs -----------------------------------------------------------------------------------------


def _set(doc: dict[str, Any], path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    target: Any = out
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return out


def _get(doc: Any, path: tuple[str | int, ...]) -> Any:
    for part in path:
        doc = doc[part]
    return doc


def _leaves(doc: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[tuple[str | int, ...], Any]]:
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _leaves(v, (*path, i))
    else:
        yield path, doc


def _dump(doc: Any, filename: str = "input.yaml") -> str:
    """The document as its file would hold it: JSON for a .json or .sarif file, else YAML."""
    if filename.endswith((".json", ".sarif")):
        return json.dumps(doc, indent=2) + "\n"
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


def _duplicated(doc: dict[str, Any], key: str, filename: str) -> str:
    """The document with `key` given a second time at the end (where it would win)."""
    if filename.endswith((".json", ".sarif")):
        return _dump(doc, filename).rstrip().removesuffix("}") + f', "{key}": {json.dumps(doc[key])}}}\n'
    return _dump(doc, filename) + _dump({key: doc[key]}, filename)


@dataclass(frozen=True)
class Hostile:
    case: str
    content: str | bytes | None  # None: a directory; "MISSING": nothing at all
    filename: str
    flag_value: str | None = None  # for flag cases: the value given to the flag itself


def hostile_files(kind: Kind) -> Iterator[Hostile]:
    name = kind.filename
    if "missing-report" not in kind.skip:
        yield Hostile("missing", "MISSING", name)
    yield Hostile("directory", None, name)
    if not {"empty-diff", "empty-stack"} & kind.skip:
        yield Hostile("empty", "", name)
    yield Hostile("binary", b"\x7fELF\x02\x01\x01\x00\x00\x00\xff\xfe\x00" * 8, name)
    if kind.base is None:
        return
    yield Hostile("non-utf8", "# café\n".encode("latin-1") + _dump(kind.base, name).encode(), name)
    first = next(iter(kind.base))
    yield Hostile("invalid-yaml", f"{first}: [unclosed, {CANARY}\n  token: : {CANARY}\n", name)
    if "invalid-json" not in kind.skip:
        json_name = name.rsplit(".", 1)[0] + ".json"
        yield Hostile("invalid-json", f'{{"{first}": "{CANARY}",}}', json_name)
    if kind.wrong_type and "wrong-types" not in kind.skip:
        yield Hostile("wrong-types", _dump(_set(kind.base, *kind.wrong_type), name), name)
    if kind.unknown_nested and "unknown-nested" not in kind.skip:
        nested = _get(kind.base, kind.unknown_nested)
        yield Hostile(
            "unknown-nested", _dump(_set(kind.base, kind.unknown_nested, {**nested, "intervall_s": 5}), name), name
        )
    if not name.endswith((".json", ".sarif")):  # aliases: a billion values in ten lines, and one that holds itself
        bomb = ['sweep_a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
        bomb += [f"sweep_a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
        yield Hostile("alias-bomb", _dump(kind.base, name) + "\n".join(bomb) + "\n", name)
        yield Hostile("recursive-alias", _dump(kind.base, name) + "sweep_loop: &loop [*loop]\n", name)
    # The same key twice (here the first top-level key again, at the end, where it would win).
    yield Hostile("duplicate-key", _duplicated(kind.base, first, name), name)
    numeric = next((p for p, v in _leaves(kind.base) if isinstance(v, int | float) and not isinstance(v, bool)), None)
    target = numeric or next(p for p, v in _leaves(kind.base) if v is not None)
    yield Hostile("nan", _dump(_set(kind.base, target, float("nan")), name), name)
    dated = next((p for p, v in _leaves(kind.base) if isinstance(v, str) and v[:4].isdigit() and "T" in v), None)
    if dated is not None:
        text = _dump(_set(kind.base, dated, "SWEEP_DATE"), name).replace("SWEEP_DATE", "2026-02-30T00:00:00Z")
        yield Hostile("invalid-date", text, name)
    for path in kind.negatives:
        yield Hostile(f"negative {'.'.join(map(str, path))}", _dump(_set(kind.base, path, -30), name), name)
    for path, value in _leaves(kind.base):
        key = str(path[-1])
        if key.endswith("_env") and isinstance(value, str):
            yield Hostile(f"canary in {'.'.join(map(str, path))}", _dump(_set(kind.base, path, CANARY), name), name)
        elif (
            isinstance(value, str)
            and "://" in value
            and not value.startswith(("arn:", "sqlite:///state"))
            or key.endswith("url")
            and isinstance(value, str)
        ):
            url = APPRISE_CANARY if "alerts" in path else URL_CANARY
            yield Hostile(f"canary in {'.'.join(map(str, path))}", _dump(_set(kind.base, path, url), name), name)


# --- cases --------------------------------------------------------------------------------------------------


@dataclass
class Case:
    command: str
    target: str  # the flag or argument aimed at
    case: str
    argv: list[str]
    files: dict[str, str | bytes | None]  # relative path -> content (None: a directory)
    must_name: str  # the refusal names this (the file's name, or the flag)
    result: Result | None = None


@dataclass
class Result:
    exit_code: int | None
    stdout: str
    stderr: str
    seconds: float
    problems: list[str]


def _valid_file(kind_name: str) -> tuple[str, dict[str, str | bytes | None]]:
    kind = KINDS[kind_name]
    files: dict[str, str | bytes | None] = {f"valid/{kind.filename}": _dump(kind.base, kind.filename)}
    for companion, doc in kind.companions.items():
        files[f"valid/{companion}"] = _dump(doc, companion)
    return f"valid/{kind.filename}", files


def build_cases(commands: list[tuple[str, list[Param]]]) -> tuple[list[Case], list[tuple[str, str, str]]]:
    cases: list[Case] = []
    skipped: list[tuple[str, str, str]] = []
    for command, params in commands:
        for target in params:
            if not is_path(target):
                continue
            label = target.flag or target.name.upper()
            writes = _match(WRITES, command, target.name)
            if writes is not None:
                skipped.append((command, label, writes))
                continue
            kind_name = _match(KIND_OF, command, target.name) or (
                "directory" if target.name.endswith(("dir", "root", "program", "repo")) else "generic"
            )
            kind = KINDS.get(kind_name) or Kind("generic", None)
            for hostile in hostile_files(kind):
                cases.append(_file_case(command, params, target, kind, hostile))
        if command in SKIP_FLAGS:
            continue
        for target in params:
            if target.flag and target.name.endswith(("_env", "_url")):
                cases.append(_flag_case(command, params, target))
    return cases, skipped


def _fill(command: str, params: list[Param], aimed: Param, files: dict[str, str | bytes | None]) -> list[str]:
    argv: list[str] = []
    for p in params:
        if p is aimed or not p.required:
            continue
        value = _match(FILL, command, p.name)
        if value is None and is_path(p):
            kind_name = _match(KIND_OF, command, p.name)
            if kind_name in KINDS and KINDS[kind_name].base is not None:
                value, extra = _valid_file(kind_name)
                files.update(extra)
            else:
                value = "."
        if value is None:
            value = "1" if p.annotation in ("<class 'int'>", "<class 'float'>") else "sweep"
        argv += [p.flag, value] if p.flag else [value]
    return argv


def _file_case(command: str, params: list[Param], target: Param, kind: Kind, hostile: Hostile) -> Case:
    files: dict[str, str | bytes | None] = {}
    path = f"hostile/{hostile.filename}"
    if hostile.content != "MISSING":
        files[path] = hostile.content
    for companion, doc in kind.companions.items():
        if companion != hostile.filename:
            files[f"hostile/{companion}"] = _dump(doc, companion)
    argv = command.split() + _fill(command, params, target, files)
    argv += ([target.flag, path] if target.flag else [path]) + COMPANION_FLAGS.get((command, target.name), [])
    must_name = path if kind.name != "generic" else hostile.filename
    return Case(command, target.flag or target.name.upper(), f"{kind.name}: {hostile.case}", argv, files, must_name)


def _flag_case(command: str, params: list[Param], target: Param) -> Case:
    files: dict[str, str | bytes | None] = {}
    context = []
    for arg in FLAG_CONTEXT.get(command, []):
        if arg.startswith("@"):
            arg, extra = _valid_file(arg[1:])
            files.update(extra)
        context.append(arg)
    assert target.flag is not None
    value = CANARY if target.name.endswith("_env") else URL_CANARY
    if target.flag in context:
        context[context.index(target.flag) + 1] = value
    else:
        context += [target.flag, value]
    argv = command.split() + _fill(command, [p for p in params if p.flag not in context], target, files) + context
    return Case(command, target.flag, f"flag: canary in {target.flag}", argv, files, target.flag)


# --- running ------------------------------------------------------------------------------------------------


def _materialise(root: Path, files: dict[str, str | bytes | None]) -> None:
    (root / "hostile").mkdir(parents=True, exist_ok=True)
    (root / "valid").mkdir(parents=True, exist_ok=True)
    for rel, content in files.items():
        path = root / rel
        if content is None:
            path.mkdir(parents=True, exist_ok=True)
            (path / "inside.yaml").write_text("a: 1\n")
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)


def _child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYGUARD_")}
    env.update(COLUMNS="400", NO_COLOR="1", TERM="dumb")
    return env


def _fork(case: Case, root: Path) -> int:
    """The CLI's own main() in a forked child: its stdout and stderr (file descriptors) go to files in `root`."""
    pid = os.fork()
    if pid != 0:
        return pid
    code = 1  # the child from here on: never returns
    try:
        os.setsid()  # its own process group, so a timeout takes any server it started too
        os.chdir(root)
        os.environ.clear()
        os.environ.update(_child_env())
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, name in ((1, "stdout.txt"), (2, "stderr.txt")):
            handle = os.open(root / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(handle, fd)
            os.close(handle)
        sys.argv = ["keyguard", *case.argv]
        from keyguard.cli import main

        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:  # what the interpreter would print
            traceback.print_exc()
            code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _run_forked_all(
    cases: list[Case], roots: list[Path], jobs: int, timeout_s: float, on_result: Callable[[Case], None] | None
) -> None:
    """Up to `jobs` children at once, forked from this (single) thread, each killed at its timeout."""
    pending = list(zip(cases, roots, strict=True))
    running: dict[int, tuple[Case, Path, float]] = {}
    while pending or running:
        while pending and len(running) < jobs:
            case, root = pending.pop(0)
            running[_fork(case, root)] = (case, root, time.monotonic())
        time.sleep(0.01)
        for pid, (case, root, started) in list(running.items()):
            done, status = os.waitpid(pid, os.WNOHANG)
            if not done and time.monotonic() - started < timeout_s:
                continue
            if not done:
                _kill(pid)
                os.waitpid(pid, 0)
            del running[pid]
            code = os.waitstatus_to_exitcode(status) if done else None
            result = Result(
                code, _read(root / "stdout.txt"), _read(root / "stderr.txt"), time.monotonic() - started, []
            )
            case.result = judge(case, result)
            if on_result:
                on_result(case)


def _kill(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)  # the child leads its own group: its servers go too
    except ProcessLookupError:
        pass


def _run_subprocess(case: Case, root: Path, timeout_s: float) -> Result:
    started = time.monotonic()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "keyguard.cli", *case.argv],
            cwd=root,
            env=_child_env(),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            start_new_session=True,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started, [])
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else exc.stderr or ""
        return Result(None, out, err, time.monotonic() - started, [])


def _read(path: Path) -> str:
    return path.read_bytes().decode("utf-8", errors="replace") if path.exists() else ""


def judge(case: Case, result: Result) -> Result:
    text = result.stdout + result.stderr
    if result.exit_code is None:
        result.problems.append("timed out (the input was accepted?)")
    elif result.exit_code != EXPECTED_EXIT:
        result.problems.append(f"exit {result.exit_code}, expected {EXPECTED_EXIT}")
    if "Traceback (most recent call last)" in text:
        result.problems.append("traceback")
    if CANARY_CORE in text:
        result.problems.append("printed the canary secret")
    if case.must_name not in text:
        result.problems.append(f"does not name {case.must_name}")
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    if result.exit_code == EXPECTED_EXIT and "Usage:" not in result.stderr and len(error_lines) != 1:
        result.problems.append(f"{len(error_lines)} error lines, expected one")
    return result


def run_cases(
    cases: list[Case],
    *,
    subprocess_mode: bool = False,
    jobs: int = 4,
    timeout_s: float = 45.0,
    on_result: Callable[[Case], None] | None = None,
) -> list[Case]:
    with tempfile.TemporaryDirectory(prefix="keyguard-sweep-") as tmp:
        roots = []
        for index, case in enumerate(cases):
            root = Path(tmp) / f"case-{index:03d}"
            _materialise(root, case.files)
            roots.append(root)
        if not subprocess_mode:
            _run_forked_all(cases, roots, jobs, timeout_s, on_result)
            return cases
        for case, root in zip(cases, roots, strict=True):
            case.result = judge(case, _run_subprocess(case, root, timeout_s))
            if on_result:
                on_result(case)
    return cases


def sweep(
    only: str | None = None, case_filter: str | None = None, **kwargs: Any
) -> tuple[list[Case], list[tuple[str, str, str]]]:
    cases, skipped = build_cases(discover())
    cases = [
        c
        for c in cases
        if (only is None or c.command.startswith(only)) and (case_filter is None or case_filter in c.case)
    ]
    return run_cases(cases, **kwargs), skipped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subprocess", action="store_true", help="run each case as a real process (slow)")
    parser.add_argument("--only", help="commands starting with this, e.g. `worker` or `infra drift`")
    parser.add_argument("--case", help="cases whose name contains this, e.g. nan or canary")
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=45.0, help="seconds per case")
    parser.add_argument("--list", action="store_true", help="list the cases without running them")
    parser.add_argument("--verbose", "-v", action="store_true", help="show each failure's output")
    args = parser.parse_args(argv)
    if args.list:
        cases, skipped = build_cases(discover())
        for c in cases:
            if (args.only is None or c.command.startswith(args.only)) and (args.case is None or args.case in c.case):
                print(f"{c.command:<24} {c.target:<18} {c.case:<44} keyguard {' '.join(c.argv)}")
        for command, flag, why in skipped:
            print(f"{command:<24} {flag:<18} not swept: {why}")
        return 0

    started = time.monotonic()

    def show(case: Case) -> None:
        r = case.result
        assert r is not None
        verdict = "ok" if not r.problems else "FAIL " + "; ".join(r.problems)
        code = "-" if r.exit_code is None else str(r.exit_code)
        print(
            f"{case.command:<24} {case.target:<18} {case.case:<44} {code:>4} {r.seconds:5.1f}s  {verdict}", flush=True
        )
        if r.problems and args.verbose:
            for line in (r.stdout + r.stderr).strip().splitlines()[-12:]:
                print(f"    | {line}")

    print(f"{'command':<24} {'flag':<18} {'case':<44} {'exit':>4} {'time':>6}  verdict")
    cases, skipped = sweep(
        args.only, args.case, subprocess_mode=args.subprocess, jobs=args.jobs, timeout_s=args.timeout, on_result=show
    )
    for command, flag, why in skipped:
        print(f"{command:<24} {flag:<18} {'(not swept: ' + why + ')'}")
    failed = [c for c in cases if c.result is not None and c.result.problems]
    commands = {c.command for c in cases}
    print(
        f"\n{len(cases)} cases over {len(commands)} commands in {time.monotonic() - started:.0f}s: "
        f"{len(cases) - len(failed)} ok, {len(failed)} failed; {len(skipped)} output parameters not swept"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
