"""`keyguard incident show RULE`: what to do, in order, when paged for a finding; `keyguard incident
list|timeline|ack|resolve`: the incidents in the store, acted on as `cli:<user>` and audited."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlmodel import col, select

from keyguard.api.audit_log import AuditResult, record_action
from keyguard.api.cli import ConfigOption, _cli_actor, _store, _when
from keyguard.incidents import lifecycle
from keyguard.incidents.playbooks import playbook_for
from keyguard.store.db import session_scope
from keyguard.store.models import Incident

app = typer.Typer(help="Incidents (list, timeline, ack, resolve) and the response playbooks.", no_args_is_help=True)
out = Console()
err = Console(stderr=True)
NoteOption = Annotated[str, typer.Option("--note", help="What you did or are doing; it goes on the timeline.")]


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


def _incident_json(incident: Incident) -> dict[str, object]:
    values = incident.model_dump()
    return {k: _when(v) if isinstance(v, datetime) else v for k, v in values.items()}


@app.command("list")
def list_(
    config: ConfigOption = None,
    status: Annotated[str, typer.Option("--status", help="active (open or acknowledged), open, acknowledged, "
                                                         "resolved, or all")] = "active",
    as_json: Annotated[bool, typer.Option("--json", help="Print the incidents as JSON.")] = False,
) -> None:
    """The incidents, newest first."""
    if status not in ("active", "open", "acknowledged", "resolved", "all"):
        raise typer.BadParameter("one of active, open, acknowledged, resolved, all", param_hint="--status")
    with _store(config) as store, session_scope(store) as session:
        query = select(Incident)
        if status == "active":
            query = query.where(col(Incident.status).in_(lifecycle.ACTIVE))
        elif status != "all":
            query = query.where(Incident.status == status)
        rows = [_incident_json(i) for i in session.exec(query.order_by(col(Incident.pk).desc()).limit(500))]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table("#", "status", "severity", "rule", "resource", "opened (UTC)", "tier", "by")
    for i in rows:
        table.add_row(str(i["pk"]), str(i["status"]), str(i["severity"]), str(i["rule_id"]), str(i["resource"]),
                      str(i["opened_at"])[:16].replace("T", " "), str(i["tier"]),
                      str(i["resolved_by"] or i["acknowledged_by"] or ""))
    out.print(table)


@app.command()
def timeline(
    pk: Annotated[int, typer.Argument(help="The incident number (keyguard incident list).")],
    config: ConfigOption = None,
) -> None:
    """One incident and its timeline: who did what, when."""
    with _store(config) as store, session_scope(store) as session:
        try:
            incident, events, alerts = lifecycle.timeline(session, pk)
        except lifecycle.IncidentError as exc:
            err.print(f"[bold red]error:[/] {escape(str(exc))}")
            raise typer.Exit(2) from None
        out.print(f"[bold]#{incident.pk}[/] {escape(incident.title)}: {incident.status}, tier {incident.tier}, "
                  f"{incident.notifications} notification(s)")
        for event in events:
            out.print(f"  {_when(event.at)}  {event.kind:<16} {escape(event.actor):<20} {escape(event.detail)}",
                      soft_wrap=True)
        held = sum(1 for a in alerts if a.silenced_by is not None)
        out.print(f"  {len(alerts)} alert(s), {sum(1 for a in alerts if a.delivered_at)} delivered, {held} held by "
                  "silences (GET /api/incidents/{pk} lists every delivery attempt)".replace("{pk}", str(pk)))


def _act(action: str, pk: int, note: str, config: Path | None, force: bool = False) -> None:
    actor = _cli_actor()

    def now() -> datetime:
        return datetime.now(UTC)

    with _store(config) as store:
        try:
            if action == "ack":
                incident, changed = lifecycle.acknowledge(store, pk, actor, now, note)
            else:
                incident, changed = lifecycle.resolve(store, pk, actor, now, note, force)
        except lifecycle.IncidentError as exc:
            record_action(store, actor, "cli", f"incident.{action}", str(pk), AuditResult.failed, str(exc))
            err.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
            raise typer.Exit(1 if exc.status_code == 409 else 2) from None
        record_action(store, actor, "cli", f"incident.{action}", str(pk), AuditResult.ok,
                      f"{incident.rule_id} on {incident.resource}: {incident.status}" + ("" if changed else " already"))
    if changed:
        err.print(f"incident #{pk} ({escape(incident.title)}) {incident.status} by {escape(actor)}")
    else:
        who = incident.resolved_by or incident.acknowledged_by
        when = _when(incident.resolved_at or incident.acknowledged_at)
        err.print(f"incident #{pk} was already {incident.status} (by {escape(who or '?')} at {when})")


@app.command()
def ack(
    pk: Annotated[int, typer.Argument(help="The incident number (keyguard incident list).")],
    note: NoteOption = "",
    config: ConfigOption = None,
) -> None:
    """Acknowledge: you are on it. Re-notification and escalation stop; the routes hear who acknowledged."""
    _act("ack", pk, note, config)


@app.command()
def resolve(
    pk: Annotated[int, typer.Argument(help="The incident number (keyguard incident list).")],
    note: NoteOption = "",
    force: Annotated[bool, typer.Option("--force", help="Close it even though its finding still fires.")] = False,
    config: ConfigOption = None,
) -> None:
    """Resolve. Refused (exit 1) while its finding still fires, unless --force: it resolves itself once the key is
    observed clean."""
    _act("resolve", pk, note, config, force)


def _print_outcome(outcome: Any, dry_run: bool = False) -> None:
    colour = {"done": "green", "planned": "cyan", "partial": "yellow"}.get(outcome.result, "red")
    out.print(f"[bold]{outcome.action} {escape(outcome.resource)}[/]: [{colour}]{outcome.result}[/]"
              + (f" (incident #{outcome.incident_pk})" if outcome.incident_pk else "")
              + (" (dry run: nothing changed)" if dry_run else ""))
    for step in outcome.steps:
        mark = {"done": "green", "planned": "cyan", "not_available": "yellow"}.get(step.result, "red")
        out.print(f"  {_when(step.started_at)} {step.ms:>5} ms  [{mark}]{step.result:<13}[/] {step.action:<18} "
                  f"{escape(step.target)}\n      {escape(step.detail)}", soft_wrap=True)
    if outcome.detail:
        out.print(f"  {escape(outcome.detail)}", soft_wrap=True)


@app.command()
def contain(
    key: Annotated[str, typer.Argument(help="The key's id in the inventory (or exchange/id).")],
    config: ConfigOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be done; change nothing.")] = False,
    reason: Annotated[str, typer.Option("--reason", help="Why (it goes on the timeline).")] = "manual containment",
) -> None:
    """Contain a key now: kill switch, cancel open orders, cut the key at the exchange, block its secret. Prints
    each step with its result; exit 0 when every step was done (or, with --dry-run, planned), 1 otherwise."""
    actor = _cli_actor()
    with _containment(config) as (_, store, service):
        resolved = service.key_named(key)
        outcome = service.contain(resolved, trigger=f"{reason} ({actor})", actor=actor, dry_run=dry_run,
                                  incident_pk=service.latest_incident(resolved.resource))
        if not dry_run:
            record_action(store, actor, "cli", "incident.contain", resolved.resource,
                          AuditResult.ok if outcome.result == "done" else AuditResult.failed,
                          f"{outcome.result}: " + "; ".join(f"{s.action} {s.result}" for s in outcome.steps))
    _print_outcome(outcome, dry_run)
    raise typer.Exit(0 if outcome.result in ("done", "planned") else 1)


@app.command()
def release(
    key: Annotated[str, typer.Argument(help="The key's id in the inventory (or exchange/id).")],
    reason: Annotated[str, typer.Option("--reason", help="Who checked what: the release reviews the activity "
                                                         "seen before the containment.")],
    config: ConfigOption = None,
) -> None:
    """Lift a containment after re-checking the key at the exchange: a key still unsafe stays contained (exit 1)."""
    from keyguard.incidents.containment import key_recheck
    from keyguard.runtime import policy_engine_for

    actor = _cli_actor()
    with _containment(config) as (settings, store, service), policy_engine_for(settings) as engine:
        assert settings.inventory is not None
        outcome = service.release(key, reason=reason, actor=actor,
                                  recheck=key_recheck(engine, store, settings.inventory, settings.checks))
        record_action(store, actor, "cli", "incident.release", outcome.resource,
                      AuditResult.ok if outcome.result == "done" else
                      AuditResult.refused if outcome.result == "refused" else AuditResult.failed,
                      f"{outcome.result}: {outcome.detail or reason}")
    _print_outcome(outcome)
    raise typer.Exit(0 if outcome.result == "done" else 1)


@contextmanager
def _containment(config: Path | None) -> Iterator[tuple[Any, Any, Any]]:
    """(settings, store, ContainmentService) for the config's inventory; a config without one is bad input."""
    from keyguard.config import load_settings
    from keyguard.incidents.containment import ContainmentService

    settings = load_settings(config)
    if settings.inventory is None:
        raise typer.BadParameter("the config names no inventory (inventory: keyguard.yaml)", param_hint="--config")
    with _store(config) as store:
        service = ContainmentService(store, settings.inventory, settings.containment)
        try:
            yield settings, store, service
        finally:
            service.stop()


