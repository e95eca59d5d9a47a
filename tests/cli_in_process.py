"""The `keyguard` command run in the test's own process, as its entry point runs it (no interpreter start-up)."""

from __future__ import annotations

import contextlib
import io

import typer

from keyguard import cli
from keyguard.errors import KeyguardError


def run_cli(args: list[str]) -> tuple[int, str, str]:
    """(exit code, stdout, stderr). An exception that is not a KeyguardError escapes, as it would reach the user as
    a traceback."""
    command = typer.main.get_command(cli.app)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            command.main(args=args, prog_name="keyguard", standalone_mode=True)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except KeyguardError as exc:
            err.write(str(exc))
            code = exc.exit_code
    return code, out.getvalue(), err.getvalue()
