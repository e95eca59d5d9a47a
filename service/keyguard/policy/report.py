"""Rendering findings for people (rich table) and machines (JSON, SARIF), and the CI exit-code rule."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from keyguard.errors import ConfigError
from keyguard.loading import check_http_url
from keyguard.policy.models import Finding, Severity
from keyguard.redact import redact_value

SEVERITY_STYLE = {"critical": "bold red", "high": "red", "medium": "yellow", "low": "cyan"}


def findings_json(findings: Sequence[Finding]) -> str:
    return json.dumps(
        [redact_value(f.model_dump(mode="json")) for f in findings], indent=2, sort_keys=True
    )


def print_findings(findings: Sequence[Finding], console: Console, title: str = "Findings") -> None:
    if not findings:
        console.print("[green]no findings[/]: every rule holds")
        return
    table = Table(title=f"{title} ({len(findings)})", show_lines=False)
    table.add_column("severity")
    table.add_column("rule")
    table.add_column("resource")
    table.add_column("message")
    table.add_column("remediation")
    for f in findings:
        waived = " (waived)" if f.status == "waived" else ""
        table.add_row(
            f"[{SEVERITY_STYLE.get(f.severity, '')}]{f.severity}[/]{waived}",
            f.id,
            f.resource,
            redact_value(f.message),
            f.remediation,
        )
    console.print(table)


def failing(findings: Sequence[Finding], fail_on: Severity) -> list[Finding]:
    """Open findings at or above the threshold; a waived finding does not fail the gate."""
    return [f for f in findings if f.at_or_above(fail_on) and f.status == "open"]


class ReportFormat(StrEnum):
    table = "table"
    json = "json"
    sarif = "sarif"


def resolve_format(fmt: ReportFormat | None, as_json: bool) -> ReportFormat:
    """`--json` is `--format json`, kept for the scripts that use it; the two may not disagree."""
    if as_json and fmt not in (None, ReportFormat.json):
        raise ConfigError(f"--json and --format {fmt} ask for different reports: give one of them")
    return ReportFormat.json if as_json else (fmt or ReportFormat.table)


def write_report(text: str, output: Path | None, console: Console) -> None:
    """A machine-readable report to `output`, or to standard output unstyled."""
    if output is None:
        console.file.write(text if text.endswith("\n") else text + "\n")
        return
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"--output {output}: cannot write the report ({exc.strerror or exc})") from None


def report_and_gate(findings: Sequence[Finding], console: Console, *, fail_on: Severity, as_json: bool,
                    title: str, summary: str | None = None, fmt: ReportFormat | None = None,
                    output: Path | None = None, sarif: Callable[[], dict[str, Any]] | None = None) -> None:
    """Print the findings (table, or JSON/SARIF for machines) and exit 1 when an open one is at or above fail_on.

    With `output`, the JSON/SARIF report goes to that file and the table to the terminal, for CI logs."""
    fmt = resolve_format(fmt, as_json)
    if fmt is ReportFormat.sarif:
        if sarif is None:
            raise ConfigError("--format sarif is not available for this command (use table or json)")
        write_report(json.dumps(sarif(), indent=2), output, console)
    elif fmt is ReportFormat.json and output is None:
        console.print_json(findings_json(findings))
    elif fmt is ReportFormat.json:
        write_report(findings_json(findings), output, console)
    table = fmt is ReportFormat.table or output is not None
    if table:
        if summary:
            console.print(summary)
        print_findings(findings, console, title=title)
    blocking = failing(findings, fail_on)
    if blocking:
        if table:
            console.print(f"[bold red]{len(blocking)} finding(s) at or above {fail_on}[/]")
        raise typer.Exit(1)


# The options every gating command shares, declared once.
FailOnOption = Annotated[Severity, typer.Option(help="Exit 1 when an open finding is at or above this.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print findings as JSON (same as --format json).")]
FormatOption = Annotated[ReportFormat | None, typer.Option(
    "--format", help="table (default), json, or sarif (SARIF 2.1.0 for GitHub code scanning).")]
OutputOption = Annotated[Path | None, typer.Option(
    "--output", "-o", help="Write the json/sarif report to this file; the table still goes to the terminal.")]


def _opa_url(value: str | None) -> str | None:
    """Refused before any work, without repeating it (a URL may carry a password)."""
    return None if value is None else check_http_url(value, "--opa-url")


OpaUrlOption = Annotated[str | None, typer.Option(
    "--opa-url", envvar="KEYGUARD_OPA_URL", callback=_opa_url, help="External OPA (default: managed).")]
