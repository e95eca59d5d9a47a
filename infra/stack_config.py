"""Stack configuration, validated up front so a bad value stops the program with a message naming the key."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import pulumi

# CloudWatch Logs accepts only these retention periods.
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557,
                      2922, 3288, 3653)
KEY_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


@dataclass(frozen=True)
class DeclaredKey:
    """An exchange key the vault holds a secret for (the secret value is put there after deploy)."""

    name: str
    exchange: str
    purpose: str
    rotation_due: date


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
    keyguard_package: str
    keys: tuple[DeclaredKey, ...]


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
        try:
            issued = date.fromisoformat(str(item["issuedOn"]))
        except ValueError:
            raise _fail(f"{where}.issuedOn", f"is {item['issuedOn']!r}; use a date like 2026-11-01") from None
        rotation_days = item.get("rotationDays", 90)
        if not isinstance(rotation_days, int) or isinstance(rotation_days, bool) or not 1 <= rotation_days <= 365:
            raise _fail(f"{where}.rotationDays", f"is {rotation_days!r}; use a whole number of days from 1 to 365")
        keys.append(DeclaredKey(name, str(item["exchange"]), str(item["purpose"]),
                                issued + timedelta(days=rotation_days)))
    names = [k.name for k in keys]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise _fail("keys", f"declares {', '.join(duplicates)} more than once; key names must be unique")
    return tuple(keys)


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
        keyguard_package=config.get("keyguardPackage") or "keyguard",
        keys=parse_keys(config.get_object("keys")),
    )
