"""`keyguard gateway`: serve the Binance-compatible gateway, issue bot keys, hold or release bots."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from keyguard.errors import ConfigError
from keyguard.gateway.config import BOT_NAME, load_gateway_config

app = typer.Typer(help="The gateway unmodified bots trade through: envelope, shared budget, idempotent orders.",
                  no_args_is_help=True)
keys_app = typer.Typer(help="Per-bot gateway keys (bots never hold the exchange key).", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
console = Console()

ConfigOpt = typer.Option(..., "--config", help="Gateway settings (YAML), e.g. examples/gateway.yaml.")


@app.command("serve")
def serve(config: Path = ConfigOpt) -> None:
    """Serve the gateway until SIGINT or SIGTERM (the exchange key comes from exchange.* in the settings)."""
    from keyguard.gateway.server import run_gateway
    from keyguard.runtime import wait_for_shutdown

    cfg = load_gateway_config(config)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    with run_gateway(cfg) as handle:
        def announce() -> None:
            console.print(f"gateway {cfg.gateway} serving on {handle.url} (exchange {cfg.exchange.base_url})",
                          soft_wrap=True)

        wait_for_shutdown(ready=announce)


def _bot(name: str) -> str:
    import re

    if not re.match(BOT_NAME, name):
        raise ConfigError(f"--bot {name!r}: a bot name matches {BOT_NAME}")
    return name


@keys_app.command("create")
def keys_create(config: Path = ConfigOpt, bot: str = typer.Option(..., "--bot", help="The bot's name."),
                as_json: bool = typer.Option(False, "--json")) -> None:
    """Issue a gateway key and secret for a bot; shown once. Give the bot these and the gateway's URL."""
    from keyguard.gateway.bot_keys import BotKeyStore

    cfg = load_gateway_config(config)
    key = BotKeyStore(cfg.keys_path).create(_bot(bot))
    if as_json:
        print(json.dumps({"bot": key.bot, "api_key": key.api_key, "secret": key.secret}))
        return
    console.print(f"bot       {key.bot}\napi key   {key.api_key}\nsecret    {key.secret}", soft_wrap=True)
    console.print("[dim]Shown once. The bot signs with these exactly as it would for Binance; set its base URL "
                  f"to the gateway (http://{cfg.listen.host}:{cfg.listen.port}).[/]")


@keys_app.command("list")
def keys_list(config: Path = ConfigOpt, as_json: bool = typer.Option(False, "--json")) -> None:
    """Bot keys (ids only, never secrets)."""
    from keyguard.gateway.bot_keys import BotKeyStore

    keys = BotKeyStore(load_gateway_config(config).keys_path).keys()
    rows = [{"bot": k.bot, "api_key": f"{k.api_key[:8]}...", "created_at": k.created_at, "revoked_at": k.revoked_at}
            for k in keys]
    if as_json:
        print(json.dumps(rows))
        return
    table = Table("bot", "key", "created", "revoked")
    for r in rows:
        table.add_row(r["bot"], r["api_key"], r["created_at"], r["revoked_at"] or "")
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(config: Path = ConfigOpt, bot: str = typer.Option(..., "--bot")) -> None:
    """Revoke every key of a bot: its next request is refused (-2015)."""
    from keyguard.gateway.bot_keys import BotKeyStore

    count = BotKeyStore(load_gateway_config(config).keys_path).revoke(_bot(bot))
    if count == 0:
        raise ConfigError(f"bot {bot} has no active gateway key")
    console.print(f"revoked {count} key(s) of bot {bot}")


@app.command("kill-switch")
def kill_switch(
    action: str = typer.Argument(..., help="engage or release"),
    config: Path = ConfigOpt,
    bot: str | None = typer.Option(None, "--bot", help="Only this bot (default: the whole account)."),
    reason: str = typer.Option(..., "--reason", help="Why, for the record."),
) -> None:
    """Engage or release the account's kill switch, or one bot's. Engaging cancels the open orders it covers."""
    from keyguard.worker.killswitch import KillSwitch

    cfg = load_gateway_config(config)
    if action not in ("engage", "release"):
        raise ConfigError(f"kill-switch {action!r}: say engage or release")
    path = cfg.bot_kill_switch_path(_bot(bot)) if bot else cfg.kill_switch_path
    switch = KillSwitch(path)
    state = switch.engage(reason, by="cli") if action == "engage" else switch.release(reason, by="cli")
    console.print(f"kill switch of {bot or 'the account'} {'ENGAGED' if state.engaged else 'released'} ({path})")


