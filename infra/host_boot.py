"""What the execution host runs, rendered from typed config: the boot script (user data) that installs the pinned
release, writes the service, worker and inventory configs and the systemd units, and starts them.

Pure functions of a `BootPlan`; nothing here calls AWS. Nothing here holds a secret either: the configs name
Secrets Manager secrets, which the processes read through the instance role when they start.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import pulumi
import yaml

from components.release import ReleaseArtifact
from stack_config import DeclaredKey, WorkerPlan

# EC2 refuses user data over 16 KiB.
USER_DATA_LIMIT = 16 * 1024
# systemd's StateDirectory= and LogsDirectory= (under /var/lib and /var/log), shared by both units.
STATE_DIRECTORY = "keyguard"
LOGS_DIRECTORY = "keyguard"
USER = "keyguard"
BINANCE_SPOT_URL = "https://api.binance.com"
CLOUDWATCH_AGENT_CTL = "/opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl"
HEREDOC_END = "KEYGUARD_FILE_END"


@dataclass(frozen=True)
class HostLayout:
    """Where things live on the host. `root` is `/` on a real host; a test renders the host into a directory."""

    root: str = "/"

    def path(self, absolute: str) -> str:
        return str(PurePosixPath(self.root) / absolute.lstrip("/"))

    @property
    def install(self) -> str:
        return self.path("/opt/keyguard")

    @property
    def release(self) -> str:
        return f"{self.install}/release"

    @property
    def config(self) -> str:
        return self.path("/etc/keyguard")

    @property
    def state(self) -> str:
        return self.path(f"/var/lib/{STATE_DIRECTORY}")

    @property
    def logs(self) -> str:
        return self.path(f"/var/log/{LOGS_DIRECTORY}")

    @property
    def units(self) -> str:
        return self.path("/etc/systemd/system")

    @property
    def keyguard(self) -> str:
        return f"{self.install}/bin/keyguard"

    @property
    def opa(self) -> str:
        return f"{self.install}/bin/opa"


@dataclass(frozen=True)
class HostBootArgs:
    """What the host's boot script is rendered from, but for the values only known once resources exist."""

    stack: str
    region: str
    release_bucket: pulumi.Input[str]
    # wheel, requirements, opa
    release: tuple[ReleaseArtifact, ReleaseArtifact, ReleaseArtifact]
    opa_version: str
    keys: Sequence[DeclaredKey]
    secret_names: Mapping[str, str]
    api_token_secret: str
    log_group: pulumi.Input[str]
    worker: WorkerPlan | None = None
    service_port: int = 8700
    exchange_urls: Mapping[str, str] = field(default_factory=dict)
    layout: HostLayout = field(default_factory=HostLayout)


def boot_user_data(args: HostBootArgs, host_name: str, static_ip: pulumi.Input[str]) -> pulumi.Output[str]:
    """The host's user data, once its static IP, the release bucket and the log group are known."""

    def render(values: dict[str, str]) -> str:
        return render_user_data(BootPlan(args, host_name, static_ip=values["ip"], release_bucket=values["bucket"],
                                         log_group=values["group"]))

    return pulumi.Output.all(ip=static_ip, bucket=args.release_bucket, group=args.log_group).apply(render)


@dataclass(frozen=True)
class BootPlan:
    """The boot script's arguments with the values only known once resources exist."""

    args: HostBootArgs
    host_name: str
    static_ip: str
    release_bucket: str
    log_group: str

    @property
    def wheel(self) -> ReleaseArtifact:
        return self.args.release[0]

    @property
    def requirements(self) -> ReleaseArtifact:
        return self.args.release[1]

    @property
    def opa(self) -> ReleaseArtifact:
        return self.args.release[2]


def _secret_ref(plan: BootPlan, name: str) -> dict[str, str]:
    return {"secret_id": name, "region": plan.args.region}


def service_config(plan: BootPlan) -> dict[str, Any]:
    """`keyguard serve --config`: the API on loopback, its token from Secrets Manager, the store and every check
    under the state directory."""
    layout = plan.args.layout
    config: dict[str, Any] = {
        "service": {"host": "127.0.0.1", "port": plan.args.service_port,
                    "api_token_secret": _secret_ref(plan, plan.args.api_token_secret)},
        "store": {"url": f"sqlite:///{layout.state}/keyguard.db"},
        # The inspections charge the same per-IP budget as the worker (KEYGUARD_BUDGET_DIR, keyed by the EIP).
        "checks": {"interval_s": 60, "budget": {"backend": "file", "egress_ip": plan.static_ip}},
        "inventory": f"{layout.config}/inventory.yaml",
    }
    if plan.args.worker is not None:
        config["worker_state"] = f"{layout.state}/worker/live_state.json"
    return config


