"""`keyguard demo`: the whole loop on embedded defaults, on loopback, with nothing to configure.

Sandbox exchange with three keys -> the gateway holding one of them, two unmodified ccxt bots trading through it
with gateway keys -> the service checking the keys at the exchange and the gateway's live state through the managed
OPA -> SQLite -> apprise alerts into a local inbox. Part-way through, one bot turns runaway (its caps, then its kill
switch hold it), and later the demo changes a key at the exchange (withdrawals enabled) so the drift alert and the
containment can be seen."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

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
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer  # only the demo pays for it

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
            **({"workers": ["gateway.yaml"]} if key_id == "bot-exec" else {}),
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


class DemoBot:
    """An unmodified ccxt Binance client in a thread: it knows only the gateway's URL and its gateway key. `steady`
    trades small market orders; `runner` does the same until `runaway_after`, then fires oversized orders as fast as
    it can, the way a bot with a units bug does."""

    def __init__(self, name: str, gateway_url: str, api_key: str, secret: str, stop: threading.Event,
                 runaway_after: float | None = None) -> None:
        self.name, self.stop, self.runaway_after = name, stop, runaway_after
        self.gateway_url, self.api_key, self.secret = gateway_url, api_key, secret
        self.thread = threading.Thread(target=self._run, name=f"demo-bot-{name}", daemon=True)
        self.last_code: str | None = None

    def _run(self) -> None:
        import ccxt

        from keyguard.sandbox.server import sandbox_urls

        client = ccxt.binance({"apiKey": self.api_key, "secret": self.secret, "urls": sandbox_urls(self.gateway_url),
                               "timeout": 15000})
        started, side, runaway = time.monotonic(), "buy", False
        while not self.stop.is_set():
            if self.runaway_after is not None and not runaway and time.monotonic() - started >= self.runaway_after:
                runaway = True
                console.print(f"[yellow]demo:[/] bot {self.name} turns runaway: 0.5 BTC orders, five a second")
            try:
                if not client.markets:
                    client.load_markets()
                order = client.create_order("BTC/USDT", "market", side, 0.5 if runaway else 0.001)
                if not runaway:
                    console.print(f"bot {self.name:<7} {side:<4} 0.001 BTC  {order['status']}")
                side = "sell" if side == "buy" else "buy"
            except ccxt.BaseError as exc:
                code = str(exc).split("KEYGUARD_", 1)[1].split(":", 1)[0] if "KEYGUARD_" in str(exc) else None
                if code != self.last_code:
                    console.print(f"bot {self.name:<7} refused by the gateway: KEYGUARD_{code or escape(str(exc))}",
                                  soft_wrap=True)
                self.last_code = code
            self.stop.wait(0.2 if runaway else 2.0)


def _write_gateway_config(state: Path, sandbox_url: str) -> Path:
    """The demo gateway: it holds bot-exec's key (from the environment), two bots behind it, runner capped tight."""
    path = state / "gateway.yaml"
    path.write_text(json.dumps({
        "gateway": "demo-gateway", "listen": {"port": 0}, "state_dir": str(state / "gateway"),
        "exchange": {"base_url": sandbox_url, "api_key_env": "KEYGUARD_DEMO_BOT_EXEC_API_KEY",
                     "api_secret_env": "KEYGUARD_DEMO_BOT_EXEC_SECRET"},
        "limiter": {"backend": "memory"},
        "account": {"max_position": {"BTC": 0.5}},
        "bots": {"steady": {"max_order_notional": 500}, "runner": {"max_order_notional": 500,
                                                                   "max_refusals_per_minute": 5}},
        "housekeeping_interval_s": 1.0,
    }, indent=2))
    return path


@dataclass
class DemoStack:
    """The demo's running parts, for `keyguard demo` and for the browser tests that drive the same loop."""

    running: Any  # RunningService
    sandbox: Any  # SandboxHandle
    gateway_url: str
    gateway_config: Any  # GatewayConfig
    bots: list[DemoBot]
    created: dict[str, dict[str, Any]]
    state_dir: Path
    stop_bots: threading.Event

    def start_bots(self) -> None:
        for bot in self.bots:
            bot.thread.start()

    def drift(self) -> None:
        """Someone enables withdrawals on bot-exec at the exchange: the drift the demo pages and contains."""
        with self.sandbox.admin() as admin:
            admin.patch(f"/keys/{self.created['bot-exec']['api_key']}",
                        json={"flags": {"enableWithdrawals": True}}).raise_for_status()

    def login_link(self) -> str:
        """The dashboard URL with a one-time login code (not the API token) after `#`: it never reaches a server
        log, and it opens one operator session within ten minutes."""
        from keyguard.api.access import ENV_TOKEN_NAME, Principal, Role
        from keyguard.web.sessions import create_login_link

        code = create_login_link(self.running.store, Principal(ENV_TOKEN_NAME, Role.operator),
                                 self.running.service.clock())
        return f"{self.running.url}/ui/login#link={code}"


