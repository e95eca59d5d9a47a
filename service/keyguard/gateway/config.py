"""The gateway's settings (`keyguard gateway serve --config FILE`): where it listens, the exchange account it fronts,
the envelope for the account and for each bot, and the execution behaviour its live document reports."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from keyguard.errors import ConfigError
from keyguard.loading import load_mapping, load_model
from keyguard.worker.config import (
    DataRetrySettings,
    ExchangeSettings,
    KillSwitchSettings,
    LimiterSettings,
    OrderRetrySettings,
    ReconnectSettings,
    RiskSettings,
    WorkerConfig,
    load_worker_config,
)
from keyguard.worker.risk import RiskLimits, Stage

BOT_NAME = r"^[a-z0-9][a-z0-9_-]{0,31}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ListenSettings(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8765, ge=0, le=65535)
    # A Unix socket path instead of a TCP port (only processes that can open the file reach the gateway).
    unix_socket: Path | None = None
    # Connections open at once (each has a thread of its own); past it a bot gets 503 with Retry-After.
    max_connections: int = Field(default=256, ge=1, le=4096)
    # A kept-alive connection with no request for this long is closed (the bot's client opens a new one).
    idle_timeout_s: float = Field(default=75.0, gt=0, le=3600)
    # A request must arrive whole this long after its first byte, or it is answered 408 and its connection closed.
    request_timeout_s: float = Field(default=10.0, gt=0, le=600)
    # The fast lane (docs/lane.md): a compiled front that sends new orders on verdicts the gateway prepared.
    # auto: used when its binary is found (else every request is served here, and the live document says so);
    # on: required (the gateway does not start without it); off: never.
    lane: Literal["auto", "on", "off"] = "auto"
    # Its binary; None: $KEYGUARD_LANE (off: none), the checkout's .tools/bin/keyguard-lane, or one on PATH.
    lane_binary: Path | None = None

    @field_validator("host")
    @classmethod
    def _loopback(cls, host: str) -> str:
        if not (host.startswith("127.") or host in ("localhost", "::1")):
            raise ValueError(f"{host} is not a loopback address; the gateway only listens on 127.0.0.0/8 or ::1")
        return host


class BotSettings(_Strict):
    """One bot's own envelope inside the account's: None = only the account's cap applies."""

    max_order_notional: float | None = Field(default=None, gt=0)
    max_orders_per_minute: int | None = Field(default=None, gt=0)
    max_position: dict[str, float] = Field(default_factory=dict)
    daily_loss_limit: float | None = Field(default=None, gt=0)
    # Refusals in one minute after which the bot is held (its own kill switch engaged, its open orders cancelled):
    # a bot that keeps hammering a cap is runaway, not unlucky.
    max_refusals_per_minute: int | None = Field(default=20, gt=0)