@app.command()
def evidence(
    pk: Annotated[int, typer.Argument(help="The incident number (keyguard incident list).")],
    out: Annotated[Path, typer.Option("--out", help="Directory for incident-N.json and incident-N.md.")] = Path("."),
    config: ConfigOption = None,
) -> None:
    """Write the incident's evidence pack, read at the exchange while its key was contained: JSON (every order,
    trade, withdrawal and transfer of the last 24 h, foreign ones marked, the key's state, the journals' view) and
    a readable summary."""
    from keyguard.incidents.evidence import summary
    from keyguard.store.models import ContainmentRun

    with _store(config) as store, session_scope(store) as session:
        incident = session.get(Incident, pk)
        run = session.exec(select(ContainmentRun).where(ContainmentRun.incident_pk == pk,
                                                        col(ContainmentRun.evidence).is_not(None))
                           .order_by(col(ContainmentRun.pk).desc())).first()
        if incident is None or run is None:
            err.print(f"[bold red]error:[/] incident #{pk} " + ("does not exist" if incident is None else
                      "has no evidence pack: no containment of its key read one (see keyguard incident timeline)"))
            raise typer.Exit(2)
        pack, title = dict(run.evidence or {}), f"Incident #{pk}: {incident.title}"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"incident-{pk}.json").write_text(json.dumps(pack, indent=2, default=str))
    (out / f"incident-{pk}.md").write_text(summary(pack, title))
    err.print(f"wrote {out / f'incident-{pk}.json'} and {out / f'incident-{pk}.md'}")


@app.callback()
def _incident() -> None:
    """Incidents (list, timeline, ack, resolve) and the response playbooks."""