@contextlib.contextmanager
def demo_stack(state_dir: Path, *, interval: float, port: int, runaway_after: float | None,
               alert_url: str) -> Iterator[DemoStack]:
    """Sandbox with the demo's keys, the gateway with bots steady and runner (not started), and the service
    checking keys and the gateway's live state; everything stops when the block exits."""
    # Imported here, not at the top: `keyguard --help` and every other command must not pay for ccxt and uvicorn.
    from keyguard.alerts.notifier import AlertRoute
    from keyguard.config import load_settings
    from keyguard.gateway.bot_keys import BotKeyStore
    from keyguard.gateway.config import load_gateway_config
    from keyguard.gateway.server import run_gateway
    from keyguard.runtime import api_token_from, keys_collector, run_service, worker_state_collector
    from keyguard.sandbox.server import run_sandbox

    state_dir = state_dir.resolve()
    shutil.rmtree(state_dir, ignore_errors=True)
    state_dir.mkdir(parents=True)
    stop_bots = threading.Event()
    with run_sandbox() as sandbox:
        created = {
            # legacy-hedge is the wide-open withdraw key the demo exists to show being found: Binance (and so
            # the sandbox) refuses such a key unless it is asked for explicitly.
            key_id: sandbox.create_key(label=key_id, flags=flags, ip_restrict=restricted,
                                       ips=["127.0.0.1"] if restricted else [],
                                       unsafe_unrestricted_withdraw=not restricted)
            for key_id, _purpose, flags, restricted, _storage in DEMO_KEYS
        }
        inventory = _write_inventory(state_dir, sandbox.url, created)
        gateway_config = load_gateway_config(_write_gateway_config(state_dir, sandbox.url))
        with run_gateway(gateway_config) as gateway:
            keys = BotKeyStore(gateway_config.keys_path)
            bots = [DemoBot(name, gateway.url, key.api_key, key.secret, stop_bots, after)
                    for name, after in (("steady", None), ("runner", runaway_after))
                    for key in [keys.create(name)]]
            settings = load_settings(
                store={"url": f"sqlite:///{state_dir / 'keyguard.db'}"},
                service={"host": "127.0.0.1", "port": port},
                checks={"interval_s": interval},
                alerts={"routes": [AlertRoute(url=alert_url).model_dump()]},
                inventory=str(inventory),
            )
            collectors = [keys_collector(inventory, settings.checks, settings.store.url),
                          worker_state_collector(gateway_config.live_state_path)]
            time.sleep(min(2.0, interval))  # let the gateway publish a first state before the first check
            token = api_token_from(settings, generate=True)
            try:
                with run_service(settings, collectors, token, run_first_check=False) as running:
                    yield DemoStack(running, sandbox, gateway.url, gateway_config, bots, created, state_dir,
                                    stop_bots)
            finally:
                stop_bots.set()
                for bot in bots:
                    if bot.thread.is_alive():
                        bot.thread.join(timeout=20)


def demo(
    duration: Annotated[float | None, typer.Option(help="Stop after this many seconds (default: Ctrl-C).")] = None,
    interval: Annotated[float, typer.Option(help="Seconds between check cycles.")] = 10.0,
    port: Annotated[int, typer.Option(help="API port on 127.0.0.1 (0 picks a free one).")] = 8700,
    runaway_after: Annotated[float, typer.Option(help="Seconds until the demo's runner bot turns runaway.")] = 12.0,
    drift_after: Annotated[float, typer.Option(help="Seconds until the demo enables withdrawals on bot-exec.")] = 35.0,
    state_dir: Annotated[Path, typer.Option(help="Where the demo keeps its SQLite store and state.")] = Path(
        ".keyguard/demo"),
) -> None:
    """Start the service, sandbox exchange, gateway with two unmodified bots, and managed OPA on embedded defaults."""
    for noisy in ("httpx", "apprise", "keyguard.policy.engine", "keyguard.exchanges", "keyguard.gateway"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    inbox = AlertInbox()
    try:
        with demo_stack(state_dir, interval=interval, port=port, runaway_after=runaway_after,
                        alert_url=inbox.url) as stack:
            running = stack.running
            _banner(running.url, running.api_token, stack.login_link(), stack.sandbox.url, stack.gateway_url,
                    interval, runaway_after, drift_after)
            stack.start_bots()
            _run_until(duration, drift_after, stack)
    except KeyboardInterrupt:
        pass
    finally:
        inbox.close()
    console.print(f"demo stopped; {inbox.count} alert(s) delivered. State kept in {state_dir.resolve()}")


def _banner(url: str, token: str, login_link: str, sandbox_url: str, gateway_url: str, interval: float,
            runaway_after: float, drift_after: float) -> None:
    console.rule("[bold]Keyguard demo")
    console.print(f"service   {url}   (token: {token})")
    console.print(f"dashboard {login_link}", soft_wrap=True)
    console.print("          (a one-time login link, good for ten minutes; later, log in at "
                  f"{url}/ui/login with the token)", soft_wrap=True)
    console.print(f"sandbox   {sandbox_url}   (Binance-compatible exchange)")
    console.print(f"gateway   {gateway_url}   (holds bot-exec's key; bots steady and runner hold gateway keys)")
    console.print(f"checks    every {interval:g}s: keys at the exchange, the gateway's live state")
    console.print(f"try       curl -s -H 'Authorization: Bearer {token}' {url}/api/findings | python3 -m json.tool",
                  soft_wrap=True)
    console.print(f"runaway   in {runaway_after:g}s bot runner turns runaway: its caps refuse it, then its kill "
                  "switch holds it (KG-EXE-208 says why); steady trades on")
    console.print(f"drift     in {drift_after:g}s the demo enables withdrawals on bot-exec at the exchange; Keyguard "
                  "pages it and contains the key (the gateway's kill switch, open orders cancelled)")
    console.rule()


def _run_until(duration: float | None, drift_after: float, stack: DemoStack) -> None:
    started = time.monotonic()
    drifted = False
    while duration is None or time.monotonic() - started < duration:
        if not drifted and time.monotonic() - started >= drift_after:
            stack.drift()
            console.print("[yellow]demo:[/] someone enabled withdrawals on bot-exec at the exchange")
            drifted = True
        time.sleep(0.2)