class GatewayConfig(_Strict):
    gateway: str = Field(default="gateway-1", pattern=BOT_NAME)
    stage: Stage = Stage.SANDBOX
    listen: ListenSettings = Field(default_factory=ListenSettings)
    state_dir: Path = Path(".keyguard/gateway")
    journal_url: str | None = None  # None = SQLite file in state_dir
    # Bot keys and their secrets (mode 0600); None = <state_dir>/gateway-keys.json.
    keys_file: Path | None = None
    exchange: ExchangeSettings = Field(default_factory=ExchangeSettings)
    limiter: LimiterSettings = Field(default_factory=LimiterSettings)
    account: RiskSettings = Field(default_factory=RiskSettings)
    bots: dict[str, BotSettings] = Field(default_factory=dict)
    # Public market data (time, exchangeInfo, depth, tickers) is served from a cache this young, so many bots
    # polling the same ticker cost the IP's budget once.
    market_data_ttl_s: float = Field(default=1.0, ge=0, le=60)
    housekeeping_interval_s: float = Field(default=5.0, gt=0)
    # A closed order stays in memory this long, then only in the journal (read back when a bot names it): memory
    # holds the open and recent orders, not every order the gateway ever placed.
    keep_closed_orders_s: float = Field(default=3600.0, ge=0)
    # What the books count as cash: notionals, positions' value and today's PnL are in these (taken at par). A pair
    # quoted in anything else (ETHBTC's cash is BTC) is refused: what it moves could not be valued, and the BTC it
    # brings in would grow a position no cap sees.
    quote_assets: list[str] = Field(default_factory=lambda: ["USDT"], min_length=1)
    order_retry: OrderRetrySettings = Field(default_factory=OrderRetrySettings)
    data_retry: DataRetrySettings = Field(default_factory=DataRetrySettings)
    reconnect: ReconnectSettings = Field(default_factory=ReconnectSettings)
    kill_switch: KillSwitchSettings = Field(default_factory=KillSwitchSettings)

    @field_validator("bots")
    @classmethod
    def _bot_names(cls, bots: dict[str, BotSettings]) -> dict[str, BotSettings]:
        import re

        for name in bots:
            if not re.match(BOT_NAME, name):
                raise ValueError(f"bot name {name!r} must match {BOT_NAME}")
        return bots

    @field_validator("quote_assets")
    @classmethod
    def _asset_names(cls, assets: list[str]) -> list[str]:
        """Exchanges name assets in capitals: `usdt` in a settings file means USDT, not a refusal of every pair."""
        names = [asset.strip().upper() for asset in assets]
        if not all(names):
            raise ValueError("an empty asset name")
        return names

    def account_limits(self) -> RiskLimits:
        return self.account.limits(self.stage)

    def bot_limits(self, bot: str) -> RiskLimits:
        b = self.bots.get(bot) or BotSettings()
        return RiskLimits(max_order_notional=b.max_order_notional, max_orders_per_minute=b.max_orders_per_minute,
                          max_position=dict(b.max_position), daily_loss_limit=b.daily_loss_limit, stage=self.stage)

    def declared_symbols(self) -> set[str]:
        """None by configuration: bots choose their symbols, and the journal records them."""
        return set()

    @property
    def worker(self) -> str:
        """The name the live document, journals and evidence use for what trades with the key."""
        return self.gateway

    @property
    def kill_switch_path(self) -> Path:
        return self.kill_switch.path or self.state_dir / "killswitch.json"

    def bot_kill_switch_path(self, bot: str) -> Path:
        return self.state_dir / "bots" / f"{bot}.killswitch.json"

    @property
    def keys_path(self) -> Path:
        return self.keys_file or self.state_dir / "gateway-keys.json"

    @property
    def live_state_path(self) -> Path:
        return self.state_dir / "live_state.json"

    def journal(self) -> str:
        return self.journal_url or f"sqlite:///{self.state_dir / 'journal.db'}"


def load_gateway_config(path: str | Path) -> GatewayConfig:
    p = Path(path)
    config = load_model(GatewayConfig, p, "gateway settings")  # the CLI's one loader: errors name file and line
    base = p.parent
    if not config.state_dir.is_absolute():
        config.state_dir = (base / config.state_dir).resolve()
    for holder, name in ((config, "keys_file"), (config.exchange, "credentials_file"), (config.kill_switch, "path"),
                         (config.limiter, "budget_path"), (config.listen, "unix_socket")):
        value = getattr(holder, name)
        if value is not None and not value.is_absolute():
            setattr(holder, name, (base / value).resolve())
    return config


GATEWAY_ONLY_FIELDS = frozenset({"gateway", "bots", "listen", "keys_file", "account", "market_data_ttl_s"})


def load_trading_config(path: str | Path) -> WorkerConfig | GatewayConfig:
    """A config named in an inventory's keys[].workers: a worker's, or a gateway's (it has gateway-only fields).
    Both give the journal, the kill switch path and the name of what trades with the key."""
    p = Path(path)
    try:
        raw = load_mapping(p, "worker or gateway settings").data
    except ConfigError:
        raw = {}  # the worker's loader says what is wrong with it
    if GATEWAY_ONLY_FIELDS & set(raw):
        return load_gateway_config(p)
    return load_worker_config(p)
