"""`keyguard keys inspect`: ask each exchange what every inventoried key can really do; `--check` runs the
result through the policy set."""

from __future__ import annotations

import json
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from keyguard.errors import ConfigError
from keyguard.exchanges.inventory import Inventory, ProbeSettings, inspect_inventory, keys_document, load_inventory
from keyguard.exchanges.keystate import KeyState
from keyguard.loading import check_env_name, check_http_url, validate
from keyguard.policy.models import Severity
from keyguard.redact import redact_value

app = typer.Typer(help="Exchange API keys: inspect what each key can really do.", no_args_is_help=True)
out = Console()
err = Console(stderr=True)


@app.callback()
def keys() -> None:
    """Exchange API keys: inspect what each key can really do."""


def _mark(value: bool | None, danger: bool) -> str:
    if value is None:
        return "[bold yellow]?[/]"
    if value:
        return "[bold red]yes[/]" if danger else "yes"
    return "[green]no[/]" if danger else "no"


def _print_states(states: list[KeyState]) -> None:
    table = Table(title=f"Keys ({len(states)})")
    for column in ("key", "purpose", "read", "trade", "transfer", "withdraw", "IP restricted", "binding",
                   "created", "clock offset", "error"):
        table.add_column(column)
    for s in states:
        p = s.permissions
        table.add_row(
            f"{s.exchange}/{s.key_id}", s.purpose,
            _mark(p.read if p else None, False), _mark(p.trade if p else None, False),
            _mark(p.transfer if p else None, True), _mark(p.withdraw if p else None, True),
            _mark(s.ip_restricted, False), s.ip_binding_source,
            s.created_at.strftime("%Y-%m-%d") if s.created_at else "-",
            f"{s.server_time_offset_ms} ms" if s.server_time_offset_ms is not None else "-",
            f"[red]{s.error_kind}[/]: {s.inspection_error}" if s.inspection_error else "",
        )
    out.print(table)


def _inventory_from_flags(exchange: str | None, key_id: str | None, api_key_env: str | None,
                          secret_env: str | None, passphrase_env: str | None, purpose: str,
                          services: list[str], allowed_ips: list[str]) -> Inventory:
    if not (exchange and key_id and api_key_env and secret_env):
        raise ConfigError("give --inventory FILE, or all of --exchange, --key-id, --api-key-env and --secret-env")
    for flag, name in (("--api-key-env", api_key_env), ("--secret-env", secret_env),
                       ("--passphrase-env", passphrase_env)):
        if name is not None:
            check_env_name(name, flag)
    ips = []
    for entry in allowed_ips:
        value, _, reason = entry.partition("=")
        ips.append({"value": value, "reason": reason})
    return validate(Inventory, {"keys": [{
        "id": key_id, "exchange": exchange, "purpose": purpose, "services": services, "allowed_ips": ips,
        "credentials": {"api_key_env": api_key_env, "secret_env": secret_env, "passphrase_env": passphrase_env},
    }]}, "the command line")


@app.command()
def inspect(
    inventory_file: Annotated[Path | None, typer.Option("--inventory", "-i",
                                                        help="Keys inventory (see examples/keyguard.yaml).")] = None,
    exchange: Annotated[str | None, typer.Option(help="Without an inventory: the exchange (ccxt id).")
                        ] = None,
    key_id: Annotated[str | None, typer.Option(help="Without an inventory: the key's id in reports.")] = None,
    api_key_env: Annotated[str | None, typer.Option(help="Env var holding the API key.")] = None,
    secret_env: Annotated[str | None, typer.Option(help="Env var holding the API secret.")] = None,
    passphrase_env: Annotated[str | None, typer.Option(help="Env var holding the passphrase (OKX).")] = None,
    purpose: Annotated[str, typer.Option(help="Declared purpose (execution, monitoring, ...).")] = "unknown",
    service: Annotated[list[str] | None, typer.Option(help="Service using the key (repeatable).")] = None,
    allowed_ip: Annotated[list[str] | None, typer.Option(help="Declared allowed IP as ADDRESS=REASON (repeatable).")
                          ] = None,
    exchange_url: Annotated[str | None, typer.Option(help="Base URL of a Keyguard sandbox to ask instead of the "
                                                          "real exchange (overrides the inventory's).")] = None,
    source_ip: Annotated[str | None, typer.Option(help="Local address to send from (the host's bound IP).")] = None,
    probe_from: Annotated[str | None, typer.Option(help="Second local address for the IP probe; the key must be "
                                                        "refused from it.")] = None,
    timeout_ms: Annotated[int, typer.Option(min=1, help="Per-request timeout.")] = 10000,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    check: Annotated[bool, typer.Option("--check", help="Run the results through the policy set.")] = False,
    fail_on: Annotated[str, typer.Option(help="With --check: exit 1 when a finding is at or above this severity "
                                              "(low, medium, high, critical).")] = "high",
) -> None:
    """Inspect keys at their exchanges: permissions, IP binding (probed when --probe-from is given), times."""
    if fail_on not in ("low", "medium", "high", "critical"):
        raise ConfigError("--fail-on: expected one of low, medium, high, critical")
    if inventory_file is not None:
        inventory = load_inventory(inventory_file)
    else:
        inventory = _inventory_from_flags(exchange, key_id, api_key_env, secret_env, passphrase_env, purpose,
                                          service or [], allowed_ip or [])
    if exchange_url:
        check_http_url(exchange_url, "--exchange-url")
        inventory.exchange_urls = {k.exchange: exchange_url for k in inventory.keys}
    if source_ip or probe_from:
        inventory.probe = ProbeSettings(source_ip=source_ip or inventory.probe.source_ip,
                                        **{"from": probe_from or inventory.probe.from_ip})
    if not inventory.keys:
        raise ConfigError(f"{inventory_file}: no keys listed under `keys`")

    with err.status("asking the exchanges") if not as_json else nullcontext():
        states = inspect_inventory(inventory, timeout_ms=timeout_ms)
    document = keys_document(states, inventory.hosts)

    if not check:
        if as_json:
            out.print_json(json.dumps(redact_value({"keys": document["keys"]})))
        else:
            _print_states(states)
        return
    from keyguard.policy.engine import evaluate_documents
    from keyguard.policy.report import failing, report_and_gate

    findings = evaluate_documents([("keys", document)])
    if as_json:
        findings_out = [f.model_dump(mode="json") for f in findings]
        out.print_json(json.dumps(redact_value({"keys": document["keys"], "findings": findings_out})))
        if failing(findings, Severity(fail_on)):
            raise typer.Exit(1)
        return
    _print_states(states)
    report_and_gate(findings, out, fail_on=Severity(fail_on), as_json=False, title="Findings")


def _register_rotate() -> None:
    """`keyguard keys rotate`: lives with the gateway, which does the swap; listed here with the other key commands."""
    from keyguard.gateway.cli import rotate_key

    app.command("rotate")(rotate_key)


_register_rotate()
