"""Runs action.yml's `run:` steps the way a GitHub runner does, on this machine.

Each step gets what GitHub gives a composite action's step: `bash --noprofile --norc -eo pipefail`, the workspace
as working directory, GITHUB_ACTION_PATH, RUNNER_TEMP, a fresh GITHUB_OUTPUT file per step (read back into
`steps.<id>.outputs`), one GITHUB_STEP_SUMMARY, and the step's `env:` with its `${{ }}` expressions evaluated
against the inputs (defaults from action.yml), the github and runner contexts and earlier steps' outputs. A step
runs when every earlier step succeeded or its `if:` is `always()`. `uses:` steps need GitHub itself (uv setup,
the opa cache, the SARIF upload, the comment API) and are recorded as skipped. Expressions beyond what the
action uses (a context path, a quoted string, `a || b`) are refused, so the runner never guesses.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from keyguard.tools import PROJECT_ROOT

ACTION_FILE = PROJECT_ROOT / "action.yml"
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
OPERAND = re.compile(r"^(?:'(?P<literal>[^']*)'|(?P<path>[A-Za-z_][A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]+)*))$")


def load_action() -> dict[str, Any]:
    return yaml.safe_load(ACTION_FILE.read_text(encoding="utf-8"))


def evaluate(expression: str, context: dict[str, Any]) -> str:
    """A context path, a quoted string, or `a || b || ...` (the first non-empty)."""
    for part in expression.split("||"):
        match = OPERAND.match(part.strip())
        if match is None:
            raise ValueError(f"expression {expression!r} is beyond what this runner evaluates")
        if match.group("literal") is not None:
            value: Any = match.group("literal")
        else:
            value = context
            for key in match.group("path").split("."):
                value = value.get(key, "") if isinstance(value, dict) else ""
        if value not in ("", None, False):
            return str(value)
    return ""


def interpolate(text: str, context: dict[str, Any]) -> str:
    return EXPRESSION.sub(lambda m: evaluate(m.group(1), context), text)


def read_outputs(path: Path) -> dict[str, str]:
    """GITHUB_OUTPUT's two forms: `name=value` and `name<<DELIMITER` ... `DELIMITER`."""
    outputs: dict[str, str] = {}
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    i = 0
    while i < len(lines):
        line = lines[i]
        if "<<" in line and "=" not in line.split("<<", 1)[0]:
            name, delimiter = line.split("<<", 1)
            end = lines.index(delimiter, i + 1)
            outputs[name] = "\n".join(lines[i + 1:end])
            i = end + 1
            continue
        name, sep, value = line.partition("=")
        if sep:
            outputs[name] = value
        i += 1
    return outputs


@dataclass
class StepRun:
    name: str
    id: str | None
    ran: bool
    returncode: int | None = None
    stdout: str = ""
    stderr: str = ""
    outputs: dict[str, str] = field(default_factory=dict)


@dataclass
class ActionRun:
    steps: list[StepRun]
    outputs: dict[str, str]
    summary: str

    @property
    def failed(self) -> bool:
        return any(s.ran and s.returncode != 0 for s in self.steps)

    def step(self, step_id: str) -> StepRun:
        return next(s for s in self.steps if s.id == step_id)

    @property
    def log(self) -> str:
        return "\n".join(f"--- {s.name}\n{s.stdout}{s.stderr}" for s in self.steps if s.ran)


def clean_path() -> str:
    """PATH without this checkout's virtualenv: on a runner the action calls keyguard by its full path."""
    venv = str(PROJECT_ROOT / ".venv")
    return os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if not p.startswith(venv))


def run_action(workspace: Path, runner_temp: Path, inputs: dict[str, str], github: dict[str, Any]) -> ActionRun:
    action = load_action()
    declared = action.get("inputs", {})
    unknown = set(inputs) - set(declared)
    if unknown:
        raise ValueError(f"inputs not declared in action.yml: {sorted(unknown)}")
    github = {"action_path": str(PROJECT_ROOT), "workspace": str(workspace), "token": "test-token", **github}
    context: dict[str, Any] = {"github": github, "runner": {"temp": str(runner_temp), "os": "Linux", "arch": "X64"},
                               "steps": {}}
    context["inputs"] = {name: inputs.get(name, interpolate(str(spec.get("default", "")), context))
                         for name, spec in declared.items()}
    summary = runner_temp / "step-summary.md"
    summary.touch()
    base_env = {"PATH": clean_path(), "HOME": os.environ.get("HOME", str(runner_temp)), "LANG": "C.UTF-8",
                "CI": "true", "GITHUB_ACTIONS": "true", "GITHUB_ACTION_PATH": str(PROJECT_ROOT),
                "GITHUB_WORKSPACE": str(workspace), "RUNNER_TEMP": str(runner_temp),
                "GITHUB_EVENT_NAME": str(github.get("event_name", "")), "GITHUB_STEP_SUMMARY": str(summary)}
    runs: list[StepRun] = []
    for index, step in enumerate(action["runs"]["steps"]):
        name, step_id = step.get("name", f"step {index}"), step.get("id")
        condition = step.get("if")
        if "uses" in step:
            runs.append(StepRun(name, step_id, ran=False))
            continue
        if condition not in (None, "always()"):
            raise ValueError(f"step {name!r}: `if: {condition}` is beyond what this runner evaluates")
        if condition is None and any(r.ran and r.returncode != 0 for r in runs):
            runs.append(StepRun(name, step_id, ran=False))
            continue
        output_file = runner_temp / f"output-{index}"
        output_file.write_text("")
        script = runner_temp / f"step-{index}.sh"
        script.write_text(step["run"], encoding="utf-8")
        env = {**base_env, "GITHUB_OUTPUT": str(output_file),
               **{key: interpolate(str(value), context) for key, value in (step.get("env") or {}).items()}}
        proc = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)], cwd=workspace,
                              env=env, capture_output=True, text=True, timeout=600)
        run = StepRun(name, step_id, True, proc.returncode, proc.stdout, proc.stderr, read_outputs(output_file))
        runs.append(run)
        if step_id:
            context["steps"][step_id] = {"outputs": run.outputs}
    outputs = {name: interpolate(str(spec["value"]), context) for name, spec in action.get("outputs", {}).items()}
    return ActionRun(runs, outputs, summary.read_text(encoding="utf-8"))