def inventory(plan: BootPlan) -> dict[str, Any]:
    """The stack's keys: each one's secret is its vault secret, each one bound to the host's static IP only."""
    keys = []
    for key in plan.args.keys:
        entry: dict[str, Any] = {
            "id": key.name,
            "exchange": key.exchange,
            "purpose": key.purpose,
            "credentials": {"aws_secret": _secret_ref(plan, plan.args.secret_names[key.name])},
            "allowed_ips": [{"value": plan.static_ip,
                             "reason": f"{plan.host_name} static IP (stack {plan.args.stack})"}],
            "created_at": f"{key.issued_on.isoformat()}T00:00:00Z",
        }
        if plan.args.worker is not None and plan.args.worker.key == key.name:
            entry["services"] = ["worker"]
            entry["workers"] = [f"{plan.args.layout.config}/worker.yaml"]
        keys.append(entry)
    doc: dict[str, Any] = {"hosts": [{"name": plan.host_name, "ip": plan.static_ip, "authorized": True}]}
    if plan.args.exchange_urls:
        doc["exchange_urls"] = dict(plan.args.exchange_urls)
    doc["keys"] = keys
    return doc


def worker_config(plan: BootPlan) -> dict[str, Any] | None:
    """`keyguard worker run --config`: the declared execution key, read from its vault secret at start."""
    if plan.args.worker is None:
        return None
    key = plan.args.worker.key
    return {
        "worker": key,
        "stage": plan.args.worker.stage,
        "state_dir": f"{plan.args.layout.state}/worker",
        "exchange": {"base_url": plan.args.exchange_urls.get("binance", BINANCE_SPOT_URL),
                     "aws_secret": _secret_ref(plan, plan.args.secret_names[key])},
        "limiter": {"backend": "file", "egress_ip": plan.static_ip},
        "strategy": {"orders": None},  # runs until systemd stops it
    }


def env_file(plan: BootPlan) -> str:
    return "\n".join([
        "# The environment of keyguard-service and keyguard-worker (systemd EnvironmentFile). No secret here:",
        "# the API token and the exchange keys are read from Secrets Manager when each process starts.",
        f"KEYGUARD_OPA_BIN={plan.args.layout.opa}",
        f"KEYGUARD_BUDGET_DIR={plan.args.layout.state}/budget",
        "",
    ])


def unit(plan: BootPlan, name: str, description: str, command: str, *, after: str = "",
         kill_signal: str | None = None) -> str:
    layout = plan.args.layout
    lines = [
        "[Unit]",
        f"Description={description}",
        "Wants=network-online.target",
        f"After=network-online.target{' ' + after if after else ''}",
        "",
        "[Service]",
        f"User={USER}",
        f"Group={USER}",
        f"EnvironmentFile={layout.config}/keyguard.env",
        f"ExecStart={command}",
        *([f"KillSignal={kill_signal}"] if kill_signal else []),
        # The stop signal goes to keyguard alone; it stops what it started (the managed opa) itself.
        "KillMode=mixed",
        "Restart=always",
        "RestartSec=5",
        f"StateDirectory={STATE_DIRECTORY}",
        "StateDirectoryMode=0750",
        f"LogsDirectory={LOGS_DIRECTORY}",
        f"StandardOutput=append:{layout.logs}/{name}.log",
        "StandardError=inherit",
        "UMask=0027",
        "NoNewPrivileges=true",
        "ProtectSystem=strict",
        "ProtectHome=true",
        "PrivateTmp=true",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ]
    return "\n".join(lines)


def units(plan: BootPlan) -> dict[str, str]:
    """systemd unit name -> unit file: the service always, the worker when the stack names one."""
    layout = plan.args.layout
    found = {}
    if plan.args.worker is not None:
        # Stopped like Ctrl-C: the worker finishes its cycle and publishes its last state.
        found["keyguard-worker"] = unit(plan, "worker", f"Keyguard execution worker ({plan.args.worker.key})",
                                        f"{layout.keyguard} worker run --config {layout.config}/worker.yaml",
                                        kill_signal="SIGINT")
    found["keyguard-service"] = unit(
        plan, "service", f"Keyguard compliance service (API on 127.0.0.1:{plan.args.service_port})",
        f"{layout.keyguard} serve --config {layout.config}/service.yaml",
        after="keyguard-worker.service" if plan.args.worker is not None else "")
    return found


def cloudwatch_agent_config(plan: BootPlan) -> dict[str, Any]:
    files = [{"file_path": f"{plan.args.layout.logs}/{name}.log", "log_group_name": plan.log_group,
              "log_stream_name": f"{{instance_id}}/{name}"}
             for name in (["worker"] if plan.args.worker is not None else []) + ["service"]]
    return {"logs": {"logs_collected": {"files": {"collect_list": files}}}}


