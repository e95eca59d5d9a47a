"""`keyguard policy`: check documents against the rule set, list the rules, test the policies."""

from __future__ import annotations

import json
import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from keyguard.errors import PolicyError
from keyguard.policy.bundle import export_bundle, resolve_bundle, schema_args
from keyguard.policy.catalogue import load_rules
from keyguard.policy.documents import load_document
from keyguard.policy.engine import evaluate_each
from keyguard.policy.models import Severity, sort_findings
from keyguard.policy.report import (
    FailOnOption,
    FormatOption,
    JsonOption,
    OpaUrlOption,
    OutputOption,
    report_and_gate,
    resolve_format,
)
from keyguard.policy.waivers import apply_waivers, load_waivers
from keyguard.tools import opa_binary, opa_ignore_args, policy_dir, regal_binary

app = typer.Typer(help="Check documents against the Rego rule set, list the rules, test the policies.",
                  no_args_is_help=True)
out = Console()
err = Console(stderr=True)

PolicyDirOption = Annotated[Path | None, typer.Option(
    "--policy-dir", help="Rego policy directory or built bundle (default: the checkout's, else the packaged one).")]


@app.command()
def check(
    files: Annotated[list[Path], typer.Argument(help="JSON or YAML input documents (each with a `kind`).")],
    fail_on: FailOnOption = Severity.high,
    as_json: JsonOption = False,
    fmt: FormatOption = None,
    output: OutputOption = None,
    waivers_file: Annotated[Path | None, typer.Option("--waivers", help="YAML/JSON with a `waivers` list.")] = None,
    policy_root: PolicyDirOption = None,
    opa_url: OpaUrlOption = None,
) -> None:
    """Evaluate input documents; exit 1 when any open finding is at or above --fail-on."""
    fmt = resolve_format(fmt, as_json)  # a bad combination fails before any work
    documents = [(str(path), load_document(path)) for path in files]  # parse all before starting OPA
    waivers, notes = load_waivers(waivers_file) if waivers_file else ([], [])
    per_document = evaluate_each(documents, opa_url, policy_root)
    sources = [path for path, (_, found) in zip(files, per_document, strict=True) for _ in found]
    results, expired = apply_waivers([f for _, found in per_document for f in found], waivers, datetime.now(UTC))
    for note in [*notes, *expired]:
        err.print(f"[yellow]waiver:[/] {note.message}")

    def sarif() -> dict[str, Any]:
        from keyguard.gate.locate import compose, locate_in_document
        from keyguard.gate.sarif import LocatedFinding, catalogue_texts, sarif_log

        trees = {path: compose(path) for path in files}
        located = [LocatedFinding(f, locate_in_document(path, f.resource, f.evidence, trees[path]))
                   for path, f in zip(sources, results, strict=True)]
        return sarif_log(located, catalogue_texts())

    report_and_gate(sort_findings(results), out, fail_on=fail_on, as_json=as_json, fmt=fmt, output=output,
                    sarif=sarif, title=", ".join(name for name, _ in documents))


@app.command()
def rules(
    as_json: Annotated[bool, typer.Option("--json", help="Print the catalogue as JSON.")] = False,
    policy_root: PolicyDirOption = None,
) -> None:
    """List every rule with its id, severity, title and remediation (from the rules' METADATA)."""
    catalogue = load_rules(policy_root)
    if as_json:
        out.print_json(json.dumps(catalogue))
        return
    table = Table(title=f"Keyguard rules ({len(catalogue)})")
    for col in ("id", "severity", "title", "remediation"):
        table.add_column(col)
    for r in catalogue:
        table.add_row(r["id"], r["severity"], r["title"], r["remediation"])
    out.print(table)


def _run(step: str, args: list[str]) -> subprocess.CompletedProcess[str]:
    out.print(f"[bold]{step}[/]: {' '.join(args[1:])}")
    return subprocess.run(args, capture_output=True, text=True, timeout=600)


@app.command("test")
def test_policies(
    min_coverage: Annotated[float, typer.Option(help="Minimum `opa test` coverage, percent.")] = 90.0,
    policy_root: PolicyDirOption = None,
) -> None:
    """The policy gate CI runs: `opa fmt` clean, `opa check --strict`, `opa test` with coverage."""
    root = str(policy_root or policy_dir())
    opa = opa_binary()
    fmt = _run("format", [opa, "fmt", "--list", "--fail", root])
    unformatted = [line for line in fmt.stdout.splitlines() if line.strip()]
    if fmt.returncode != 0 or unformatted:
        raise PolicyError("not `opa fmt` clean (run `opa fmt -w policies`): " + ", ".join(unformatted))
    # --schema: each area's input is type-checked against schemas/ (METADATA `schemas`), so a misspelt field fails.
    strict = _run("strict check", [opa, "check", "--strict", *schema_args(), *opa_ignore_args(), root])
    if strict.returncode != 0:
        raise PolicyError(f"`opa check --strict` failed:\n{strict.stdout}{strict.stderr}")
    regal = regal_binary()
    if regal is None:
        err.print("[yellow]regal not installed (run `make setup`): lint skipped[/]")
    else:
        lint = subprocess.run([regal, "lint", "--format", "compact", "."], capture_output=True, text=True,
                              cwd=root, timeout=600)
        out.print("[bold]lint[/]: regal lint")
        if lint.returncode != 0:
            raise PolicyError(f"`regal lint` found violations:\n{lint.stdout[-4000:]}{lint.stderr[-2000:]}")
    tests = _run("tests", [opa, "test", *schema_args(), *opa_ignore_args(), root])
    if tests.returncode != 0:
        fails = [ln for ln in tests.stdout.splitlines() if re.search(r"FAIL|ERROR|error", ln)]
        detail = "\n".join(fails[:50]) or tests.stdout[-3000:] + tests.stderr[-3000:]
        raise PolicyError(f"`opa test` failed:\n{detail}")
    summary = next((ln for ln in tests.stdout.splitlines() if ln.startswith("PASS:")), "PASS")
    cov = _run("coverage", [opa, "test", *schema_args(), *opa_ignore_args(), root, "--coverage", "--format", "json"])
    try:
        coverage = float(json.loads(cov.stdout).get("coverage", 0.0))
    except (json.JSONDecodeError, AttributeError):
        raise PolicyError(f"`opa test --coverage` gave no report:\n{cov.stderr[-2000:]}") from None
    out.print(f"{summary}; coverage {coverage:.1f}% (minimum {min_coverage:.0f}%)")
    if coverage < min_coverage:
        raise PolicyError(f"policy test coverage {coverage:.1f}% is below the required {min_coverage:.0f}%")


@app.command("bundle")
def bundle(
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the bundle (.tar.gz).")],
    policy_root: PolicyDirOption = None,
) -> None:
    """Write the versioned policy bundle every Keyguard component loads (for an OPA bundle server, or
    KEYGUARD_POLICY_BUNDLE for the CrossGuard pack); a policy directory is checked and built first."""
    built = resolve_bundle(policy_root)
    export_bundle(built, output)
    out.print(f"wrote {output}: {built.describe()}")
