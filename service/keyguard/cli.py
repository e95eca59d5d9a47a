"""The `keyguard` command. Each area owns its own Typer sub-app; this module only composes them."""

from __future__ import annotations

import importlib
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from keyguard.errors import KeyguardError
from keyguard.redact import install_log_redaction, redact_text

# (sub-command, module exposing a Typer `app`, one-line help): each area registers itself here and nowhere else.
# Sub-apps are imported only when their command runs, so `keyguard policy check` does not pay for ccxt or Pulumi,
# and `keyguard --help` lists them from the one-line help here (the sub-app's own; a test keeps the two equal).
SUBCOMMANDS = {
    "policy": ("keyguard.policy.cli", "Check documents against the Rego rule set, list the rules, test the policies."),
    "keys": ("keyguard.exchanges.cli", "Exchange API keys: inspect what each key can really do."),
    "sandbox": ("keyguard.sandbox.cli",
                "The sandbox exchange (Binance-compatible, with OKX, Bybit and KuCoin key introspection)."),
    "worker": ("keyguard.worker.cli", "The execution worker: limiter, idempotent orders, risk caps, kill switch."),
    "gateway": ("keyguard.gateway.cli",
                "The gateway unmodified bots trade through: envelope, shared budget, idempotent orders."),
    "infra": ("keyguard.infra.cli",
              "Check the Pulumi program (under mocks) and the live stack against the infra rules."),
    "incident": ("keyguard.incidents.cli", "Incidents (list, timeline, ack, resolve) and the response playbooks."),
    "silence": ("keyguard.incidents.silence_cli",
                "Silences and maintenance windows: matched alerts are recorded and shown, not sent."),
    "token": ("keyguard.api.cli", "API tokens with roles: viewer (reads) or operator (reads and actions)."),
    "gate": ("keyguard.gate.cli", "The pull-request gate: scan a diff for credentials, merge the checks' reports."),
}


class LazyGroup(TyperGroup):
    _listing = False  # while the help text is written: sub-commands are named, not imported

    def list_commands(self, ctx: Any) -> list[str]:
        return sorted({*super().list_commands(ctx), *SUBCOMMANDS})

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name in SUBCOMMANDS:
            module, help_text = SUBCOMMANDS[cmd_name]
            if self._listing:
                return TyperGroup(name=cmd_name, help=help_text)
            command = typer.main.get_group(importlib.import_module(module).app)
            command.name, command.help = cmd_name, command.help or help_text
            return command
        return super().get_command(ctx, cmd_name)


app = typer.Typer(
    name="keyguard",
    cls=LazyGroup,
    help="Keep exchange API keys and trading bots inside a declared safety envelope.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)



@app.callback()
def _root() -> None:
    """Keep exchange API keys and trading bots inside a declared safety envelope."""


try:
    from keyguard.demo import demo as _demo

    app.command("demo", help="Start the service, sandbox exchange and managed OPA on embedded defaults.")(_demo)
except ModuleNotFoundError as exc:
    if not (exc.name and exc.name.startswith("keyguard")):
        raise

err = Console(stderr=True)


@app.command()
def serve(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="keyguard.yaml")] = None,
) -> None:
    """Run the compliance service: scheduled checks, drift alerts and the HTTP API, until interrupted."""
    from keyguard.config import load_settings
    from keyguard.runtime import api_token_from, build_collectors, run_service, wait_for_shutdown

    settings = load_settings(config)
    collectors = build_collectors(settings)
    with run_service(settings, collectors, api_token_from(settings, generate=False)) as running:
        wait_for_shutdown(running.service, ready=lambda: err.print(
            f"keyguard serving on {running.url} ({len(collectors)} checks every {settings.checks.interval_s:g}s)"))


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)  # its plugin set-up is not news to an operator
    install_log_redaction()
    command = typer.main.get_command(app)
    try:
        command.main(prog_name="keyguard", standalone_mode=True)
    except KeyguardError as exc:
        err.print(f"[bold red]error:[/] {escape(redact_text(str(exc)))}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except Exception as exc:  # bad input ends in one line and exit 2, never a traceback that may quote it
        import os

        from keyguard.loading import bad_input

        if os.environ.get("KEYGUARD_DEBUG"):
            raise
        message, code = bad_input(exc)
        err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
        sys.exit(code)


if __name__ == "__main__":
    main()
