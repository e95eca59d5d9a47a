"""The worker's settings, loaded from a YAML file (`keyguard worker run --config FILE`)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator

from keyguard.errors import ConfigError
from keyguard.loading import DatabaseUrl, EnvVarName, HttpUrlText, StrictModel, load_model
from keyguard.policy.bundle import policy_data
from keyguard.redact import register_secret
from keyguard.secrets.aws import AwsSecret
from keyguard.worker.reconnect import ReconnectPolicy
from keyguard.worker.retry import Backoff, RetryPolicy
from keyguard.worker.risk import RiskLimits, Stage


class ExchangeSettings(StrictModel):
    # None = start an in-process sandbox exchange and create a key on it (the demo).
    base_url: HttpUrlText | None = None
    api_key_env: EnvVarName = "KEYGUARD_WORKER_API_KEY"
    api_secret_env: EnvVarName = "KEYGUARD_WORKER_API_SECRET"
    # Secrets Manager {secret_id, region} holding {"api_key": ..., "secret": ...} (the inventory's format), read
    # through the host's instance role when the worker starts; when set, the environment variables are not read.
    aws_secret: AwsSecret | None = None
    # A JSON file {"api_key": ..., "secret": ...} readable only by this user (mode 0600); when set, the
    # environment variables are not read.
    credentials_file: Path | None = None
    source_address: str | None = None
    recv_window_ms: int = Field(default=5000, ge=1, le=60000)
    timeout_s: float = Field(default=5.0, gt=0)

    def credentials(self) -> tuple[str, str]:
        if self.credentials_file is not None:
            return read_credentials_file(self.credentials_file, "exchange.credentials_file")
        if self.aws_secret is not None:
            data = self.aws_secret.read_json()
            key, secret = data.get("api_key"), data.get("secret")
            if not key or not secret:
                raise ConfigError(f"exchange.aws_secret: Secrets Manager secret {self.aws_secret.secret_id} must "
                                  "hold a JSON object with api_key and secret")
            return str(key), str(secret)
        key, secret = os.environ.get(self.api_key_env), os.environ.get(self.api_secret_env)
        if not key or not secret:
            raise ConfigError(f"exchange: set the environment variables {self.api_key_env} and {self.api_secret_env}"
                              " to the worker's API key and secret (they are never read from the config file)")
        return key, secret


def read_credentials_file(path: Path, field: str) -> tuple[str, str]:
    """(api_key, secret) from a JSON credentials file; errors name the file and never quote its content."""
    try:
        if path.stat().st_mode & 0o077:
            raise ConfigError(f"{field}: {path} is readable by other users; chmod 600 it")
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{field}: {path} does not exist") from None
    except (OSError, ValueError, UnicodeDecodeError):
        raise ConfigError(f"{field}: {path} is not a readable JSON file") from None
    key, secret = (data.get("api_key"), data.get("secret")) if isinstance(data, dict) else (None, None)
    if not isinstance(key, str) or not isinstance(secret, str) or not key or not secret:
        raise ConfigError(f"{field}: {path} must hold a JSON object with string fields api_key and secret")
    register_secret(key)
    register_secret(secret)
    return key, secret


class LimiterSettings(StrictModel):
    backend: Literal["file", "sqlite", "memory"] = "file"
    # The most the rate-budget rule accepts (execution.rate_limit.headroom_fraction in the policy bundle).
    headroom: float = Field(default_factory=lambda: float(policy_data("execution", "rate_limit", "headroom_fraction")),
                            gt=0, le=1)
    egress_ip: str = "127.0.0.1"
    account: str = "default"
    deadline_s: float = Field(default=10.0, gt=0)
    # One file per egress IP for the whole host, so every worker and tool on the IP shares one budget.
    # None = <system temp dir>/keyguard-budget/<egress_ip>.<backend> (the service's inspections use it too).
    budget_path: Path | None = None

    def budget_file(self) -> Path:
        from keyguard.exchanges.budget_store import default_budget_path

        return self.budget_path if self.budget_path is not None else default_budget_path(self.egress_ip, self.backend)


class RiskSettings(StrictModel):
    # Caps are positive: None switches one off (and the live document says so); 0 or less is a mistake.
    max_order_notional: float | None = Field(default=1500.0, gt=0)
    max_order_share_of_portfolio: float | None = Field(default=0.02, gt=0, le=1)
    max_orders_per_minute: int | None = Field(default=30, gt=0)
    max_position: dict[str, Annotated[float, Field(ge=0)]] = Field(default_factory=lambda: {"BTC": 0.5})
    daily_loss_limit: float | None = Field(default=2000.0, gt=0)
    target_allocation: float | None = Field(default=100000.0, gt=0)
    portfolio_value: float = Field(default=100000.0, gt=0)
    min_fill_ratio: float = Field(default=0.1, ge=0, le=1)

    def limits(self, stage: Stage) -> RiskLimits:
        """These caps as the pure risk checks take them, at `stage`."""
        return RiskLimits(
            max_order_notional=self.max_order_notional, max_order_share_of_portfolio=self.max_order_share_of_portfolio,
            max_orders_per_minute=self.max_orders_per_minute, max_position=dict(self.max_position),
            daily_loss_limit=self.daily_loss_limit, stage=stage, target_allocation=self.target_allocation,
        )


class StrategySettings(StrictModel):
    symbol: str = "BTCUSDT"
    base_asset: str = "BTC"
    quote_per_order: float = Field(default=50.0, gt=0)
    interval_s: float = Field(default=1.0, gt=0)
    orders: int | None = Field(default=10, ge=0)  # None = run until stopped


class DataRetrySettings(StrictModel):
    attempts: int = 4
    base_s: float = Field(default=0.1, ge=0)
    cap_s: float = Field(default=2.0, ge=0)
    backoff: Backoff = "exponential"
    jitter: bool = True

    def policy(self) -> RetryPolicy:
        return RetryPolicy(self.attempts, self.base_s, self.cap_s, self.backoff, self.jitter)

    @field_validator("attempts")
    @classmethod
    def _within_policy(cls, attempts: int) -> int:
        """The bounds KG-EXE's retry rule enforces, read from the policy bundle (execution.retries)."""
        low, high = policy_data("execution", "retries", "data_min_attempts"), policy_data(
            "execution", "retries", "data_max_attempts")
        if not low <= attempts <= high:
            raise ValueError(f"must be between {low} and {high} (the policy's execution.retries bounds)")
        return attempts


