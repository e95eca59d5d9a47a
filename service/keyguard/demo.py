"""`keyguard demo`: the whole loop on embedded defaults, on loopback, with nothing to configure.

Sandbox exchange with three keys -> execution worker trading on one of them -> the service checking the keys at
the exchange and the worker's live state through the managed OPA -> SQLite -> apprise alerts into a local inbox.
Part-way through, the demo changes a key at the exchange (withdrawals enabled) so the drift alert can be seen."""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from keyguard.errors import KeyguardError

console = Console()

DEMO_KEYS = [
    # (inventory id, purpose, sandbox flags, ip_restrict, where the secret lives)
    ("bot-exec", "execution", {"enableReading": True, "enableSpotAndMarginTrading": True}, True, "env"),
    ("monitor", "monitoring", {"enableReading": True}, True, "env"),
    ("legacy-hedge", "hedging",
     {"enableReading": True, "enableSpotAndMarginTrading": True, "enableWithdrawals": True}, False, "file"),
]


class AlertInbox:
    """Where the demo's apprise route (json://) delivers; prints each alert as an on-call person sees it."""

    def __init__(self) -> None:
        inbox = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                inbox.show(body)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.count = 0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, name="demo-alert-inbox", daemon=True).start()

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.server.server_address[1]}/alerts"

    def show(self, alert: dict[str, Any]) -> None:
        self.count += 1
        colour = "green" if "RESOLVED" in alert.get("title", "") else "bold red"
        console.print(f"[{colour}]ALERT[/] {escape(alert.get('title', ''))}", soft_wrap=True)
        for line in str(alert.get("message", "")).splitlines():
            if line.strip():
                console.print(f"      {escape(line)}", soft_wrap=True)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _write_inventory(state: Path, sandbox_url: str, created: dict[str, dict[str, Any]]) -> Path:
    keys = []
    for key_id, purpose, _flags, restricted, storage in DEMO_KEYS:
        creds = created[key_id]
        prefix = f"KEYGUARD_DEMO_{key_id.upper().replace('-', '_')}"
        if storage == "env":
            os.environ[f"{prefix}_API_KEY"], os.environ[f"{prefix}_SECRET"] = creds["api_key"], creds["secret"]
            credentials: dict[str, Any] = {"api_key_env": f"{prefix}_API_KEY", "secret_env": f"{prefix}_SECRET"}
            storage_facts = {"backend": "env", "kms": "none", "host_locked": True}
        else:
            secret_file = state / "secrets" / f"{key_id}.json"
            secret_file.parent.mkdir(mode=0o700, exist_ok=True)
            secret_file.write_text(json.dumps({"api_key": creds["api_key"], "secret": creds["secret"]}))
            secret_file.chmod(0o600)
            credentials = {"file": str(secret_file)}
            storage_facts = {"backend": "file", "kms": "none", "host_locked": False}
        keys.append({
            "id": key_id, "exchange": "binance", "purpose": purpose, "services": [f"{key_id}-service"],
            "credentials": credentials, "storage": storage_facts,
            "allowed_ips": [{"value": "127.0.0.1", "reason": "demo execution host"}] if restricted else [],
            **({"workers": ["worker.yaml"]} if key_id == "bot-exec" else {}),
        })
    inventory = {
        "hosts": [{"name": "demo-host", "ip": "127.0.0.1", "authorized": True}],
        "exchange_urls": {"binance": sandbox_url},
        "probe": {"source_ip": "127.0.0.1", "from": "127.0.0.2"},
        "keys": keys,
    }
    path = state / "inventory.json"
    path.write_text(json.dumps(inventory, indent=2))
    return path


