"""`keyguard token create|list|revoke`: API tokens in the store, so every replica sharing it honours them at once."""

from __future__ import annotations

import getpass
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.engine import Engine

from keyguard.api.access import create_token, list_tokens, parse_role, revoke_token
from keyguard.api.audit_log import AuditResult, record_action
from keyguard.store.models import as_utc

app = typer.Typer(help="API tokens with roles: viewer (reads) or operator (reads and actions).",
                  no_args_is_help=True)
out = Console()
err = Console(stderr=True)

ConfigOption = Annotated[Path | None, typer.Option("--config", "-c", help="keyguard.yaml (its store.url is used)")]
NameOption = Annotated[str, typer.Option("--name", help="The token's name, as the audit log shows it.")]


@contextmanager
def _store(config: Path | None) -> Iterator[Engine]:
    from keyguard.config import load_settings
    from keyguard.store.db import create_store_engine, init_store

    store = create_store_engine(load_settings(config).store.url)
    try:
        init_store(store)
        yield store
    finally:
        store.dispose()


def _cli_actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no login name (a container without a passwd entry)
        return "cli"


def _when(value: datetime | None) -> str | None:
    return as_utc(value).isoformat(timespec="seconds") if value else None


def _minute(value: datetime | None) -> str:
    return as_utc(value).strftime("%Y-%m-%d %H:%M") if value else ""


@app.command()
def create(
    name: NameOption,
    role: Annotated[str, typer.Option("--role", help="viewer or operator")],
    config: ConfigOption = None,
) -> None:
    """Create a token and print it once: it is not stored, only its hash is, so it cannot be shown again."""
    checked_role = parse_role(role)
    with _store(config) as store:
        token = create_token(store, name, checked_role)
        record_action(store, _cli_actor(), "cli", "token.create", name, AuditResult.ok, f"role {checked_role}")
    err.print(f"token {name!r} ({checked_role}) created; it is shown only now, store it in your secret manager:",
              highlight=False)
    print(token)


@app.command("list")
def list_(
    config: ConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the tokens as JSON.")] = False,
) -> None:
    """List the tokens: name, role, created, last used, revoked (never a token or its hash)."""
    with _store(config) as store:
        tokens = list_tokens(store)
    if as_json:
        print(json.dumps([{"name": t.name, "role": t.role, "created_at": _when(t.created_at),
                           "last_used_at": _when(t.last_used_at), "revoked_at": _when(t.revoked_at)}
                          for t in tokens], indent=2))
        return
    table = Table("name", "role", "created (UTC)", "last used", "revoked")
    for t in tokens:
        table.add_row(t.name, t.role, _minute(t.created_at), _minute(t.last_used_at) or "never",
                      _minute(t.revoked_at))
    out.print(table)
    out.print("The environment token (service.api_token_env) is an operator named 'env'; it is not in the store.")


@app.command()
def revoke(name: NameOption, config: ConfigOption = None) -> None:
    """Revoke a token: every replica refuses it from its next request on."""
    with _store(config) as store:
        record, revoked_now = revoke_token(store, name)
        if revoked_now:
            record_action(store, _cli_actor(), "cli", "token.revoke", name, AuditResult.ok, f"role {record.role}")
    if revoked_now:
        err.print(f"token {name!r} revoked", highlight=False)
    else:
        err.print(f"token {name!r} was already revoked at {_when(record.revoked_at)}", highlight=False)


@app.callback()
def _token() -> None:
    """API tokens with roles: viewer (reads) or operator (reads and actions)."""
