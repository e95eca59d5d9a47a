"""`keyguard sandbox serve`: run the emulated exchange in the foreground."""

from __future__ import annotations

import time

import typer
from rich.console import Console

from keyguard.sandbox.config import SandboxConfig
from keyguard.sandbox.server import run_sandbox

app = typer.Typer(help="The sandbox exchange (Binance-compatible, with OKX, Bybit and KuCoin key introspection).",
                  no_args_is_help=True)
out = Console()


@app.callback()
def sandbox() -> None:
    """The sandbox exchange (Binance-compatible, with OKX, Bybit and KuCoin key introspection)."""


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Address to bind; keep it on loopback."),
    port: int = typer.Option(8765, help="Port to bind (0 = any free port)."),
    weight_limit: int = typer.Option(6000, help="REQUEST_WEIGHT per IP per window."),
    weight_window: int = typer.Option(60, help="REQUEST_WEIGHT window in seconds."),
    ban_base: float = typer.Option(120.0, help="First 418 ban in seconds; each further ban doubles."),
    admin_token: str | None = typer.Option(None, envvar="KEYGUARD_SANDBOX_ADMIN_TOKEN",
                                           help="Admin API bearer token (default: generated and printed)."),
) -> None:
    """Serve the sandbox until interrupted."""
    config = SandboxConfig(weight_limit=weight_limit, weight_window_s=weight_window, ban_base_s=ban_base,
                           admin_token=admin_token)
    with run_sandbox(config, host=host, port=port) as handle:
        out.print(f"sandbox exchange on [bold]{handle.url}[/] (OKX under /okx, Bybit under /bybit)")
        if admin_token is None:
            # A generated token is printed once so the operator can use the admin API; a given one is not echoed.
            out.print(f"admin API {handle.admin_url}  token: {handle.admin_token}")
        else:
            out.print(f"admin API {handle.admin_url}  token: from KEYGUARD_SANDBOX_ADMIN_TOKEN")
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            out.print("stopping")
