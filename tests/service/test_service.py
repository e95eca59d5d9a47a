"""The running service over real HTTP: checks on a schedule, drift, last-good state on failure, auth, no leaks."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from tests.servers import AlertReceiver
from tests.service.live import delivered_titles

from keyguard.checks.scheduler import Collector
from keyguard.config import load_settings
from keyguard.errors import ConfigError
from keyguard.runtime import RunningService, document_collector, run_service
from keyguard.tools import POLICY_DIR, PROJECT_ROOT

TOKEN = "test-token-0123456789abcdef"
VENDORS_OK = {"kind": "vendors", "vendors": [{
    "name": "tradebot-cloud", "requires_withdraw": False, "supports_ip_restriction": True, "audit_log": True,
    "instant_revocation": True, "two_factor": True, "incidents_disclosed": True}]}


@pytest.fixture
def vendors_file(tmp_path: Path) -> Path:
    path = tmp_path / "vendors.yaml"
    path.write_text(yaml.safe_dump(VENDORS_OK))
    return path


@pytest.fixture
def service(tmp_path: Path, vendors_file: Path, alert_receiver: AlertReceiver) -> Iterator[RunningService]:
    settings = load_settings(
        store={"url": f"sqlite:///{tmp_path}/kg.db"}, service={"port": 0}, checks={"interval_s": 3600},
        alerts={"routes": [{"url": alert_receiver.url}]},
    )
    with run_service(settings, [document_collector(vendors_file)], TOKEN) as running:
        yield running


def api(running: RunningService, method: str, path: str) -> httpx.Response:
    return httpx.request(method, running.url + path, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)


def set_vendor(path: Path, **facts: object) -> None:
    doc = json.loads(json.dumps(VENDORS_OK))
    doc["vendors"][0].update(facts)
    path.write_text(yaml.safe_dump(doc))


def test_api_requires_the_bearer_token(service: RunningService) -> None:
    assert httpx.get(service.url + "/api/findings").status_code == 401
    bad = httpx.get(service.url + "/api/findings", headers={"Authorization": "Bearer wrong-token-000000000"})
    assert bad.status_code == 401
    assert httpx.get(service.url + "/health").json()["status"] == "ok"


def test_drift_is_found_alerted_once_and_resolved(service: RunningService, vendors_file: Path,
                                                   alert_receiver: AlertReceiver) -> None:
    assert api(service, "GET", "/api/findings").json() == []
    set_vendor(vendors_file, requires_withdraw=True)
    api(service, "POST", "/api/checks/run")
    api(service, "POST", "/api/checks/run")  # still failing: no second alert
    open_findings = api(service, "GET", "/api/findings").json()
    assert [f["rule_id"] for f in open_findings] == ["KG-VEN-101"]
    assert open_findings[0]["severity"] == "critical" and open_findings[0]["remediation"]
    set_vendor(vendors_file)
    api(service, "POST", "/api/checks/run")
    # One clean observation is not enough (resolve_after defaults to 2): a flapping source never pages twice.
    assert [f["rule_id"] for f in api(service, "GET", "/api/findings").json()] == ["KG-VEN-101"]
    api(service, "POST", "/api/checks/run")
    assert api(service, "GET", "/api/findings").json() == []
    resolved = api(service, "GET", "/api/findings?status=resolved").json()
    assert [f["rule_id"] for f in resolved] == ["KG-VEN-101"]
    titles = delivered_titles(service.url, TOKEN, alert_receiver)
    assert [t.split()[0] for t in titles] == ["NEW", "RESOLVED"]


def test_broken_input_keeps_last_good_findings_and_raises_its_own(service: RunningService, vendors_file: Path,
                                                                 alert_receiver: AlertReceiver) -> None:
    set_vendor(vendors_file, requires_withdraw=True)
    api(service, "POST", "/api/checks/run")
    vendors_file.write_text("kind: vendors\nvendors: [unclosed\n")
    [result] = api(service, "POST", "/api/checks/run").json()
    assert result["ok"] is False and "invalid YAML" in result["error"]
    ids = sorted(f["rule_id"] for f in api(service, "GET", "/api/findings").json())
    assert ids == ["KG-SVC-001", "KG-VEN-101"]  # the vendor finding is not resolved by a blind spot
    assert httpx.get(service.url + "/health").json()["status"] == "degraded"
    set_vendor(vendors_file, requires_withdraw=True)
    for _ in range(2):
        api(service, "POST", "/api/checks/run")
    assert [f["rule_id"] for f in api(service, "GET", "/api/findings").json()] == ["KG-VEN-101"]
    assert httpx.get(service.url + "/health").json()["status"] == "ok"
    assert "KG-SVC-001" in " ".join(delivered_titles(service.url, TOKEN, alert_receiver))


def test_wrong_type_in_checked_document_is_a_finding_not_a_crash(service: RunningService,
                                                                  vendors_file: Path) -> None:
    set_vendor(vendors_file, audit_log="sometimes")
    [result] = api(service, "POST", "/api/checks/run").json()
    assert result["ok"] is False and "vendors/0/audit_log" in result["error"]
    assert [f["rule_id"] for f in api(service, "GET", "/api/findings").json()] == ["KG-SVC-001"]


def test_rules_checks_and_playbook_endpoints(service: RunningService) -> None:
    rules = api(service, "GET", "/api/rules").json()
    assert any(r["id"] == "KG-KEY-101" for r in rules)
    checks = api(service, "GET", "/api/checks").json()
    assert checks and checks[0]["scope"].startswith("file:")
    playbook = api(service, "GET", "/api/playbooks/KG-VEN-101").json()
    assert playbook["contain"] and playbook["key"] == "KG-VEN-"
    assert api(service, "GET", "/api/playbooks/KG-NOPE-1").status_code == 404


def test_collector_exception_is_reported_not_fatal(tmp_path: Path) -> None:
    def explode() -> dict:
        raise RuntimeError("exchange adapter bug")

    settings = load_settings(store={"url": f"sqlite:///{tmp_path}/kg.db"}, service={"port": 0})
    with run_service(settings, [Collector("keys", explode)], TOKEN) as running:
        findings = api(running, "GET", "/api/findings").json()
    assert [(f["rule_id"], f["resource"]) for f in findings] == [("KG-SVC-001", "keys")]
    assert "exchange adapter bug" in findings[0]["message"]


def test_settings_errors_name_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "keyguard.yaml"
    bad.write_text("service:\n  port: lots\n")
    with pytest.raises(ConfigError, match=r"keyguard.yaml:2: field service.port"):
        load_settings(bad)
    bad.write_text("stoore: {}\n")
    with pytest.raises(ConfigError, match="field stoore: unknown field; expected one of: .*store"):
        load_settings(bad)


def test_demo_shows_findings_then_the_drift_alert_and_never_a_secret(tmp_path: Path) -> None:
    state = tmp_path / "demo"
    proc = subprocess.Popen(
        [sys.executable, "-m", "keyguard.cli", "demo", "--duration", "34", "--interval", "2", "--runaway-after", "4",
         "--drift-after", "16", "--port", "0", "--state-dir", str(state)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=PROJECT_ROOT,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    api_answer = None
    for line in proc.stdout:
        lines.append(line)
        match = re.search(r"Bearer (\S+)' (http://127\.0\.0\.1:\d+)/api/findings", line)
        if match:
            token, url = match.groups()
            time.sleep(3)
            api_answer = httpx.get(f"{url}/api/findings", headers={"Authorization": f"Bearer {token}"}).json()
    assert proc.wait(timeout=60) == 0
    output = "".join(lines)
    assert "NEW CRITICAL KG-KEY-101 on binance/legacy-hedge" in output
    assert "NEW CRITICAL KG-KEY-101 on binance/bot-exec" in output  # the drift, caught live
    assert output.index("enabled withdrawals on bot-exec") < output.index("KG-KEY-101 on binance/bot-exec")
    # ... and contained at once: the gateway's kill switch engaged, so both bots' orders stop.
    assert "CONTAINED CRITICAL KG-KEY-101 on binance/bot-exec" in output
    assert json.loads((state / "gateway" / "killswitch.json").read_text())["engaged"] is True
    assert "bot steady  refused by the gateway: KEYGUARD_KILL_SWITCH" in output
    # The runaway bot: refused by its cap, then held by its own switch, and the page says why; steady trades on.
    runaway = output.index("bot runner turns runaway")
    assert output.index("bot runner  refused by the gateway: KEYGUARD_MAX_ORDER_NOTIONAL") > runaway
    assert output.index("bot runner  refused by the gateway: KEYGUARD_KILL_SWITCH") > runaway
    assert re.search(r"NEW HIGH KG-EXE-208 on demo-gateway/runner\n.*held by its kill switch \(runaway", output)
    assert re.search(r"bot steady  (buy|sell) 0.001 BTC  closed", output[runaway:])
    assert api_answer and any(f["rule_id"] == "KG-KEY-101" for f in api_answer)
    secret = json.loads((state / "secrets" / "legacy-hedge.json").read_text())["secret"]
    assert secret not in output
    assert secret.encode() not in (state / "keyguard.db").read_bytes()
    assert "Traceback" not in output


def test_serve_runs_from_a_config_file_and_stops_cleanly_on_sigterm(tmp_path: Path, vendors_file: Path) -> None:
    config = tmp_path / "keyguard.yaml"
    config.write_text(yaml.safe_dump({
        "service": {"port": 0}, "store": {"url": f"sqlite:///{tmp_path}/serve.db"},
        "checks": {"interval_s": 3600}, "documents": [vendors_file.name],
    }))
    set_vendor(vendors_file, two_factor=False)
    env = {**os.environ, "KEYGUARD_API_TOKEN": TOKEN}
    proc = subprocess.Popen([sys.executable, "-m", "keyguard.cli", "serve", "--config", str(config)],
                            stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=PROJECT_ROOT)
    assert proc.stderr is not None
    url = None
    for line in proc.stderr:
        match = re.search(r"serving on (http://127\.0\.0\.1:\d+)", line)
        if match:
            url = match.group(1)
            break
    assert url, "serve did not report its URL"
    findings = httpx.get(f"{url}/api/findings", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert [f["rule_id"] for f in findings] == ["KG-VEN-105"]
    # Stopped the way a tired operator (or systemd after a timeout) does it: SIGTERM, then SIGTERM again at once.
    proc.send_signal(signal.SIGTERM)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0


def test_serve_without_a_token_is_a_clear_error(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "KEYGUARD_API_TOKEN"}
    proc = subprocess.run([sys.executable, "-m", "keyguard.cli", "serve"], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "set KEYGUARD_API_TOKEN" in proc.stderr


def test_example_service_settings_load() -> None:
    settings = load_settings(PROJECT_ROOT / "examples" / "service.yaml")
    assert settings.inventory == PROJECT_ROOT / "examples" / "keyguard.yaml"
    assert settings.alerts.routes[0].min_severity == "low"


def test_policy_reload_refuses_a_broken_bundle_and_keeps_serving_the_last_good_one(tmp_path: Path,
                                                                                   vendors_file: Path) -> None:
    policies = tmp_path / "policies"
    shutil.copytree(POLICY_DIR, policies)
    set_vendor(vendors_file, requires_withdraw=True)
    settings = load_settings(store={"url": f"sqlite:///{tmp_path}/kg.db"}, service={"port": 0},
                             checks={"interval_s": 3600}, opa={"policy_dir": str(policies)})
    with run_service(settings, [document_collector(vendors_file)], TOKEN) as running:
        (policies / "vendors" / "broken.rego").write_text("package keyguard.vendors.broken\n\ndeny contains")
        answer = api(running, "POST", "/api/policy/reload")
        assert answer.status_code == 422 and "broken.rego:" in answer.json()["error"]
        [result] = api(running, "POST", "/api/checks/run").json()
        assert result["ok"] and result["findings"] == 1  # still judged by the last good bundle
        (policies / "vendors" / "broken.rego").unlink()
        assert api(running, "POST", "/api/policy/reload").json()["reloaded"] is True


def test_sighup_with_a_broken_bundle_keeps_serving_on_the_last_good_one(tmp_path: Path, vendors_file: Path) -> None:
    policies = tmp_path / "policies"
    shutil.copytree(POLICY_DIR, policies)
    config = tmp_path / "keyguard.yaml"
    config.write_text(yaml.safe_dump({
        "service": {"port": 0}, "store": {"url": f"sqlite:///{tmp_path}/hup.db"}, "checks": {"interval_s": 3600},
        "documents": [vendors_file.name], "opa": {"policy_dir": str(policies)},
    }))
    env = {**os.environ, "KEYGUARD_API_TOKEN": TOKEN}
    proc = subprocess.Popen([sys.executable, "-m", "keyguard.cli", "serve", "--config", str(config)],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env, cwd=PROJECT_ROOT)
    assert proc.stderr is not None
    url = next(m.group(1) for line in proc.stderr if (m := re.search(r"serving on (http://127\.0\.0\.1:\d+)", line)))
    try:
        (policies / "vendors" / "broken.rego").write_text("package keyguard.vendors.broken\n\ndeny contains")
        proc.send_signal(signal.SIGHUP)
        refused = next(line for line in proc.stderr if "policy reload refused" in line)
        assert "broken.rego" in refused + proc.stderr.readline()  # the error names the file (next line)
        run = httpx.post(f"{url}/api/checks/run", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
        assert run.status_code == 200 and run.json()[0]["ok"]  # still judged by the last good bundle
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
