"""Properties of the rule set over generated documents, against the real rules in one real OPA per session:

- any document shaped by an input schema gets an answer from `keyguard policy check` (exit 0, 1 or 2 with a clear
  error), never a traceback and never an OPA evaluation failure;
- any unsafe mutation of a compliant example (withdraw turned on, ingress opened, IAM widened, a control nulled
  out, a secret put in user data, a history with a hole, a clock that does not exist) is a finding.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.cli_in_process import run_cli

from keyguard.errors import ConfigError
from keyguard.policy import PolicyEngine
from keyguard.tools import PROJECT_ROOT, schema_dir


def fake_key_header(kind: str, suffix: str = "") -> str:
    """A PEM private-key header assembled at run time, so the repository holds no key-shaped line."""
    dashes = "-" * 5
    return f"{dashes}BEGIN {kind}PRIVATE KEY{suffix}{dashes}"

EXAMPLES = PROJECT_ROOT / "examples"
KINDS = ("keys", "execution", "infra", "vendors")
BOUNDED = settings(max_examples=40, deadline=None, database=None,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def opa_url(policy_engine: PolicyEngine) -> str:
    return policy_engine.url


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("documents")


# -- documents from the input schemas ------------------------------------------------------------------------------

# Values the rules give a meaning to, so generated documents reach the rules' branches and not only their guards.
SECRET_SCRIPT = "#!/bin/bash\nexport BINANCE_API_SECRET=Zx81kq0pL2mN4bV6cX8z9Q7wE3rT5yU1iO\n"
STRINGS = [
    "", " ", "required", "optional", "Allow", "allow", "Deny", "*", "?", "secretsmanager:GetSecretValue",
    "secretsmanager:Get*", "0.0.0.0/0", "::/0", "0::/0", "::ffff:0:0/96", "0/0", "0.0.0.0", "203.0.113.75",
    "203.0.113.75/32", "2001:DB8:0:0:0:0:0:10", "198.51.100.7/32", "10.0.0.0/8", "not-an-ip", "tcp", "TCP", "-1", "6",
    "ingress", "default", "binance", "Binance", " okx ", "bybit", "monitoring", "Monitoring", "portfolio",
    "execution", "exponential", "paper", "micro-live", "full-live", "Full-Live", "aws_secretsmanager", "AWS",
    "CUSTOMER", "alias/aws/secretsmanager", "arn:aws:iam::aws:policy/AdministratorAccess",
    "arn:aws:secretsmanager:eu-west-1:123456789012:secret:keyguard/dev/bot-exec-1-101d00",
    "export AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", fake_key_header("PGP ", " BLOCK"),
    base64.b64encode(SECRET_SCRIPT.encode()).decode(), "keyguard/binance/bot", "2026-02-30T00:00:00Z",
    "2026-11-25T00:00:00Z", "yesterday",
    json.dumps({"Statement": {"Effect": "Allow", "Action": "s3:Get*", "Resource": "*"}}),
    json.dumps({"Statement": [{"Effect": "Allow", "NotAction": "iam:*", "Resource": "arn:aws:s3:::b"}]}),
    "{not json",
]
KEYS = [
    "metadataOptions", "httpTokens", "rootBlockDevice", "encrypted", "ingress", "protocol", "fromPort", "toPort",
    "cidrBlocks", "ipv6CidrBlocks", "self", "securityGroups", "cidrIpv4", "cidrIpv6", "ipProtocol", "securityGroupId",
    "type", "name", "policy", "Statement", "Effect", "Action", "NotAction", "Resource", "NotResource", "policyArn",
    "managedPolicyArns", "inlinePolicies", "userData", "userDataBase64", "tags", "tagsAll", "publicIp", "instance",
    "instanceId", "allocationId", "kmsKeyId", "keyManager", "enableKeyRotation", "arn", "keyId", "launchTemplate",
    "id", "enableWithdrawals", "enableSpotAndMarginTrading", "permitsUniversalTransfer", "readOnly", "Withdraw",
    "symbol", "side", "address", "coin", "amount", "asset", "sent_by_keyguard", "time",
]
RESOURCE_TYPES = [
    "aws:ec2/instance:Instance", "aws:ec2/launchTemplate:LaunchTemplate", "aws:ec2/eip:Eip",
    "aws:ec2/eipAssociation:EipAssociation", "aws:ec2/securityGroup:SecurityGroup",
    "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup", "aws:ec2/securityGroupRule:SecurityGroupRule",
    "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", "aws:iam/role:Role", "aws:iam/rolePolicy:RolePolicy",
    "aws:iam/policy:Policy", "aws:iam/rolePolicyAttachment:RolePolicyAttachment", "aws:kms/key:Key",
    "aws:secretsmanager/secret:Secret", "aws:s3/bucket:Bucket",
]
TIMESTAMP_PATTERN_START = "^\\d{4}-\\d{2}-\\d{2}T"

text = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=12)
strings = st.one_of(st.sampled_from(STRINGS), text)
numbers = st.one_of(st.integers(-(10**6), 10**6), st.floats(allow_nan=False, allow_infinity=False, width=64),
                    st.sampled_from([0, -1, 0.5, 1, 22, 443, 6000, 1e15]))
timestamps = st.one_of(
    st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1)).map(
        lambda d: d.replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")),
    st.sampled_from(["2026-02-30T00:00:00Z", "2026-11-25T24:00:00Z", "2026-11-25T00:00:00.5+01:00",
                     "2026-11-25T00:00:00-00:00", "0001-01-01T00:00:00Z"]),
)
free_json = st.recursive(
    st.one_of(st.none(), st.booleans(), numbers, strings),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.one_of(st.sampled_from(KEYS), text), inner, max_size=4)),
    max_leaves=12,
)


def schema(kind: str) -> dict[str, Any]:
    return json.loads((schema_dir() / f"{kind}.schema.json").read_text(encoding="utf-8"))


def from_schema(node: dict[str, Any], root: dict[str, Any]) -> st.SearchStrategy[Any]:
    """A strategy for the values `node` (a JSON Schema 2020-12 subset: the one schemas/ uses) accepts."""
    if "$ref" in node:
        target: Any = root
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        return from_schema(target, root)
    if "const" in node:
        return st.just(node["const"])
    if "enum" in node:
        return st.sampled_from(node["enum"])
    if "anyOf" in node:
        return st.one_of([from_schema(option, root) for option in node["anyOf"]])
    types = node.get("type")
    if types is None:
        return free_json
    options = [types] if isinstance(types, str) else types
    return st.one_of([typed(t, node, root) for t in options])


def typed(kind: str, node: dict[str, Any], root: dict[str, Any]) -> st.SearchStrategy[Any]:
    if kind == "null":
        return st.none()
    if kind == "boolean":
        return st.booleans()
    if kind == "integer":
        return st.integers(-(10**6), 10**6)
    if kind == "number":
        return numbers
    if kind == "string":
        pattern = node.get("pattern", "")
        if pattern.startswith(TIMESTAMP_PATTERN_START):
            return timestamps
        if pattern:  # the resource type token
            return st.sampled_from(RESOURCE_TYPES)
        minimum = node.get("minLength", 0)
        return strings.filter(lambda s: len(s) >= minimum) if minimum else strings
    if kind == "array":
        return st.lists(from_schema(node.get("items", {}), root), max_size=4)
    assert kind == "object", kind
    properties = node.get("properties", {})
    required = node.get("required", [])
    fixed = st.fixed_dictionaries(
        {name: from_schema(properties.get(name, {}), root) for name in required},
        optional={name: from_schema(sub, root) for name, sub in properties.items() if name not in required},
    )
    extra = node.get("additionalProperties", {})
    if extra is False:
        return fixed
    # Further fields: those the schema gives a shape to, or any (an open object such as a resource's properties).
    more = st.dictionaries(st.one_of(st.sampled_from(KEYS), text).filter(lambda k: k not in properties),
                           from_schema(extra, root) if extra else free_json, max_size=6 if not properties else 2)
    return st.tuples(fixed, more).map(lambda pair: {**pair[1], **pair[0]})


documents = st.one_of([from_schema(schema(kind), schema(kind)) for kind in KINDS])


@BOUNDED
@given(doc=documents, fmt=st.sampled_from(["json", "yaml"]), report=st.sampled_from(["json", "table", "sarif"]))
def test_any_schema_shaped_document_gets_an_answer_never_a_traceback(
        doc: dict[str, Any], fmt: str, report: str, opa_url: str, workdir: Path) -> None:
    path = workdir / f"document.{fmt}"
    path.write_text(json.dumps(doc) if fmt == "json" else yaml.safe_dump(doc), encoding="utf-8")
    code, _, err = run_cli(["policy", "check", str(path), "--format", report, "--opa-url", opa_url])
    assert code in (0, 1, 2), err
    assert "Traceback" not in err
    # A refusal is for a document that is wrong (named field, file, line), never for the rule set failing on it.
    for failure in ("OPA failed to evaluate", "is undefined", "malformed result", "not a list of findings"):
        assert failure not in err, err


# -- unsafe mutations of the compliant examples -------------------------------------------------------------------

Draw = Callable[[st.SearchStrategy[Any]], Any]
NOW = datetime(2026, 11, 25, tzinfo=UTC)
WORLD = ["0.0.0.0/0", "::/0", "0::/0", "::ffff:0:0/96", "0:0:0:0:0:0:0:0/0", " 0.0.0.0/0", "1.2.3.4/0"]
MISSING = object()


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def put(container: dict[str, Any], name: str, value: Any) -> None:
    """Set a field, or delete it when the value is MISSING (absent and null must read alike)."""
    if value is MISSING:
        container.pop(name, None)
    else:
        container[name] = value


def example(name: str) -> dict[str, Any]:
    path = EXAMPLES / name
    text = path.read_text(encoding="utf-8")
    return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)


def by(items: list[dict[str, Any]], field: str, value: str) -> dict[str, Any]:
    return next(item for item in items if item[field] == value)


# keys-compliant.yaml: bot-exec-1 (binance), hedge-okx-1 (okx), mon-1 (monitoring), bot-exec-0 (revoked)
def key_moves_funds(doc: dict[str, Any], draw: Draw) -> str:
    key = by(doc["keys"], "id", draw(st.sampled_from(["bot-exec-1", "hedge-okx-1", "bot-exec-0", "mon-1"])))
    how = draw(st.sampled_from(["withdraw", "transfer", "raw"]))
    if how == "raw":
        flags = {"binance": {"enableWithdrawals": True}, "okx": {"withdraw": True}}[key["exchange"]]
        key["raw_flags"] = {**(key.get("raw_flags") or {}), **flags}
    else:
        key["permissions"][how] = True
    return f"{key['id']} can {how}"


def read_only_key_trades(doc: dict[str, Any], draw: Draw) -> str:
    key = by(doc["keys"], "id", "mon-1")
    key["purpose"] = draw(st.sampled_from(["monitoring", "Monitoring", " MONITORING ", "portfolio", "Portfolio"]))
    if draw(st.booleans()):
        key["permissions"]["trade"] = True
    else:
        key["raw_flags"]["enableSpotAndMarginTrading"] = True
    return f"{key['purpose']!r} key trades"


def key_loses_its_ip_binding(doc: dict[str, Any], draw: Draw) -> str:
    key = by(doc["keys"], "id", draw(st.sampled_from(["bot-exec-1", "hedge-okx-1", "mon-1", "bot-exec-0"])))
    how = draw(st.sampled_from(["restriction", "allowlist", "entry"]))
    if how == "restriction":
        put(key, "ip_restricted", draw(st.sampled_from([False, None, MISSING])))
    elif how == "allowlist":
        put(key, "allowed_ips", draw(st.sampled_from([[], MISSING])))  # null is refused by the schema
    else:
        value = draw(st.sampled_from([*WORLD, "203.0.113.0/24", "0.0.0.0", "2001:db8::/64", "198.51.100.99"]))
        key["allowed_ips"].append({"value": value, "reason": "added"})
    return f"{key['id']} {how}"


def key_control_nulled(doc: dict[str, Any], draw: Draw) -> str:
    key = by(doc["keys"], "id", draw(st.sampled_from(["bot-exec-1", "hedge-okx-1", "mon-1", "bot-exec-0"])))
    field = draw(st.sampled_from(["permissions", "storage", "permissions_source"]))
    put(key, field, draw(st.sampled_from([None, MISSING])))
    return f"{key['id']} {field} nulled"


def key_time_runs_out(doc: dict[str, Any], draw: Draw) -> str:
    key = by(doc["keys"], "id", draw(st.sampled_from(["bot-exec-1", "hedge-okx-1", "mon-1"])))
    field = draw(st.sampled_from(["created_at", "expires_at", "superseded_at"]))
    if field == "created_at":
        value = draw(st.sampled_from([stamp(NOW - timedelta(days=91)), stamp(NOW + timedelta(days=2)), None,
                                      MISSING, "2026-02-30T00:00:00Z"]))
    elif field == "expires_at":
        value = draw(st.one_of(st.integers(-30, 7).map(lambda d: stamp(NOW + timedelta(days=d))),
                               st.just("2026-11-31T00:00:00Z")))
    else:
        value = draw(st.sampled_from([stamp(NOW - timedelta(hours=25)), "2026-09-31T00:00:00Z"]))
    put(key, field, value)
    return f"{key['id']} {field}={value}"


def clock_that_does_not_exist(doc: dict[str, Any], draw: Draw) -> str:
    doc["now"] = draw(st.sampled_from(["2026-02-30T00:00:00Z", "2026-11-25T24:00:00Z", "2026-13-01T00:00:00Z"]))
    return f"now={doc['now']}"


# execution-compliant.yaml: a full-live worker with its whole history and a healthy live state
CONFIG_CONTROLS = ["max_order_notional", "max_orders_per_minute", "max_position", "daily_loss_limit", "kill_switch",
                   "rate_limit_budget_fraction", "order_retry", "data_retry", "reconnect", "min_fill_ratio", "stage"]


def worker_control_nulled(doc: dict[str, Any], draw: Draw) -> str:
    config = doc["config"]
    field = draw(st.sampled_from([*CONFIG_CONTROLS, "kill_switch.enabled", "kill_switch.last_tested_at",
                                  "order_retry.client_order_ids", "order_retry.status_lookup",
                                  "data_retry.jitter", "reconnect.backoff", "max_position.BTC"]))
    value = draw(st.sampled_from([None, MISSING]))
    container, _, name = field.rpartition(".")
    put(config[container] if container else config, name, value)
    return f"config.{field} nulled"


def worker_cap_widened(doc: dict[str, Any], draw: Draw) -> str:
    config = doc["config"]
    field = draw(st.sampled_from(["max_order_notional", "daily_loss_limit", "rate_limit_budget_fraction",
                                  "min_fill_ratio", "max_orders_per_minute"]))
    config[field] = {"max_order_notional": 2001.0, "daily_loss_limit": 5001.0, "rate_limit_budget_fraction": 0.95,
                     "min_fill_ratio": 0, "max_orders_per_minute": 0}[field] * draw(st.sampled_from([1, 10]))
    return f"config.{field}={config[field]}"


def worker_misbehaves_live(doc: dict[str, Any], draw: Draw) -> str:
    state = doc["state"]
    how = draw(st.sampled_from(["engaged", "heartbeat", "orders", "position", "loss"]))
    if how == "engaged":
        state["kill_switch_engaged"] = True
    elif how == "heartbeat":
        put(state, "heartbeat_at", draw(st.sampled_from([stamp(NOW - timedelta(minutes=5)), None, MISSING,
                                                         stamp(NOW + timedelta(hours=1))])))
    elif how == "orders":
        state["orders_last_minute"] = 31
    elif how == "position":
        state["positions"]["BTC"] = draw(st.sampled_from([0.6, -0.6]))
    else:
        state["daily_pnl"] = -2001.0
    return f"live {how}"


def golive_history_with_a_hole(doc: dict[str, Any], draw: Draw) -> str:
    history = doc["golive"]["history"]
    how = draw(st.sampled_from(["drop", "rush", "stage"]))
    index = draw(st.integers(0, len(history) - 1))
    if how == "drop":
        del history[index]
    elif how == "rush":
        index = max(index, 1)
        history[index]["entered_at"] = history[index - 1]["entered_at"]
    else:
        doc["config"]["stage"] = draw(st.sampled_from(["Full-Live", "full_live", "live", ""]))
    return f"golive {how} {index}"


# vendors-compliant.yaml
def vendor_lacks_a_control(doc: dict[str, Any], draw: Draw) -> str:
    vendor = draw(st.sampled_from(doc["vendors"]))
    field = draw(st.sampled_from(["requires_withdraw", "supports_ip_restriction", "audit_log", "instant_revocation",
                                  "two_factor", "incidents_disclosed"]))
    unsafe = [True, None, MISSING] if field == "requires_withdraw" else [False, None, MISSING]
    put(vendor, field, draw(st.sampled_from(unsafe)))
    return f"{vendor['name']} {field}"


# infra-dev.json: the Pulumi program's resources under mocks
def ingress_opened(doc: dict[str, Any], draw: Draw) -> str:
    cidr = draw(st.sampled_from(WORLD))
    protocol = draw(st.sampled_from(["tcp", "-1", "6", "all"]))
    port = draw(st.integers(0, 65535))
    if draw(st.booleans()):
        group = by(doc["resources"], "name", "exec-sg")
        field = "ipv6CidrBlocks" if ":" in cidr else "cidrBlocks"
        group["properties"]["ingress"] = [{"protocol": protocol, "fromPort": port, "toPort": port, field: [cidr]}]
    else:
        field = "cidrIpv6" if ":" in cidr else "cidrIpv4"
        doc["resources"].append({
            "type": "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", "name": "opened", "id": "sgr-x",
            "properties": {"ipProtocol": protocol, "fromPort": port, "toPort": port, field: cidr,
                           "securityGroupId": "sg-54a9e0431018d3505"},
        })
    return f"ingress from {cidr!r} ({protocol} {port})"


WIDE_MANAGED_POLICIES = ["AdministratorAccess", "PowerUserAccess", "IAMFullAccess", "SecretsManagerReadWrite",
                         "AmazonS3FullAccess", "job-function/SystemAdministrator"]


def iam_widened(doc: dict[str, Any], draw: Draw) -> str:
    how = draw(st.sampled_from(["action", "resource", "not_action", "managed", "managed_on_role"]))
    if how in ("managed", "managed_on_role"):
        name = draw(st.sampled_from(WIDE_MANAGED_POLICIES))
        arn = f"arn:aws:iam::aws:policy/{name}"
        if how == "managed":
            by(doc["resources"], "name", "exec-ssm")["properties"]["policyArn"] = arn
        else:
            by(doc["resources"], "name", "exec-role")["properties"]["managedPolicyArns"] = [arn]
        return f"attached {name}"
    props = by(doc["resources"], "name", "exec-least-privilege")["properties"]
    policy = json.loads(props["policy"])
    statement = draw(st.sampled_from(policy["Statement"]))
    if how == "action":
        statement["Action"] = draw(st.sampled_from(["*", "secretsmanager:*", "secretsmanager:Get*", "s3:Get?bject",
                                                    "SECRETSMANAGER:*", "kms:*", "*:*"]))
    elif how == "resource":
        statement["Resource"] = draw(st.sampled_from(["*", "arn:aws:secretsmanager:eu-west-1:123456789012:secret:*",
                                                      "arn:aws:s3:::keyguard-dev-release-dc25f89da9c6/*"]))
    else:
        statement["NotAction"] = statement.pop("Action")
    props["policy"] = json.dumps(policy)
    return f"IAM {how} on {statement.get('Sid')}"


def infra_control_nulled(doc: dict[str, Any], draw: Draw) -> str:
    target, field, values = draw(st.sampled_from([
        ("exec-instance", "metadataOptions", [None, MISSING, {"httpTokens": "optional"}, {"httpTokens": None}]),
        ("exec-instance", "rootBlockDevice", [None, MISSING, {"encrypted": False}, {"encrypted": None}]),
        ("vault-key", "enableKeyRotation", [None, MISSING, False]),
        ("vault-bot-exec-1", "kmsKeyId", [None, MISSING, "alias/aws/secretsmanager", ""]),
        ("exec-instance", "properties", [{}]),
    ]))
    value = draw(st.sampled_from(values))
    resource = by(doc["resources"], "name", target)
    put(resource if field == "properties" else resource["properties"], field, value)
    return f"{target}.{field} = {value!r}"


def eip_detached(doc: dict[str, Any], draw: Draw) -> str:
    doc["resources"] = [r for r in doc["resources"] if r["name"] != "exec-eip-association"]
    return "EIP association removed"


SECRET_LINES = [
    "export AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE",
    "BINANCE_API_SECRET='Zx81kq0pL2mN4bV6cX8z9Q7wE3rT5yU1iO'",
    "okx_secret: 8F3A1B2C4D5E6F708192A3B4C5D6E7F8",
    fake_key_header("OPENSSH "),
    fake_key_header("ENCRYPTED "),
    fake_key_header("PGP ", " BLOCK"),
]


def secret_in_user_data_or_tags(doc: dict[str, Any], draw: Draw) -> str:
    line = draw(st.sampled_from(SECRET_LINES))
    where = draw(st.sampled_from(["userData", "base64", "launch template", "tag"]))
    instance = by(doc["resources"], "name", "exec-instance")["properties"]
    script = f"#!/bin/bash\n{line}\n"
    encoded = base64.b64encode(script.encode()).decode()
    if where == "userData":
        instance["userData"] += f"\n{line}\n"
    elif where == "base64":
        instance["userData"] = encoded
    elif where == "launch template":
        doc["resources"].append({"type": "aws:ec2/launchTemplate:LaunchTemplate", "name": "bots", "id": "lt-1",
                                 "properties": {"metadataOptions": {"httpTokens": "required"}, "userData": encoded}})
    else:
        name, _, value = line.partition("=") if "=" in line else line.partition(": ")
        instance["tags"][name.removeprefix("export ") if value else "note"] = value.strip("'") or line
    return f"{line[:24]}... in {where}"


def key_bound_elsewhere(doc: dict[str, Any], draw: Draw) -> str:
    ip = draw(st.sampled_from(["198.51.100.20", "203.0.113.0/24", "0.0.0.0/0", "203.0.113.76/32", "", "bogus"]))
    doc["key_bindings"] = [{"key": "bot-exec-1", "ips": ["203.0.113.75", ip]}]
    return f"key bound to {ip!r}"


MUTATIONS: dict[str, list[Callable[[dict[str, Any], Draw], str]]] = {
    "keys-compliant.yaml": [key_moves_funds, read_only_key_trades, key_loses_its_ip_binding, key_control_nulled,
                            key_time_runs_out, clock_that_does_not_exist],
    "execution-compliant.yaml": [worker_control_nulled, worker_cap_widened, worker_misbehaves_live,
                                 golive_history_with_a_hole, clock_that_does_not_exist],
    "vendors-compliant.yaml": [vendor_lacks_a_control, clock_that_does_not_exist],
    "infra-dev.json": [ingress_opened, iam_widened, infra_control_nulled, eip_detached, secret_in_user_data_or_tags,
                       key_bound_elsewhere, clock_that_does_not_exist],
}
COMPLIANT = {name: example(name) for name in MUTATIONS}
CHOICES = [(name, mutate) for name, mutations in MUTATIONS.items() for mutate in mutations]


@BOUNDED
@given(choice=st.sampled_from(CHOICES), data=st.data())
def test_every_unsafe_mutation_of_a_compliant_example_is_a_finding(
        choice: tuple[str, Callable[[dict[str, Any], Draw], str]], data: st.DataObject,
        policy_engine: PolicyEngine) -> None:
    name, mutate = choice
    doc = copy.deepcopy(COMPLIANT[name])
    what = mutate(doc, data.draw)
    try:
        findings = policy_engine.evaluate(doc, source=f"{name} with {what}")
    except ConfigError as exc:
        # A time that does not exist (now, expires_at, ...) is refused by the schema's date-time format before the
        # rules run (their own findings for it are tested in clock_test.rego and rotation_test.rego): a refusal
        # naming the field, never a pass. Any other refusal means the mutation, not the rules, is wrong.
        assert "is not a 'date-time'" in str(exc), exc
        return
    assert findings, f"{name}: {what} passed every rule"


def test_the_compliant_examples_are_compliant(policy_engine: PolicyEngine) -> None:
    """The premise of the mutation property: before any mutation, nothing fires."""
    for name, doc in COMPLIANT.items():
        assert policy_engine.evaluate(copy.deepcopy(doc), source=name) == [], name