def demo(
    duration: Annotated[float | None, typer.Option(help="Stop after this many seconds (default: Ctrl-C).")] = None,
    interval: Annotated[float, typer.Option(help="Seconds between check cycles.")] = 10.0,
    port: Annotated[int, typer.Option(help="API port on 127.0.0.1 (0 picks a free one).")] = 8700,
    drift_after: Annotated[float, typer.Option(help="Seconds until the demo enables withdrawals on bot-exec.")] = 25.0,
    state_dir: Annotated[Path, typer.Option(help="Where the demo keeps its SQLite store and state.")] = Path(
        ".keyguard/demo"),
) -> None:
    """Start the service, sandbox exchange, execution worker and managed OPA on embedded defaults."""
    # Imported here, not at the top: `keyguard --help` and every other command must not pay for ccxt and uvicorn.
    from keyguard.alerts.notifier import AlertRoute
    from keyguard.checks.scheduler import Collector
    from keyguard.config import load_settings
    from keyguard.runtime import api_token_from, keys_collector, run_service
    from keyguard.sandbox.server import run_sandbox
    from keyguard.worker.demo_strategy import run_demo_worker

    for noisy in ("httpx", "apprise", "keyguard.policy.engine", "keyguard.exchanges"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    state_dir = state_dir.resolve()
    shutil.rmtree(state_dir, ignore_errors=True)
    state_dir.mkdir(parents=True)
    inbox = AlertInbox()
    latest_state: dict[str, Any] = {}
    try:
        with run_sandbox() as sandbox:
            created = {
                key_id: sandbox.create_key(label=key_id, flags=flags, ip_restrict=restricted,
                                           ips=["127.0.0.1"] if restricted else [])
                for key_id, _purpose, flags, restricted, _storage in DEMO_KEYS
            }
            inventory = _write_inventory(state_dir, sandbox.url, created)
            exec_key = created["bot-exec"]
            # The worker trading with bot-exec, so containing that key engages its kill switch.
            (state_dir / "worker.yaml").write_text(json.dumps({
                "worker": "demo-worker", "state_dir": str(state_dir / "worker"),
                "exchange": {"base_url": sandbox.url}}))
            _, stop_worker = run_demo_worker(
                sandbox.url, exec_key["api_key"], exec_key["secret"], state_dir=state_dir / "worker",
                on_state=lambda s: latest_state.update(doc=s.to_policy_input()),
            )

            def worker_state() -> dict[str, Any]:
                if "doc" not in latest_state:
                    raise KeyguardError("the execution worker has not published its live state yet")
                return dict(latest_state["doc"])

            settings = load_settings(
                store={"url": f"sqlite:///{state_dir / 'keyguard.db'}"},
                service={"host": "127.0.0.1", "port": port},
                checks={"interval_s": interval},
                alerts={"routes": [AlertRoute(url=inbox.url).model_dump()]},
                inventory=str(inventory),
            )
            collectors = [keys_collector(inventory, settings.checks, settings.store.url),
                          Collector(scope="execution", collect=worker_state)]
            time.sleep(min(3.0, interval))  # let the worker publish a first state before the first check
            token = api_token_from(settings, generate=True)
            with run_service(settings, collectors, token, run_first_check=False) as running:
                _banner(running.url, token, sandbox.url, interval, drift_after)
                _run_until(duration, drift_after, sandbox, created["bot-exec"]["api_key"])
            stop_worker.set()
    except KeyboardInterrupt:
        pass
    finally:
        inbox.close()
    console.print(f"demo stopped; {inbox.count} alert(s) delivered. State kept in {state_dir}")


def _banner(url: str, token: str, sandbox_url: str, interval: float, drift_after: float) -> None:
    console.rule("[bold]Keyguard demo")
    console.print(f"service   {url}   (token: {token})")
    console.print(f"sandbox   {sandbox_url}   (Binance-compatible exchange)")
    console.print(f"checks    every {interval:g}s: keys at the exchange, the execution worker's live state")
    console.print(f"try       curl -s -H 'Authorization: Bearer {token}' {url}/api/findings | python3 -m json.tool",
                  soft_wrap=True)
    console.print(f"drift     in {drift_after:g}s the demo enables withdrawals on bot-exec at the exchange; Keyguard "
                  "pages it and contains the key (kill switch, open orders cancelled)")
    console.rule()


def _run_until(duration: float | None, drift_after: float, sandbox: Any, exec_api_key: str) -> None:
    started = time.monotonic()
    drifted = False
    while duration is None or time.monotonic() - started < duration:
        if not drifted and time.monotonic() - started >= drift_after:
            with sandbox.admin() as admin:
                admin.patch(f"/keys/{exec_api_key}", json={"flags": {"enableWithdrawals": True}}).raise_for_status()
            console.print("[yellow]demo:[/] someone enabled withdrawals on bot-exec at the exchange")
            drifted = True
        time.sleep(0.2)
