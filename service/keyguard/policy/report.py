"""Rendering findings for people (rich table) and machines (JSON), and the CI exit-code rule."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

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


def report_and_gate(findings: Sequence[Finding], console: Console, *, fail_on: Severity, as_json: bool,
                    title: str, summary: str | None = None) -> None:
    """Print the findings (table, or JSON for machines) and exit 1 when an open one is at or above fail_on."""
    if as_json:
        console.print_json(findings_json(findings))
    else:
        if summary:
            console.print(summary)
        print_findings(findings, console, title=title)
    blocking = failing(findings, fail_on)
    if blocking:
        if not as_json:
            console.print(f"[bold red]{len(blocking)} finding(s) at or above {fail_on}[/]")
        raise typer.Exit(1)


# The options every gating command shares, declared once.
FailOnOption = Annotated[Severity, typer.Option(help="Exit 1 when an open finding is at or above this.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print findings as JSON.")]
OpaUrlOption = Annotated[
    str | None, typer.Option("--opa-url", envvar="KEYGUARD_OPA_URL", help="External OPA (default: managed).")
]
