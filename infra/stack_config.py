"""Stack configuration, validated up front so a bad value stops the program with a message naming the key."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlparse

import pulumi

from keyguard.tools import OPA_VERSION
from keyguard.worker.risk import Stage

# CloudWatch Logs accepts only these retention periods.
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557,
                      2922, 3288, 3653)
KEY_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
# The vault's own secret for the service's API token is named after this; no exchange key may take the name.
RESERVED_KEY_NAME = "service-api-token"
# Relative release paths are relative to the project directory (where Pulumi.yaml is), wherever pulumi runs from.
PROJECT_DIR = Path(__file__).resolve().parents[1]
# The execution worker's client speaks Binance's spot API.
WORKER_EXCHANGE = "binance"


@dataclass(frozen=True)
class DeclaredKey:
    """An exchange key the vault holds a secret for (the secret value is put there after deploy)."""

    name: str
    exchange: str
    purpose: str
    rotation_due: date
    issued_on: date


@dataclass(frozen=True)
class ReleaseFiles:
    """The exact files the host installs, each uploaded as a stack asset and pinned by its sha256."""

    wheel: Path
    requirements: Path
    opa: Path


@dataclass(frozen=True)
class WorkerPlan:
    """The execution worker the host runs: the declared key it trades with, and its go-live stage."""

    key: str
    stage: str


@dataclass(frozen=True)
class StackConfig:
    region: str
    instance_type: str
    ami_id: str | None
    admin_cidr: str | None
    vpc_cidr: str
    subnet_id: str | None
    vpc_id: str | None
    log_retention_days: int
    secret_recovery_window_days: int
    keys: tuple[DeclaredKey, ...]
    release: ReleaseFiles
    worker: WorkerPlan | None
    host_root: str = "/"
    service_port: int = 8700
    exchange_urls: dict[str, str] = field(default_factory=dict)


def _fail(key: str, problem: str) -> pulumi.RunError:
    return pulumi.RunError(f"config keyguard:{key} {problem}")


def parse_admin_cidr(value: str | None) -> str | None:
    if value in (None, ""):
        return None
    try:
        network = ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        raise _fail("adminCidr", f"is {value!r}, not a network ({exc}); give one address like 203.0.113.7/32") from None
    if network.version != 4 or network.prefixlen != 32:
        raise _fail("adminCidr", f"is {value!r}; SSH is allowed from one IPv4 admin address only, like 203.0.113.7/32")
    return str(network)


def parse_keys(raw: Any) -> tuple[DeclaredKey, ...]:
    if not isinstance(raw, list) or not raw:
        raise _fail("keys", "must be a non-empty list of {name, exchange, purpose, issuedOn, rotationDays}")
    keys: list[DeclaredKey] = []
    for index, item in enumerate(raw):
        where = f"keys[{index}]"
        if not isinstance(item, dict):
            raise _fail(where, f"must be a mapping, got {type(item).__name__}")
        missing = [field for field in ("name", "exchange", "purpose", "issuedOn") if not item.get(field)]
        if missing:
            raise _fail(where, f"is missing {', '.join(missing)}")
        name = str(item["name"])
        if not KEY_NAME.match(name):
            raise _fail(f"{where}.name", f"is {name!r}; use lowercase letters, digits and '-' (max 63)")
        if name == RESERVED_KEY_NAME:
            raise _fail(f"{where}.name", f"is {name!r}, the name of the vault's service API token; choose another")
        try:
            issued = date.fromisoformat(str(item["issuedOn"]))
        except ValueError:
            raise _fail(f"{where}.issuedOn", f"is {item['issuedOn']!r}; use a date like 2026-11-01") from None
        rotation_days = item.get("rotationDays", 90)
        if not isinstance(rotation_days, int) or isinstance(rotation_days, bool) or not 1 <= rotation_days <= 365:
            raise _fail(f"{where}.rotationDays", f"is {rotation_days!r}; use a whole number of days from 1 to 365")
        keys.append(DeclaredKey(name, str(item["exchange"]), str(item["purpose"]),
                                issued + timedelta(days=rotation_days), issued))
    names = [k.name for k in keys]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise _fail("keys", f"declares {', '.join(duplicates)} more than once; key names must be unique")
    return tuple(keys)


def parse_release(config: pulumi.Config) -> ReleaseFiles:
    """The wheel, its locked requirements and the opa binary: files that must exist now (what is checked is what
    is deployed); relative paths are relative to the project directory."""
    what = {
        "wheel": "the wheel, uv build --wheel",
        "requirements": "its locked requirements, uv export --frozen --no-dev --no-emit-project",
        "opaBinary": f"opa {OPA_VERSION} for linux/amd64",
    }
    found: dict[str, Path] = {}
    for key, built in what.items():
        value = config.get(key)
        if not value:
            raise _fail(key, f"is not set; name the file the host installs ({built})")
        path = Path(value) if Path(value).is_absolute() else PROJECT_DIR / value
        if not path.is_file():
            raise _fail(key, f"names {value}, which does not exist; build the release first with "
                             f"`bash infra/release.sh` ({built})")
        found[key] = path
    if not found["wheel"].name.endswith("-py3-none-any.whl"):
        raise _fail("wheel", f"names {found['wheel'].name}; expected the pure-Python wheel keyguard-<version>-"
                             "py3-none-any.whl")
    return ReleaseFiles(found["wheel"], found["requirements"], found["opaBinary"])


def parse_worker(raw: Any, keys: tuple[DeclaredKey, ...]) -> WorkerPlan | None:
    """`keyguard:worker: {key, stage}`; unset: the one execution key on the paper stage, or no worker at all."""
    if raw is None:
        execution = [k.name for k in keys if k.purpose == "execution"]
        if not execution:
            return None
        if len(execution) > 1:
            raise _fail("worker", f"is not set and there are several execution keys ({', '.join(execution)}); "
                                  "name the one the host's worker trades with: {key: <name>, stage: paper}")
        raw = {"key": execution[0]}
    if not isinstance(raw, dict) or set(raw) - {"key", "stage"} or not raw.get("key"):
        raise _fail("worker", "must be a mapping {key: <declared key name>, stage: <go-live stage>}")
    declared = {k.name: k for k in keys}
    key = declared.get(str(raw["key"]))
    if key is None:
        raise _fail("worker.key", f"is {raw['key']!r}, not a declared key ({', '.join(declared)})")
    if key.exchange != WORKER_EXCHANGE:
        raise _fail("worker.key", f"names {key.name} on {key.exchange}; the execution worker trades on "
                                  f"{WORKER_EXCHANGE} only")
    stages = [s.value for s in Stage]
    stage = str(raw.get("stage", Stage.PAPER.value))
    if stage not in stages:
        raise _fail("worker.stage", f"is {stage!r}; use one of {', '.join(stages)}")
    return WorkerPlan(key.name, stage)


def parse_exchange_urls(raw: Any) -> dict[str, str]:
    """`keyguard:exchangeUrls`: exchange -> base URL of a Keyguard sandbox; unset, the real exchanges."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise _fail("exchangeUrls", "must map exchange name to a base URL, e.g. {binance: http://127.0.0.1:8765}")
    for exchange, url in raw.items():
        parsed = urlparse(str(url))
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise _fail(f"exchangeUrls.{exchange}", f"is {url!r}; use a base URL like http://127.0.0.1:8765")
    return {str(k): str(v).rstrip("/") for k, v in raw.items()}


def parse_host_root(value: str | None) -> str:
    root = value or "/"
    if not PurePosixPath(root).is_absolute() or ".." in PurePosixPath(root).parts:
        raise _fail("hostRoot", f"is {root!r}; use an absolute path (/ on a real host)")
    return root


def load_stack_config() -> StackConfig:
    aws_config = pulumi.Config("aws")
    config = pulumi.Config("keyguard")
    region = aws_config.get("region")
    if not region:
        raise pulumi.RunError("config aws:region is not set; run `pulumi config set aws:region eu-west-1`")

    retention = config.get_int("logRetentionDays") or 90
    if retention not in LOG_RETENTION_DAYS:
        raise _fail("logRetentionDays", f"is {retention}; CloudWatch accepts one of {LOG_RETENTION_DAYS}")
    recovery = config.get_int("secretRecoveryWindowDays") or 30
    if not 7 <= recovery <= 30:
        raise _fail("secretRecoveryWindowDays", f"is {recovery}; Secrets Manager accepts 7 to 30 days")

    subnet_id, vpc_id = config.get("subnetId"), config.get("vpcId")
    if bool(subnet_id) != bool(vpc_id):
        raise _fail("subnetId", "and keyguard:vpcId must be set together (the security group lives in the VPC)")
    vpc_cidr = config.get("vpcCidr") or "10.20.0.0/16"
    try:
        ipaddress.ip_network(vpc_cidr, strict=True)
    except ValueError:
        raise _fail("vpcCidr", f"is {vpc_cidr!r}; use a network like 10.20.0.0/16") from None

    port = config.get_int("servicePort")
    port = 8700 if port is None else port
    if not 0 <= port <= 65535:
        raise _fail("servicePort", f"is {port}; use a TCP port (the API listens on 127.0.0.1 only)")
    keys = parse_keys(config.get_object("keys"))

    return StackConfig(
        region=region,
        instance_type=config.get("instanceType") or "t3.small",
        ami_id=config.get("amiId"),
        admin_cidr=parse_admin_cidr(config.get("adminCidr")),
        vpc_cidr=vpc_cidr,
        subnet_id=subnet_id,
        vpc_id=vpc_id,
        log_retention_days=retention,
        secret_recovery_window_days=recovery,
        keys=keys,
        release=parse_release(config),
        worker=parse_worker(config.get_object("worker"), keys),
        host_root=parse_host_root(config.get("hostRoot")),
        service_port=port,
        exchange_urls=parse_exchange_urls(config.get_object("exchangeUrls")),
    )