class OrderRetrySettings(StrictModel):
    # Look-ups by client order id after a timeout or 5xx; 0 leaves an unknown outcome unknown (KG-EXE-108 fires).
    lookup_attempts: int = Field(default=5, ge=0, le=20)
    # Resends allowed after the exchange definitively said the order does not exist (-2013 past recvWindow).
    max_resends: int = Field(default=2, ge=0, le=5)


class ReconnectSettings(StrictModel):
    """How the process comes back after losing the exchange: waits between attempts while it is unreachable."""

    backoff: Backoff = "exponential"
    jitter: bool = True
    base_s: float = Field(default=0.5, ge=0)
    max_delay_s: float = Field(default=60.0, gt=0)

    def policy(self) -> ReconnectPolicy:
        return ReconnectPolicy(base_s=self.base_s, max_delay_s=self.max_delay_s, backoff=self.backoff,
                               jitter=self.jitter)


class KillSwitchSettings(StrictModel):
    # false: orders are sent without looking at any switch (the live document says so and KG-EXE-105 fires).
    enabled: bool = True
    path: Path | None = None  # None = <state_dir>/killswitch.json


class WorkerConfig(StrictModel):
    worker: str = "worker-1"
    stage: Stage = Stage.SANDBOX
    paper: bool = False
    state_dir: Path = Path(".keyguard/worker")
    journal_url: DatabaseUrl | None = None  # None = SQLite file in state_dir
    reconcile_interval_s: float = Field(default=30.0, gt=0)
    exchange: ExchangeSettings = Field(default_factory=ExchangeSettings)
    limiter: LimiterSettings = Field(default_factory=LimiterSettings)
    risk: RiskSettings = Field(default_factory=RiskSettings)
    strategy: StrategySettings = Field(default_factory=StrategySettings)
    data_retry: DataRetrySettings = Field(default_factory=DataRetrySettings)
    order_retry: OrderRetrySettings = Field(default_factory=OrderRetrySettings)
    reconnect: ReconnectSettings = Field(default_factory=ReconnectSettings)
    kill_switch: KillSwitchSettings = Field(default_factory=KillSwitchSettings)

    def risk_limits(self) -> RiskLimits:
        return self.risk.limits(self.stage)

    def declared_symbols(self) -> set[str]:
        """The symbols this worker trades by configuration (its strategy's)."""
        return {self.strategy.symbol}

    @property
    def paper_mode(self) -> bool:
        """The paper stage always trades on paper, whatever `paper` says."""
        return self.paper or self.stage is Stage.PAPER

    @property
    def kill_switch_path(self) -> Path:
        """One switch per state_dir (unless kill_switch.path names another): every worker sharing it obeys it."""
        return self.kill_switch.path or self.state_dir / "killswitch.json"

    def journal(self) -> str:
        return self.journal_url or f"sqlite:///{self.state_dir / 'journal.db'}"


def load_worker_config(path: str | Path) -> WorkerConfig:
    p = Path(path)
    config = load_model(WorkerConfig, p, "worker settings")
    if config.stage is Stage.SANDBOX and config.exchange.base_url is not None:
        host = config.exchange.base_url.split("//", 1)[-1].split("/", 1)[0].rsplit("@", 1)[-1].rsplit(":", 1)[0]
        if not (host.startswith("127.") or host == "localhost"):
            # The URL is not repeated: it may carry a password.
            raise ConfigError(f"{p}: stage is sandbox but exchange.base_url is not a loopback sandbox; use the "
                              "sandbox URL or move the worker to a later stage")
    if not config.state_dir.is_absolute():
        config.state_dir = (p.parent / config.state_dir).resolve()
    budget = config.limiter.budget_path
    if budget is not None and not budget.is_absolute():
        config.limiter.budget_path = (p.parent / budget).resolve()
    creds = config.exchange.credentials_file
    if creds is not None and not creds.is_absolute():
        config.exchange.credentials_file = (p.parent / creds).resolve()
    switch = config.kill_switch.path
    if switch is not None and not switch.is_absolute():
        config.kill_switch.path = (p.parent / switch).resolve()
    return config
