"""The host the Pulumi program builds runs Keyguard. The program renders its boot script under Pulumi mocks into a
directory (keyguard:hostRoot); the test then does what the script and systemd would do: it takes the release files
the script fetches (checking each against the sha256 the script pins), installs them the way the script does (uv
standing in for pip, with the same hash-pinned requirements) into a fresh venv, and starts each systemd unit's
ExecStart line exactly as written, with its EnvironmentFile and StateDirectory, from a directory outside the
checkout. Secrets Manager is moto's server over HTTP, holding the vault's secrets; the exchange is the sandbox
over HTTP. Nothing points at the checkout: the installed wheel brings its own policies."""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
import yaml

from keyguard.infra.capture import CapturedStack, capture_program, read_stack_config
from keyguard.sandbox import SandboxHandle, run_sandbox
from keyguard.tools import PROJECT_ROOT, opa_binary
from tests.servers import UV

from .conftest import DEV_CONFIG, SHIPPED_PROGRAM, unit_settings, written_files

pytestmark = pytest.mark.timeout(300)

REGION = "eu-west-1"
# systemd's PATH for services; nothing of the test's own environment reaches the units.
SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass
class Host:
    root: Path
    user_data: str
    files: dict[str, str]
    stack: CapturedStack
    venv: Path


@dataclass
class RunningUnit:
    name: str
    settings: dict[str, str]
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.is_file() else ""


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory, built_wheel: Path) -> dict[str, Path]:
    """The release as infra/release.sh builds it: the wheel, its locked requirements, and the pinned opa."""
    out = tmp_path_factory.mktemp("release")
    wheel = Path(shutil.copy(built_wheel, out))
    subprocess.run([UV, "export", "--frozen", "--no-dev", "--no-emit-project", "--quiet", "--output-file",
                    str(out / "requirements.txt")], cwd=PROJECT_ROOT, check=True, timeout=120)
    shutil.copy(opa_binary(), out / "opa")
    return {"keyguard:wheel": wheel, "keyguard:requirements": out / "requirements.txt",
            "keyguard:opaBinary": out / "opa"}


@pytest.fixture
def sandbox() -> Iterator[SandboxHandle]:
    with run_sandbox() as handle:
        yield handle


def render_host(root: Path, release: dict[str, Path], sandbox_url: str, config_dir: Path) -> CapturedStack:
    """The shipped program and Pulumi.dev.yaml, as a stack of its own (its secret names do not meet another test's
    in the session's moto), rendered into `root`, pointed at the sandbox."""
    stack_config = config_dir / f"Pulumi.boot{uuid.uuid4().hex[:8]}.yaml"
    shutil.copy(DEV_CONFIG, stack_config)
    overrides = {key: str(path) for key, path in release.items()}
    overrides |= {"keyguard:hostRoot": str(root), "keyguard:servicePort": "0",
                  "keyguard:exchangeUrls": json.dumps({"binance": sandbox_url})}
    return capture_program(SHIPPED_PROGRAM, read_stack_config(stack_config, PROJECT_ROOT / "Pulumi.yaml", overrides))


def only(stack: CapturedStack, type_token: str) -> dict[str, Any]:
    [found] = stack.of_type(type_token)
    return found


def install(root: Path, user_data: str, release: dict[str, Path]) -> Path:
    """The script's install steps: fetch (here: the release file the object holds) with its sha256 check, write its
    files, then its venv, pip (uv in its place, same arguments), opa and opa version lines as written."""
    by_name = {path.name: path for path in release.values()}
    fetches = re.findall(r"^fetch (\S+) (\S+) ([0-9a-f]{64})$", user_data, re.M)
    assert sorted(Path(key).name for key, _, _ in fetches) == sorted(by_name)
    for key, destination, digest in fetches:
        source = by_name[Path(key).name]
        assert hashlib.sha256(source.read_bytes()).hexdigest() == digest, f"{key} is not the file the stack pins"
        assert key == f"releases/{digest}/{source.name}"
        Path(destination).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, destination)
    for path, text in written_files(user_data).items():
        assert Path(path).is_relative_to(root), f"the boot script writes {path} outside the host root"
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text)

    [venv_line] = re.findall(r"^python3\.11 -m venv \S+$", user_data, re.M)
    [(venv, pip_args)] = re.findall(r"^retry (\S+)/bin/pip install (.+)$", user_data, re.M)
    opa_lines = [line for line in user_data.splitlines()
                 if re.match(r"^install -m 0755 \S+ \S+/bin/opa$", line) or line.startswith("[[ ")]
    assert len(opa_lines) == 2
    subprocess.run(["bash", "-c", venv_line], check=True, timeout=120)
    args = [a for a in shlex.split(pip_args) if a != "--no-input"]  # pip's no-prompt flag; uv never prompts
    subprocess.run([UV, "pip", "install", "--quiet", "--python", f"{venv}/bin/python", *args], check=True,
                   timeout=240, cwd=root)
    for line in opa_lines:
        subprocess.run(["bash", "-c", line], check=True, timeout=60)
    return Path(venv)


