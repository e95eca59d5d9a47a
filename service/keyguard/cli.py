"""The `keyguard` command. Each area owns its own Typer sub-app; this module only composes them."""

from __future__ import annotations

import importlib
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from keyguard.errors import KeyguardError
from keyguard.redact import install_log_redaction, redact_text

app = typer.Typer(
    name="keyguard",
    help="Keep exchange API keys and trading bots inside a declared safety envelope.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

# (sub-command, module exposing `app`): each area registers itself here and nowhere else.
SUBCOMMANDS = [
    ("policy", "keyguard.policy.cli"),
    ("keys", "keyguard.exchanges.cli"),
    ("sandbox", "keyguard.sandbox.cli"),
    ("worker", "keyguard.worker.cli"),
    ("infra", "keyguard.infra.cli"),
]

for _name, _module in SUBCOMMANDS:
    try:
        _sub = importlib.import_module(_module).app
    except ModuleNotFoundError as exc:  # an area not built yet must not break the others
        if exc.name and exc.name.startswith("keyguard"):
            continue
        raise
    app.add_typer(_sub, name=_name)

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
        err.print(f"keyguard serving on {running.url} ({len(collectors)} checks every {settings.checks.interval_s:g}s)")
        wait_for_shutdown()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    install_log_redaction()
    command = typer.main.get_command(app)
    try:
        command.main(prog_name="keyguard", standalone_mode=True)
    except KeyguardError as exc:
        err.print(f"[bold red]error:[/] {escape(redact_text(str(exc)))}", highlight=False)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
