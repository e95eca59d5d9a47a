"""`keyguard worker`: run the execution worker, flip its kill switch, show its live state."""

from __future__ import annotations

import json
import logging
import threading
from contextlib import ExitStack
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from keyguard.worker.config import load_worker_config
from keyguard.worker.demo_strategy import run_strategy
from keyguard.worker.killswitch import KillSwitch
from keyguard.worker.orders import OrderResult
from keyguard.worker.runtime import build_worker

app = typer.Typer(help="The execution worker: limiter, idempotent orders, risk caps, kill switch.",
                  no_args_is_help=True)
console = Console()


@app.command("run")
def run(
    config: Path = typer.Option(..., "--config", help="Worker settings (YAML), e.g. examples/worker.yaml."),
    as_json: bool = typer.Option(False, "--json", help="Print the final live state as the policy input JSON."),
) -> None:
    """Run the worker with the demo strategy (against an in-process sandbox when exchange.base_url is unset)."""
    cfg = load_worker_config(config)
    # One INFO line per request drowns the order log; the worker logs what matters itself.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    with ExitStack() as stack:
        if cfg.exchange.base_url is None:
            from keyguard.sandbox import run_sandbox

            sandbox = stack.enter_context(run_sandbox())
            created = sandbox.create_key(label=cfg.worker, flags={"enableReading": True,
                                                                   "enableSpotAndMarginTrading": True})
            base_url, api_key, api_secret = sandbox.url, created["api_key"], created["secret"]
            console.print(f"sandbox exchange on {base_url}")
        else:
            base_url = cfg.exchange.base_url
            api_key, api_secret = cfg.exchange.credentials()
        worker = build_worker(cfg, api_key, api_secret, base_url)
        stack.callback(worker.client.close)
        def on_order(result: OrderResult) -> None:
            if not as_json:
                console.print(f"{result.status.value:<10} {result.client_order_id or '-':<32} "
                              f"qty {result.quantity:g} filled {result.executed_qty:g} {result.refusal_code or ''}")

        stop = threading.Event()
        try:
            run_strategy(worker, stop, on_order=on_order)
        except KeyboardInterrupt:
            stop.set()
        state = worker.live_state().to_policy_input()
        if as_json:
            console.print_json(json.dumps(state))
        else:
            st = state["state"]
            console.print(f"positions {st['positions']} daily pnl {st['daily_pnl']:.2f} trading state "
                          f"{st['trading_state']} kill switch {'ENGAGED' if st['kill_switch_engaged'] else 'off'} "
                          f"weight {st['used_weight_1m']:.0f}/{st['weight_limit_1m']}")


def _kill_switch(config: Path) -> KillSwitch:
    """The switch every worker with this config's state_dir obeys."""
    return KillSwitch(load_worker_config(config).kill_switch_path)


@app.command("kill")
def kill(
    config: Path = typer.Option(..., "--config", help="Worker settings (YAML); the switch lives in its state_dir."),
    reason: str = typer.Option(..., "--reason", help="Why, for the record."),
) -> None:
    """Engage the kill switch: every worker using this state_dir stops sending and cancels its open orders."""
    state = _kill_switch(config).engage(reason, by="cli")
    console.print(f"kill switch ENGAGED at {state.changed_at}: {reason}")


@app.command("release")
def release(
    config: Path = typer.Option(..., "--config", help="Worker settings (YAML)."),
    reason: str = typer.Option(..., "--reason", help="Why it is safe to trade again."),
) -> None:
    """Release the kill switch."""
    state = _kill_switch(config).release(reason, by="cli")
    console.print(f"kill switch released at {state.changed_at}: {reason}")


@app.command("status")
def status(
    config: Path = typer.Option(..., "--config", help="Worker settings (YAML)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Kill switch state and the journal's open and unknown orders."""
    from keyguard.worker.journal import OPEN_STATUSES, OrderJournal, journal_engine

    cfg = load_worker_config(config)
    switch = KillSwitch(cfg.kill_switch_path).state
    rows = OrderJournal(journal_engine(cfg.journal())).orders(OPEN_STATUSES)
    if as_json:
        console.print_json(json.dumps({"kill_switch": switch.__dict__, "open_orders": [
            {"client_order_id": r.client_order_id, "symbol": r.symbol, "side": r.side, "status": r.status,
             "executed_qty": r.executed_qty} for r in rows]}))
        return
    console.print(f"kill switch: {'ENGAGED' if switch.engaged else 'off'} {switch.reason}")
    table = Table("client order id", "symbol", "side", "status", "filled")
    for r in rows:
        table.add_row(r.client_order_id, r.symbol, r.side, r.status, f"{r.executed_qty:g}")
    console.print(table)