def env_file(path: str) -> dict[str, str]:
    """systemd's EnvironmentFile: KEY=VALUE lines; '#' lines are comments."""
    pairs = (line.split("=", 1) for line in Path(path).read_text().splitlines() if line and not line.startswith("#"))
    return {key: value for key, value in pairs}


def start_unit(root: Path, name: str, unit: str, cwd: Path, instance_role: dict[str, str]) -> RunningUnit:
    """What systemd does for these units: StateDirectory/LogsDirectory created and named in the environment, the
    EnvironmentFile read, stdout appended to the log file, ExecStart split into words and run as written."""
    settings = unit_settings(unit)
    state = root / "var/lib" / settings["StateDirectory"]
    logs = root / "var/log" / settings["LogsDirectory"]
    for directory in (state, logs):
        directory.mkdir(parents=True, exist_ok=True, mode=0o750)
    env = {"PATH": SYSTEMD_PATH, "LANG": "C.UTF-8", "HOME": str(state), "STATE_DIRECTORY": str(state),
           "LOGS_DIRECTORY": str(logs), **instance_role, **env_file(settings["EnvironmentFile"])}
    output, stderr = settings["StandardOutput"], settings["StandardError"]
    assert output.startswith("append:") and stderr == "inherit"
    log = Path(output.removeprefix("append:"))
    with log.open("ab") as sink:
        process = subprocess.Popen(shlex.split(settings["ExecStart"]), env=env, cwd=cwd, stdout=sink,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    return RunningUnit(name, settings, process, log)


def wait_for(what: str, ready: Callable[[], Any], units: list[RunningUnit], timeout_s: float = 90) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for unit in units:
            if unit.process.poll() is not None:
                raise AssertionError(f"{unit.name} exited ({unit.process.returncode}) while waiting for {what}:\n"
                                     f"{unit.output()[-4000:]}")
        value = ready()
        if value:
            return value
        time.sleep(0.2)
    logs = "\n".join(f"--- {u.name}\n{u.output()[-3000:]}" for u in units)
    raise AssertionError(f"timed out waiting for {what}\n{logs}")


def stop(unit: RunningUnit) -> int:
    """systemctl stop with KillMode=mixed: the unit's KillSignal (SIGTERM by default) to the main process, then
    SIGKILL to the whole group after a grace period."""
    assert unit.settings["KillMode"] == "mixed"
    if unit.process.poll() is None:
        unit.process.send_signal(getattr(signal, unit.settings.get("KillSignal", "SIGTERM")))
        try:
            unit.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(unit.process.pid, signal.SIGKILL)
            unit.process.wait(timeout=10)
    return unit.process.returncode


def group_alive(unit: RunningUnit) -> bool:
    """Whether any process the unit started (its process group) still runs."""
    try:
        os.killpg(unit.process.pid, 0)
    except ProcessLookupError:
        return False
    return True


def create_vault(moto_url: str, stack: CapturedStack) -> set[str]:
    """What `pulumi up` leaves in Secrets Manager: the vault's secrets, under a CMK, with no value yet."""
    kms = boto3.client("kms", region_name=REGION, endpoint_url=moto_url)
    sm = boto3.client("secretsmanager", region_name=REGION, endpoint_url=moto_url)
    key = kms.create_key(Description="stand-in for the vault key")["KeyMetadata"]["Arn"]
    names = {s["properties"]["name"] for s in stack.of_type("aws:secretsmanager/secret:Secret")}
    for name in names:
        sm.create_secret(Name=name, KmsKeyId=key)
    return names


def put_values(moto_url: str, values: dict[str, str]) -> None:
    """What the operator does after `pulumi up` (docs/infra.md): `put-secret-value` into each secret."""
    sm = boto3.client("secretsmanager", region_name=REGION, endpoint_url=moto_url)
    for name, value in values.items():
        sm.put_secret_value(SecretId=name, SecretString=value)


def test_the_host_runs_the_service_and_the_worker_from_the_pinned_release_with_secrets_from_the_vault(
        tmp_path: Path, release: dict[str, Path], sandbox: SandboxHandle, moto_url: str,
        aws_env: None) -> None:
    root, cwd = tmp_path / "host", tmp_path / "cwd"
    cwd.mkdir()
    stack = render_host(root, release, sandbox.url, tmp_path)
    user_data = only(stack, "aws:ec2/instance:Instance")["properties"]["userData"]
    venv = install(root, user_data, release)
    files = written_files(user_data)
    prefix = f"keyguard/{stack.stack}/"

    # The installed package is the wheel, not the checkout, and it finds its policies without one.
    where = subprocess.run([f"{venv}/bin/python", "-c", "import keyguard; print(keyguard.__file__)"], cwd=cwd,
                           env={"PATH": SYSTEMD_PATH}, capture_output=True, text=True, check=True).stdout
    assert Path(where.strip()).is_relative_to(venv)
    env_text = files[f"{root}/etc/keyguard/keyguard.env"]
    assert str(PROJECT_ROOT) not in user_data and "KEYGUARD_POLICY_DIR" not in env_text
    assert env_file(f"{root}/etc/keyguard/keyguard.env")["KEYGUARD_OPA_BIN"] == f"{root}/opt/keyguard/bin/opa"

    token = secrets.token_urlsafe(24)
    bot = sandbox.create_key(label="bot-exec-1", flags={"enableReading": True, "enableSpotAndMarginTrading": True},
                             ip_restrict=True, ips=["127.0.0.1"])
    # A monitoring key that can trade: the policies the wheel ships must say so (KG-KEY-103).
    monitor = sandbox.create_key(label="monitor-1", flags={"enableReading": True,
                                                           "enableSpotAndMarginTrading": True})
    values = {
        f"{prefix}bot-exec-1": json.dumps({"api_key": bot["api_key"], "secret": bot["secret"]}),
        f"{prefix}monitor-1": json.dumps({"api_key": monitor["api_key"], "secret": monitor["secret"]}),
        f"{prefix}service/api-token": token,
    }
    assert create_vault(moto_url, stack) == set(values)
    # The instance role, as the processes' boto3 finds it; moto's server stands in for the AWS endpoints.
    instance_role = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                     "AWS_ENDPOINT_URL": moto_url}

    unit_files = {Path(p).stem: text for p, text in files.items() if p.startswith(f"{root}/etc/systemd/system/")}
    assert set(unit_files) == {"keyguard-service", "keyguard-worker"}
    worker_config = yaml.safe_load(files[f"{root}/etc/keyguard/worker.yaml"])
    live_state = Path(worker_config["state_dir"]) / "live_state.json"

    # Before the operator has put the values, neither unit starts on a default: each stops, naming its secret.
    early = {name: start_unit(root, name, text, cwd, instance_role) for name, text in unit_files.items()}
    for name, unit in early.items():
        assert unit.process.wait(timeout=60) != 0, f"{name} started without its secret"
    assert f"Secrets Manager secret {prefix}service/api-token" in early["keyguard-service"].output()
    assert f"Secrets Manager secret {prefix}bot-exec-1" in early["keyguard-worker"].output()
    put_values(moto_url, values)

    running: list[RunningUnit] = []
    try:
        # systemctl enable --now: the service is ordered after the worker.
        running.append(start_unit(root, "keyguard-worker", unit_files["keyguard-worker"], cwd, instance_role))
        wait_for("the worker's live state", live_state.is_file, running)
        running.append(start_unit(root, "keyguard-service", unit_files["keyguard-service"], cwd, instance_role))
        service = running[1]
        url = wait_for("the service's address", lambda: (m := re.search(
            r"keyguard serving on (http://127\.0\.0\.1:\d+)", service.output())) and m.group(1), running)
        auth = {"Authorization": f"Bearer {token}"}

        assert httpx.get(f"{url}/health", timeout=10).json().keys() == {"status"}
        assert httpx.get(f"{url}/api/findings", headers={"Authorization": "Bearer not-the-token-at-all"},
                         timeout=10).status_code == 401
        health = httpx.get(f"{url}/health", headers=auth, timeout=10).json()
        assert {scope: check["ok"] for scope, check in health["checks"].items()} == {"keys": True, "execution": True}
        assert health["policy"]["modules"] > 0
        runs = httpx.get(f"{url}/api/checks", headers=auth, timeout=10).json()
        assert {"keys", "execution"} <= {r["scope"] for r in runs}
        findings = httpx.get(f"{url}/api/findings", headers=auth, timeout=10).json()
        assert ("KG-KEY-103", "binance/monitor-1") in {(f["rule_id"], f["resource"]) for f in findings}

        # The worker is up: it trades on paper with the vault's key and keeps publishing its heartbeat.
        first = json.loads(live_state.read_text())
        assert (first["worker"], first["config"]["stage"]) == ("bot-exec-1", "paper")
        assert first["golive"]["key_permissions"]["trade"] is True  # read at the exchange with the vault's key
        wait_for("a newer heartbeat", lambda: json.loads(live_state.read_text())["state"]["heartbeat_at"]
                 != first["state"]["heartbeat_at"], running, timeout_s=30)

        exits = {unit.name: stop(unit) for unit in reversed(running)}
        assert exits == {"keyguard-service": 0, "keyguard-worker": 0}
        # Each stopped what it started (the service its opa): systemd would have nothing left to kill.
        wait_for("the units' processes to end", lambda: not any(group_alive(u) for u in running), [], timeout_s=10)
    finally:
        for unit in running:
            if group_alive(unit):
                os.killpg(unit.process.pid, signal.SIGKILL)
            if unit.process.poll() is None:
                unit.process.wait(timeout=10)

    logs = {unit.name: unit.output() for unit in running}
    assert "Traceback" not in logs["keyguard-service"] + logs["keyguard-worker"]
    state = root / "var/lib/keyguard"
    for secret in (token, bot["secret"], monitor["secret"]):
        for text in (user_data, *logs.values(), *files.values()):
            assert secret not in text
        assert secret.encode() not in (state / "keyguard.db").read_bytes()
    # Everything the processes keep is under the StateDirectory; nothing was written where they were started.
    assert list(cwd.iterdir()) == []
    assert (state / "worker" / "journal.db").is_file()
