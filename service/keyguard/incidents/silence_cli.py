"""`keyguard silence add|list|end`: silences and maintenance windows in the store, as `cli:<user>`, audited."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlmodel import col, select

from keyguard.api.audit_log import AuditResult, record_action
from keyguard.api.cli import ConfigOption, _cli_actor, _store, _when
from keyguard.incidents import lifecycle
from keyguard.store.db import session_scope
from keyguard.store.models import Silence

app = typer.Typer(help="Silences and maintenance windows: matched alerts are recorded and shown, not sent.",
                  no_args_is_help=True)
out = Console()
err = Console(stderr=True)

DURATION = re.compile(r"^\s*(?:(\d+)d)?\s*(?:(\d+)h)?\s*(?:(\d+)m)?\s*(?:(\d+)s)?\s*$")


def parse_duration(text: str) -> timedelta:
    """2h, 90m, 1d12h, 45s; a bare number is minutes."""
    if text.strip().isdigit():
        return timedelta(minutes=int(text))
    match = DURATION.match(text)
    if not match or not any(match.groups()):
        raise typer.BadParameter(f"{text!r} is not a duration; e.g. 2h, 90m, 1d12h", param_hint="--for")
    d, h, m, s = (int(g or 0) for g in match.groups())
    return timedelta(days=d, hours=h, minutes=m, seconds=s)


def parse_time(text: str, hint: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not an ISO 8601 time, e.g. 2026-12-01T02:00Z", param_hint=hint) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@app.command()
def add(
    rule: Annotated[str, typer.Option("--rule", help="Rule id or glob: KG-KEY-101, KG-KEY-*, * for any.")],
    resource: Annotated[str, typer.Option("--resource", help="Resource or glob: binance/bot-exec, binance/*.")],
    reason: Annotated[str, typer.Option("--reason", help="Why, and who to ask.")],
    duration: Annotated[str | None, typer.Option("--for", help="How long from its start: 2h, 90m, 1d.")] = None,
    until: Annotated[str | None, typer.Option("--until", help="When it ends (ISO 8601, UTC unless zoned).")] = None,
    start: Annotated[str | None, typer.Option("--start", help="When it starts (default now): a maintenance "
                                                               "window.")] = None,
    config: ConfigOption = None,
) -> None:
    """Silence the alerts of a rule on a resource for a while. It must end: give --for or --until."""
    from keyguard.config import load_settings

    if (duration is None) == (until is None):
        raise typer.BadParameter("give exactly one of --for and --until: a silence always ends", param_hint="--for")
    now = datetime.now(UTC)
    starts_at = parse_time(start, "--start") if start else now
    ends_at = parse_time(until, "--until") if until else starts_at + parse_duration(duration or "")
    actor = _cli_actor()
    max_s = load_settings(config).incidents.max_silence_s
    with _store(config) as store:
        try:
            silence = lifecycle.add_silence(store, rule=rule, resource=resource, reason=reason, author=actor,
                                            starts_at=starts_at, ends_at=ends_at, now=now, max_duration_s=max_s)
        except lifecycle.IncidentError as exc:
            record_action(store, actor, "cli", "silence.add", f"{rule} on {resource}", AuditResult.failed, str(exc))
            err.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
            raise typer.Exit(2) from None
        record_action(store, actor, "cli", "silence.add", f"{rule} on {resource}", AuditResult.ok,
                      f"#{silence.pk} until {_when(silence.ends_at)}: {silence.reason}")
    err.print(f"silence #{silence.pk}: {escape(rule)} on {escape(resource)} from {_when(silence.starts_at)} "
              f"until {_when(silence.ends_at)}")


@app.command("list")
def list_(
    config: ConfigOption = None,
    include_ended: Annotated[bool, typer.Option("--all", help="Also the expired and ended ones.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the silences as JSON.")] = False,
) -> None:
    """The silences, newest first, each with its state: pending, active, expired or ended."""
    now = datetime.now(UTC)
    with _store(config) as store, session_scope(store) as session:
        rows = [(s, lifecycle.silence_state(s, now)) for s in
                session.exec(select(Silence).order_by(col(Silence.pk).desc()).limit(500))]
        rows = [(s, state) for s, state in rows if include_ended or state in ("pending", "active")]
        items = [{"pk": s.pk, "state": state, "rule": s.rule, "resource": s.resource, "reason": s.reason,
                  "author": s.author, "starts_at": _when(s.starts_at), "ends_at": _when(s.ends_at),
                  "ended_at": _when(s.ended_at), "ended_by": s.ended_by} for s, state in rows]
    if as_json:
        print(json.dumps(items, indent=2))
        return
    table = Table("#", "state", "rule", "resource", "from", "until", "author", "reason")
    for i in items:
        table.add_row(str(i["pk"]), str(i["state"]), str(i["rule"]), str(i["resource"]),
                      str(i["starts_at"])[:16], str(i["ends_at"])[:16], str(i["author"]), str(i["reason"]))
    out.print(table)


@app.command()
def end(
    pk: Annotated[int, typer.Argument(help="The silence number (keyguard silence list).")],
    config: ConfigOption = None,
) -> None:
    """End a silence now: what it held back and is still open is sent."""
    actor = _cli_actor()
    with _store(config) as store:
        try:
            silence, changed = lifecycle.end_silence(store, pk, actor, datetime.now(UTC))
        except lifecycle.IncidentError as exc:
            err.print(f"[bold red]error:[/] {escape(str(exc))}")
            raise typer.Exit(2) from None
        record_action(store, actor, "cli", "silence.end", str(pk), AuditResult.ok,
                      "ended" if changed else "had already ended")
    err.print(f"silence #{pk} ended" if changed else f"silence #{pk} had already ended ({_when(silence.ends_at)})")


@app.callback()
def _silence() -> None:
    """Silences and maintenance windows: matched alerts are recorded and shown, not sent."""
