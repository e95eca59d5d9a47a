"""`keyguard incident show RULE`: what to do, in order, when paged for a finding."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console

from keyguard.incidents.playbooks import playbook_for

app = typer.Typer(help="Response playbooks: contain first, then the checklist.", no_args_is_help=True)
out = Console()


@app.command()
def show(
    rule: Annotated[str, typer.Argument(help="Rule id from the alert, e.g. KG-KEY-101.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the playbook as JSON.")] = False,
) -> None:
    """Print the playbook for a rule: containment steps first, then the follow-up checklist."""
    book = playbook_for(rule.strip().upper())
    if as_json:
        out.print_json(json.dumps(book.model_dump()))
        return
    out.print(f"[bold]{rule.upper()}[/]: {book.title}")
    out.print("[bold red]Contain now[/]")
    for number, step in enumerate(book.contain, 1):
        out.print(f"  {number}. {step}", soft_wrap=True, markup=False)
    if book.checklist:
        out.print("[bold]Then[/]")
        for step in book.checklist:
            out.print(f"  - {step}", soft_wrap=True, markup=False)


@app.callback()
def _incident() -> None:
    """Response playbooks: contain first, then the checklist."""