def logrotate_config(plan: BootPlan) -> str:
    return f"{plan.args.layout.logs}/*.log {{\n  daily\n  rotate 7\n  missingok\n  compress\n  delaycompress\n" \
           "  copytruncate\n}\n"


def _yaml(header: str, doc: dict[str, Any]) -> str:
    # Mappings of scalars stay on one line ({secret_id: ..., region: ...}), so no `secret:` is followed by a value
    # that reads like secret material to KG-INF-110.
    return f"# {header}\n" + yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, width=200)


def files(plan: BootPlan) -> dict[str, str]:
    """Every file the boot script writes: path -> content."""
    layout = plan.args.layout
    written = {
        f"{layout.release}/keyguard.txt":
            f"keyguard @ file://{layout.release}/{plan.wheel.name} --hash=sha256:{plan.wheel.sha256}\n",
        f"{layout.config}/keyguard.env": env_file(plan),
        f"{layout.config}/service.yaml": _yaml(
            f"keyguard serve --config: written by the Pulumi program (stack {plan.args.stack}); holds no secret",
            service_config(plan)),
        f"{layout.config}/inventory.yaml": _yaml(
            f"The stack's keys (stack {plan.args.stack}); each names its Secrets Manager secret, never a value",
            inventory(plan)),
    }
    worker = worker_config(plan)
    if worker is not None:
        written[f"{layout.config}/worker.yaml"] = _yaml(
            f"keyguard worker run --config: written by the Pulumi program (stack {plan.args.stack}); holds no secret",
            worker)
    written[f"{layout.config}/cloudwatch-agent.json"] = json.dumps(cloudwatch_agent_config(plan), indent=2) + "\n"
    written[layout.path("/etc/logrotate.d/keyguard")] = logrotate_config(plan)
    for name, text in units(plan).items():
        written[f"{layout.units}/{name}.service"] = text
    return written


def render_user_data(plan: BootPlan) -> str:
    layout = plan.args.layout
    fetches = [f"fetch {a.key} {layout.release}/{a.name} {a.sha256}" for a in (plan.wheel, plan.requirements, plan.opa)]
    writes = []
    for path, text in files(plan).items():
        if HEREDOC_END in text:
            raise ValueError(f"{path} holds the heredoc terminator {HEREDOC_END}")
        writes.append(f"cat > {path} <<'{HEREDOC_END}'\n{text.rstrip(chr(10))}\n{HEREDOC_END}")
    unit_names = " ".join(units(plan))
    script = [
        "#!/bin/bash",
        f"# Keyguard execution host (stack {plan.args.stack}): install the pinned release, write its configs, start",
        "# the service and the worker. No secret here: the processes read theirs from Secrets Manager.",
        "set -euo pipefail",
        "umask 022",
        "# The static IP is associated just after the instance starts, and until then nothing gets out: every",
        "# step that needs the network is retried for a few minutes before the boot fails.",
        'retry() { for _ in $(seq 30); do "$@" && return 0; sleep 10; done; "$@"; }',
        "retry dnf install -y python3.11 python3.11-pip amazon-cloudwatch-agent logrotate",
        f"useradd --system --no-create-home --home-dir {layout.state} --shell /sbin/nologin {USER} || true",
        f"install -d -m 0755 {layout.release} {layout.config}",
        "",
        "# The release: each file must have the sha256 the Pulumi program pinned, or nothing is installed.",
        "fetch() {",
        f'  retry aws s3api get-object --region {plan.args.region} --bucket {plan.release_bucket} --key "$1" "$2" '
        ">/dev/null",
        '  echo "$3  $2" | sha256sum --check --strict -',
        "}",
        *fetches,
        "",
        *writes,
        "",
        f"python3.11 -m venv {layout.install}",
        f"retry {layout.install}/bin/pip install --no-input --require-hashes"
        f" -r {layout.release}/{plan.requirements.name} -r {layout.release}/keyguard.txt",
        f"install -m 0755 {layout.release}/{plan.opa.name} {layout.opa}",
        f'[[ $\'\\n\'"$({layout.opa} version)"$\'\\n\' == *$\'\\n\'"Version: {plan.args.opa_version}"$\'\\n\'* ]] || '
        f'{{ echo "{layout.opa} is not opa {plan.args.opa_version}" >&2; exit 1; }}',
        "",
        f"install -d -o {USER} -g {USER} -m 0750 {layout.logs}",
        f"{CLOUDWATCH_AGENT_CTL} -a fetch-config -m ec2 -s -c file:{layout.config}/cloudwatch-agent.json",
        "systemctl daemon-reload",
        f"systemctl enable --now {unit_names}",
        "",
    ]
    text = "\n".join(script)
    if len(text.encode()) > USER_DATA_LIMIT:
        raise ValueError(f"the boot script is {len(text.encode())} bytes; EC2 accepts at most {USER_DATA_LIMIT}")
    return text
