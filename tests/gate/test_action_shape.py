"""action.yml has the composite-action shape GitHub accepts, and every workflow (this repository's and the README's
example for users) is actionlint clean with the action's real inputs."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from jsonschema import Draft7Validator

from keyguard.tools import PROJECT_ROOT, TOOLS_DIR

from .action_runner import EXPRESSION, load_action
from .conftest import FIXTURES

ACTIONLINT = TOOLS_DIR / "actionlint"


def test_action_matches_the_action_metadata_schema() -> None:
    schema = json.loads((FIXTURES / "github-action.schema.json").read_text(encoding="utf-8"))
    errors = list(Draft7Validator(schema).iter_errors(load_action()))
    assert not errors, [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:5]]


def test_composite_steps_reference_only_declared_inputs_and_earlier_steps_and_keep_expressions_out_of_scripts(
) -> None:
    action = load_action()
    assert action["runs"]["using"] == "composite"
    inputs, outputs = set(action["inputs"]), action["outputs"]
    seen: list[str] = []
    for step in action["runs"]["steps"]:
        text = json.dumps({k: v for k, v in step.items() if k != "run"})
        for expression in EXPRESSION.findall(text) + ([step["if"]] if "if" in step else []):
            for name in re.findall(r"\binputs\.([A-Za-z0-9_-]+)", expression):
                assert name in inputs, f"step {step.get('name')!r} reads undeclared input {name!r}"
            for step_id in re.findall(r"\bsteps\.([A-Za-z0-9_-]+)\.", expression):
                assert step_id in seen, f"step {step.get('name')!r} reads step {step_id!r} before it runs"
        if "run" in step:
            # Inputs reach scripts through env only: `${{ }}` inside a script is a script-injection hole.
            assert "${{" not in step["run"], f"step {step.get('name')!r} interpolates into its script"
            assert step["shell"] == "bash"
        if "id" in step:
            assert step["id"] not in seen, f"duplicate step id {step['id']!r}"
            seen.append(step["id"])
    for name, output in outputs.items():
        assert re.fullmatch(r"\$\{\{ steps\.report\.outputs\.[a-z-]+ \}\}", output["value"]), name


def _actionlint(*files: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    if not ACTIONLINT.is_file():
        pytest.fail(f"actionlint is not installed at {ACTIONLINT}: run `bash scripts/setup.sh` (needs Go)")
    # -shellcheck= : the result must not depend on whether shellcheck happens to be installed here.
    return subprocess.run([str(ACTIONLINT), "-no-color", "-shellcheck=", *map(str, files)], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_this_repositorys_workflows_are_actionlint_clean() -> None:
    workflows = sorted((PROJECT_ROOT / ".github" / "workflows").glob("*.yml"))
    assert any(w.name == "policy-gate.yml" for w in workflows)
    assert "uses: ./" in (PROJECT_ROOT / ".github" / "workflows" / "policy-gate.yml").read_text()
    lint = _actionlint(*workflows, cwd=PROJECT_ROOT)
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_readme_example_workflow_is_actionlint_clean_against_the_actions_inputs(tmp_path: Path) -> None:
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## The pull-request gate in your repository", 1)[1].split("\n## ", 1)[0]
    example = re.search(r"```yaml\n(.*?)```", section, re.DOTALL)
    assert example is not None, "the README's gate section has no ```yaml example"
    workflow = example.group(1)
    assert re.search(r"uses: [\w-]+/keyguard@", workflow)
    # In a copy of the repository root, the example uses the action as `./`, so actionlint checks its `with:`
    # against action.yml's real inputs (a remote action's inputs are not known to it).
    shutil.copy(PROJECT_ROOT / "action.yml", tmp_path / "action.yml")
    target = tmp_path / ".github" / "workflows" / "keyguard.yml"
    target.parent.mkdir(parents=True)
    target.write_text(re.sub(r"uses: [\w-]+/keyguard@\S+", "uses: ./", workflow), encoding="utf-8")
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True, timeout=30)
    lint = _actionlint(target, cwd=tmp_path)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    # And a misspelt input is caught that way, so the check above has teeth.
    target.write_text(target.read_text().replace("fail-on:", "fail_on:"), encoding="utf-8")
    assert "fail_on" in _actionlint(target, cwd=tmp_path).stdout
