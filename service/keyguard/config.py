"""Settings: one pydantic model loaded from `keyguard.yaml`, overridable by `KEYGUARD_*` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from keyguard.loading import AppriseUrl, DatabaseUrl, EnvVarName, HttpUrlText, StrictModel, load_mapping, validate
from keyguard.policy.models import Severity
from keyguard.secrets.aws import AwsSecret


class ServiceSettings(StrictModel):
    host: str = "127.0.0.1"
    port: int = Field(default=8700, ge=0, le=65535)
    api_token_env: EnvVarName = Field(default="KEYGUARD_API_TOKEN", description="env var holding the API bearer token")
    api_token_secret: AwsSecret | None = Field(default=None, description="Secrets Manager secret {secret_id, region} "
                                                                         "holding the API bearer token (read at "
                                                                         "start; replaces api_token_env)")
    run_rate_per_minute: int = Field(default=6, ge=1, description="POST /api/checks/run calls each token may make "
                                                                  "per minute on one replica; more answer 429")
    openapi: bool = Field(default=False, description="serve /docs, /redoc and /openapi.json")


class StoreSettings(StrictModel):
    url: DatabaseUrl = "sqlite:///.keyguard/keyguard.db"


class OpaSettings(StrictModel):
    url: HttpUrlText | None = Field(default=None, description="external OPA; None starts a managed opa on loopback")
    policy_dir: Path | None = None


class AlertRoute(StrictModel):
    """One place alerts go: an apprise URL (checked when the service starts), its minimum severity and tier."""

    url: AppriseUrl
    name: str | None = Field(default=None, description="how deliveries name the route (default: route-<index>)")
    min_severity: Severity = Severity.low
    fallback: bool = Field(default=False, description="receives what another route has not delivered in time")
    tier: int = Field(default=0, ge=0, le=9, description="escalation tier: 0 gets every alert; a higher tier gets an "
                                                        "incident once it is escalated that far")


class AlertSettings(StrictModel):
    routes: list[AlertRoute] = Field(default_factory=list, description="none: alerts go to the service log")
    connect_timeout_s: float = Field(default=4.0, gt=0, description="per attempt, per route")
    read_timeout_s: float = Field(default=10.0, gt=0, description="per attempt, per route")
    backoff_base_s: float = Field(default=1.0, gt=0, description="first retry after about this long, then doubling")
    backoff_cap_s: float = Field(default=60.0, gt=0, description="retries never further apart than this")
    give_up_s: float = Field(default=3600.0, gt=0, description="undelivered this long: fallback routes, KG-SVC-003")


class IncidentSettings(StrictModel):
    """Incidents: re-notification and escalation of what nobody acknowledged, and limits on silences."""

    renotify_s: float = Field(default=300.0, gt=0, description="an unacknowledged incident is sent again this often")
    escalate_after_s: float = Field(default=900.0, gt=0, description="unacknowledged this long: the next route tier "
                                                                     "gets it too (and again after each period)")
    renotify_min_severity: Severity = Field(default=Severity.critical, description="incidents below this are opened "
                                                                                    "but not re-notified")
    max_silence_s: float = Field(default=7 * 86400.0, gt=0, description="the longest a silence may last")


CONTAINED_BY_DEFAULT = ("KG-ACT-101", "KG-ACT-102", "KG-ACT-103", "KG-ACT-104", "KG-KEY-101", "KG-KEY-102")


class ContainmentSettings(StrictModel):
    enabled: bool = Field(default=True, description="contain automatically for the rules switched on")
    rules: dict[str, bool] = Field(default_factory=dict, description="per rule: contain automatically or not; "
                                                                     "on by default for foreign activity "
                                                                     "(KG-ACT-101..104) and a bot key that can "
                                                                     "withdraw or transfer (KG-KEY-101, 102)")
    unroutable_ip: str = Field(default="192.0.2.1", description="the only address a cut key is bound to "
                                                                "(TEST-NET-1: nobody has it)")
    aws_exempt_principals: list[str] = Field(default_factory=list, description="principal ARNs that may still "
                                                                               "read a contained key's secret "
                                                                               "(the service's own role, to "
                                                                               "re-check it)")
    request_timeout_s: float = Field(default=5.0, gt=0)

    def automatic(self, rule_id: str) -> bool:
        return self.enabled and self.rules.get(rule_id, rule_id in CONTAINED_BY_DEFAULT)


class BudgetSettings(StrictModel):
    """The host's shared rate budget (the one the execution worker charges) and the inspections' part of it."""

    backend: Literal["file", "sqlite"] = "file"
    directory: Path | None = Field(default=None, description="None: the worker's default, <tmp>/keyguard-budget")
    egress_ip: str | None = Field(default=None, description="the worker's limiter.egress_ip; None: the inventory's "
                                                            "probe.source_ip, else 127.0.0.1")
    headroom: float = Field(default=0.9, gt=0, le=1, description="share of each limit every process together uses")
    share: float = Field(default=0.2, gt=0, le=1, description="share of each limit inspections may use")


class ChecksSettings(StrictModel):
    interval_s: float = Field(default=60.0, gt=0)
    deadline_s: float | None = Field(default=None, gt=0, description="a run not done by then leaves what it did not "
                                                                      "reach unverified; None: 80% of the interval, "
                                                                      "at most 120 s")
    request_timeout_s: float = Field(default=5.0, gt=0, description="one exchange request")
    concurrency: int = Field(default=8, ge=1, le=64, description="keys inspected at once")
    resolve_after: int = Field(default=2, ge=1, description="clean observations in a row before a finding resolves")
    budget: BudgetSettings = Field(default_factory=BudgetSettings)


class InfraSettings(StrictModel):
    """Where the live AWS drift check starts: the stack outputs (`pulumi stack output --json > outputs.json`)."""

    outputs: Path
    region: str
    endpoint_url: HttpUrlText | None = Field(default=None, description="another AWS endpoint (tests: moto's server)")


class KeyguardSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KEYGUARD_", env_nested_delimiter="__", extra="forbid")

    service: ServiceSettings = Field(default_factory=ServiceSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    opa: OpaSettings = Field(default_factory=OpaSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    incidents: IncidentSettings = Field(default_factory=IncidentSettings)
    containment: ContainmentSettings = Field(default_factory=ContainmentSettings)
    checks: ChecksSettings = Field(default_factory=ChecksSettings)
    inventory: Path | None = Field(default=None, description="keys inventory file (see examples/keyguard.yaml)")
    worker_state: Path | None = Field(default=None, description="live-state JSON the execution worker publishes")
    infra: InfraSettings | None = None
    documents: list[Path] = Field(default_factory=list, description="declared input documents checked each cycle")

    @field_validator("inventory")
    @classmethod
    def _exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError("no such file (a relative path is relative to the settings file)")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment wins over the file, so one file serves every host.
        return (env_settings, init_settings)


def load_settings(path: Path | None = None, **overrides: Any) -> KeyguardSettings:
    """Read keyguard.yaml (if given) then apply KEYGUARD_* variables; errors name the file, line and field."""
    loaded = load_mapping(path, "keyguard settings") if path else None
    data: dict[str, Any] = dict(loaded.data) if loaded else {}
    if path:  # file references in keyguard.yaml are relative to the file itself
        for name in ("inventory", "worker_state"):
            if isinstance(data.get(name), str) and not Path(data[name]).is_absolute():
                data[name] = str(path.parent / data[name])
        infra = data.get("infra")
        outputs = infra.get("outputs") if isinstance(infra, dict) else None
        if isinstance(infra, dict) and isinstance(outputs, str) and not Path(outputs).is_absolute():
            infra["outputs"] = str(path.parent / outputs)
        if isinstance(data.get("documents"), list):
            data["documents"] = [str(path.parent / d) if isinstance(d, str) and not Path(d).is_absolute() else d
                                 for d in data["documents"]]
    data.update(overrides)
    return validate(KeyguardSettings, data, str(path) if path else "settings", loaded.lines if loaded else None)