@app.command("trading-state")
def trading_state(
    state: str = typer.Argument(..., help="ACTIVE, REDUCING (only orders that shrink a position) or HALTED"),
    config: Path = ConfigOpt,
    bot: str | None = typer.Option(None, "--bot", help="Only this bot (default: the whole account)."),
) -> None:
    """Set the trading state the gateway applies to the account or to one bot."""
    from keyguard.gateway.envelope import TradingStates
    from keyguard.worker.risk import TradingState

    cfg = load_gateway_config(config)
    try:
        value = TradingState(state.upper())
    except ValueError:
        raise ConfigError(f"trading state {state!r}: say ACTIVE, REDUCING or HALTED") from None
    TradingStates(cfg.state_dir / "trading_state.json").set(value, _bot(bot) if bot else None)
    console.print(f"trading state of {bot or 'the account'}: {value.value}")


@app.command("status")
def status(config: Path = ConfigOpt, as_json: bool = typer.Option(False, "--json")) -> None:
    """The gateway's last published live document: envelope, bots held and why, budget used."""
    cfg = load_gateway_config(config)
    try:
        doc = json.loads(cfg.live_state_path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{cfg.live_state_path} does not exist: is the gateway running?") from None
    except ValueError:
        raise ConfigError(f"{cfg.live_state_path} is not readable JSON") from None
    if as_json:
        print(json.dumps(doc))
        return
    st = doc["state"]
    console.print(f"gateway {doc['worker']}  heartbeat {st['heartbeat_at']}  kill switch "
                  f"{'ENGAGED' if st['kill_switch_engaged'] else 'off'}  trading {st['trading_state']}  "
                  f"weight {st['used_weight_1m']}/{st['weight_limit_1m']}")
    table = Table("bot", "state", "orders/min", "refusals", "held because")
    for name, bot in (st.get("bots") or {}).items():
        table.add_row(name, "HELD" if bot["kill_switch_engaged"] else bot["trading_state"],
                      str(bot["orders_last_minute"]), json.dumps(bot["refusals"]), bot["held_reason"] or "")
    console.print(table)


def rotate_key(
    key: str = typer.Argument(..., help="The inventory id of the exchange key to replace."),
    inventory: Path = typer.Option(..., "--inventory", "-i", help="Keys inventory (YAML or JSON); it is updated."),
    new_secret_from: str = typer.Option(..., "--new-secret-from", help="Where the new key lives: file:PATH (JSON "
                                        "api_key and secret, mode 0600), aws:SECRET_ID or env:KEY_VAR,SECRET_VAR."),
    gateway: Path | None = typer.Option(None, "--gateway", help="The gateway config (default: the gateway among "
                                        "the key's keys[].workers)."),
    new_id: str | None = typer.Option(None, "--new-id", help="Inventory id of the new key (default KEY-rYYYYMMDD)."),
    aws_region: str | None = typer.Option(None, "--aws-region", help="Region of an aws: source."),
) -> None:
    """Replace the exchange key behind a running gateway without touching a bot: the new key is checked at the
    exchange and by the key rules first, swapped in between requests, and the old key is marked superseded (delete
    it at the exchange within the grace period, or KG-ROT-104 fires)."""
    from keyguard.gateway.rotation_flow import rotate_inventory_key

    summary = rotate_inventory_key(key, inventory, new_secret_from, gateway, new_id, aws_region)
    console.print(f"rotated {summary['old_id']} -> {summary['new_id']}: gateway {summary['gateway']} trades on the "
                  f"new key ({summary['open_orders_settled']} open orders settled with it)", soft_wrap=True)
    console.print(f"[bold]Delete the old key {summary['old_id']} at the exchange before {summary['delete_by']}[/]"
                  " (KG-ROT-104 fires after that while it is still alive).", soft_wrap=True)
