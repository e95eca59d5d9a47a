"""Access and audit over real HTTP: tokens with roles kept in the store (created by the CLI as a user would), the
audit log of operator actions, the run rate limit, what /health tells a stranger, and no token ever leaking."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from keyguard.api.access import create_token, revoke_token, token_digest
from keyguard.config import load_settings
from keyguard.runtime import RunningService, document_collector, run_service
from keyguard.tools import POLICY_DIR, PROJECT_ROOT

ENV_TOKEN = "env-token-0123456789abcdef"
VENDORS_OK = {"kind": "vendors", "vendors": [{
    "name": "tradebot-cloud", "requires_withdraw": False, "supports_ip_restriction": True, "audit_log": True,
    "instant_revocation": True, "two_factor": True, "incidents_disclosed": True}]}


@dataclass
class Deployment:
    """A running service and the keyguard.yaml it was started from; the CLI reaches the same store through it."""

    running: RunningService
    config: Path

    def call(self, method: str, path: str, token: str | None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.request(method, self.running.url + path, headers=headers, timeout=60)

    def audit(self, token: str = ENV_TOKEN, **filters: str) -> list[dict[str, Any]]:
        answer = self.call("GET", "/api/audit?" + "&".join(f"{k}={v}" for k, v in filters.items()), token)
        assert answer.status_code == 200, answer.text
        return list(answer.json())

    def token(self, name: str, role: str) -> str:
        return create_token(self.running.store, name, role)


def write_config(tmp_path: Path, store_url: str, vendors: dict[str, Any] = VENDORS_OK,
                 opa: dict[str, Any] | None = None, **service: Any) -> Path:
    (tmp_path / "vendors.yaml").write_text(yaml.safe_dump(vendors))
    config = tmp_path / "keyguard.yaml"
    config.write_text(yaml.safe_dump({
        "service": {"port": 0, **service}, "store": {"url": store_url}, "checks": {"interval_s": 3600},
        "documents": ["vendors.yaml"], "opa": opa or {},
    }))
    return config


@contextmanager
def deployed(config: Path) -> Iterator[Deployment]:
    settings = load_settings(config)
    with run_service(settings, [document_collector(p) for p in settings.documents], ENV_TOKEN) as running:
        yield Deployment(running, config)


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    with deployed(write_config(tmp_path, f"sqlite:///{tmp_path}/kg.db")) as running:
        yield running


def keyguard(*args: str) -> subprocess.CompletedProcess[str]:
    """The `keyguard` command, run as a user would run it."""
    return subprocess.run([sys.executable, "-m", "keyguard.cli", *args], capture_output=True, text=True,
                          cwd=PROJECT_ROOT, timeout=120)


def test_viewer_reads_findings_but_is_refused_actions_and_each_refusal_is_audited(deployment: Deployment) -> None:
    viewer = deployment.token("dashboard", "viewer")
    assert deployment.call("GET", "/api/findings", viewer).json() == []
    assert deployment.call("GET", "/api/rules", viewer).status_code == 200
    run = deployment.call("POST", "/api/checks/run", viewer)
    reload = deployment.call("POST", "/api/policy/reload", viewer)
    assert (run.status_code, reload.status_code) == (403, 403)
    assert "needs an operator token" in run.json()["detail"]
    refused = [(e["actor"], e["role"], e["action"], e["result"]) for e in deployment.audit(viewer)]
    assert refused == [("dashboard", "viewer", "policy.reload", "refused"),
                       ("dashboard", "viewer", "checks.run", "refused")]
    assert [r["scope"] for r in deployment.call("GET", "/api/checks", viewer).json()] == ["file:vendors.yaml"]


def test_operator_runs_checks_and_the_audit_log_says_who_did_what_and_how_it_ended(deployment: Deployment) -> None:
    operator = deployment.token("on-call", "operator")
    [result] = deployment.call("POST", "/api/checks/run", operator).json()
    assert result["scope"] == "file:vendors.yaml" and result["ok"]
    assert deployment.call("POST", "/api/policy/reload", ENV_TOKEN).json()["reloaded"] is True
    entries = deployment.audit(operator)
    assert [(e["actor"], e["role"], e["action"], e["target"], e["result"]) for e in entries] == [
        ("env", "operator", "policy.reload", "policy", "ok"),
        ("on-call", "operator", "checks.run", "checks", "ok"),
    ]
    assert entries[1]["detail"] == "ran file:vendors.yaml" and entries[1]["at"]
    assert [e["action"] for e in deployment.audit(operator, actor="on-call")] == ["checks.run"]


def test_a_reload_that_fails_is_audited_as_failed_with_the_broken_file(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    shutil.copytree(POLICY_DIR, policies)
    config = write_config(tmp_path, f"sqlite:///{tmp_path}/kg.db", opa={"policy_dir": str(policies)})
    with deployed(config) as deployment:
        (policies / "vendors" / "broken.rego").write_text("package keyguard.vendors.broken\n\ndeny contains")
        assert deployment.call("POST", "/api/policy/reload", ENV_TOKEN).status_code == 422
        [entry] = deployment.audit(action="policy.reload")
    assert (entry["actor"], entry["result"]) == ("env", "failed") and "broken.rego" in entry["detail"]


def test_a_revoked_token_is_refused_at_its_next_request_without_a_restart(deployment: Deployment) -> None:
    old = deployment.token("ci-2026-01", "operator")
    assert deployment.call("GET", "/api/findings", old).status_code == 200
    new = deployment.token("ci-2026-02", "operator")  # rotation: the new token first, then revoke the old one
    revoke_token(deployment.running.store, "ci-2026-01")
    refused = deployment.call("GET", "/api/findings", old)
    assert refused.status_code == 401 and "revoked" in refused.json()["detail"]
    assert deployment.call("POST", "/api/checks/run", old).status_code == 401
    assert deployment.call("GET", "/api/findings", new).status_code == 200


def test_token_made_by_the_cli_works_on_the_running_service_and_is_revoked_by_the_cli(
    deployment: Deployment,
) -> None:
    config = str(deployment.config)
    created = keyguard("token", "create", "--config", config, "--name", "ci", "--role", "operator")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert "shown only now" in created.stderr
    assert deployment.call("POST", "/api/checks/run", token).status_code == 200
    assert [(e["actor"], e["action"], e["result"]) for e in deployment.audit(token, actor="ci")] == [
        ("ci", "checks.run", "ok")]

    listed = json.loads(keyguard("token", "list", "--config", config, "--json").stdout)
    assert [(t["name"], t["role"], t["revoked_at"]) for t in listed] == [("ci", "operator", None)]
    assert listed[0]["created_at"] and listed[0]["last_used_at"]

    revoked = keyguard("token", "revoke", "--config", config, "--name", "ci")
    assert revoked.returncode == 0 and "revoked" in revoked.stderr
    assert deployment.call("GET", "/api/findings", token).status_code == 401
    # The token's lifecycle is audited too, under the login that ran the command.
    lifecycle = [(e["action"], e["target"], e["role"]) for e in deployment.audit() if e["action"].startswith("token.")]
    assert lifecycle == [("token.revoke", "ci", "cli"), ("token.create", "ci", "cli")]


def test_bad_token_commands_are_clear_errors_with_exit_code_2(deployment: Deployment) -> None:
    config = str(deployment.config)
    deployment.token("dashboard", "viewer")
    cases = {
        ("create", "--name", "root", "--role", "admin"): "role 'admin' is not known: use viewer or operator",
        ("create", "--name", "dashboard", "--role", "viewer"): "a token named 'dashboard' already exists",
        ("create", "--name", "env", "--role", "operator"): "'env' is reserved for the environment token",
        ("revoke", "--name", "nobody"): "no token named 'nobody'",
    }
    for args, message in cases.items():
        answer = keyguard("token", *args, "--config", config)
        assert answer.returncode == 2, (args, answer.stderr)
        assert message in " ".join(answer.stderr.split()) and "Traceback" not in answer.stderr
        assert answer.stdout == ""  # no token printed for a refused create


def test_token_and_its_hash_never_reach_cli_output_api_answers_logs_or_the_audit_table(
    deployment: Deployment, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    config = str(deployment.config)
    created = keyguard("token", "create", "--config", config, "--name", "canary", "--role", "viewer")
    token = created.stdout.strip()
    digest = token_digest(token)
    answers = [
        deployment.call("GET", "/api/findings", token),
        deployment.call("GET", "/health", token),
        deployment.call("POST", "/api/checks/run", token),  # refused: a viewer
        deployment.call("POST", "/api/policy/reload", token),
        deployment.call("GET", "/api/audit", token),
        deployment.call("GET", "/api/findings", token + "x"),  # a near miss
    ]
    assert [a.status_code for a in answers] == [200, 200, 403, 403, 200, 401]
    listing = keyguard("token", "list", "--config", config)
    listing_json = keyguard("token", "list", "--config", config, "--json")
    assert "canary" in listing.stdout and "canary" in listing_json.stdout
    seen = [a.text for a in answers] + [listing.stdout, listing.stderr, listing_json.stdout, listing_json.stderr,
                                        created.stderr, caplog.text]
    for text in seen:
        assert token not in text and digest not in text
    audit_rows = deployment.audit()
    assert audit_rows and not any(token in json.dumps(r) or digest in json.dumps(r) for r in audit_rows)
    # The store keeps the digest (in api_tokens) and never the token, in the database or its write-ahead log.
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("kg.db*"))
    assert token.encode() not in stored and digest.encode() in stored


def test_health_without_a_token_says_only_ok_or_degraded(tmp_path: Path) -> None:
    broken = {"kind": "vendors", "vendors": "not a list"}
    with deployed(write_config(tmp_path, f"sqlite:///{tmp_path}/kg.db", vendors=broken)) as deployment:
        assert deployment.call("GET", "/health", None).json() == {"status": "degraded"}
        detail = deployment.call("GET", "/health", deployment.token("dashboard", "viewer")).json()
        assert detail["status"] == "degraded" and detail["checks"]["file:vendors.yaml"]["ok"] is False
        assert deployment.call("GET", "/health", "not-a-token-0123456789").status_code == 401


def test_check_runs_over_the_rate_limit_answer_429_with_retry_after_and_are_audited(tmp_path: Path) -> None:
    config = write_config(tmp_path, f"sqlite:///{tmp_path}/kg.db", run_rate_per_minute=2)
    with deployed(config) as deployment:
        operator = deployment.token("on-call", "operator")
        statuses = [deployment.call("POST", "/api/checks/run", operator).status_code for _ in range(2)]
        excess = deployment.call("POST", "/api/checks/run", operator)
        assert statuses == [200, 200] and excess.status_code == 429
        assert 1 <= int(excess.headers["Retry-After"]) <= 60
        assert "run_rate_per_minute" in excess.json()["detail"]
        assert deployment.call("POST", "/api/checks/run", ENV_TOKEN).status_code == 200  # the limit is per token
        [refusal] = deployment.audit(result="refused")
        assert (refusal["actor"], refusal["action"]) == ("on-call", "checks.run")
        assert refusal["detail"].startswith("rate limit: 2 runs per minute per token")


def test_openapi_docs_are_served_only_when_enabled(tmp_path: Path, deployment: Deployment) -> None:
    for path in ("/docs", "/redoc", "/openapi.json"):
        assert deployment.call("GET", path, ENV_TOKEN).status_code == 404
    enabled = tmp_path / "enabled"
    enabled.mkdir()
    with deployed(write_config(enabled, f"sqlite:///{enabled}/kg.db", openapi=True)) as documented:
        assert documented.call("GET", "/docs", None).status_code == 200
        assert "/api/audit" in documented.call("GET", "/openapi.json", None).json()["paths"]


def test_replicas_sharing_postgres_honour_a_new_token_and_its_revocation_on_every_replica(
    tmp_path: Path, pg_store_url: str
) -> None:
    config = write_config(tmp_path, pg_store_url)
    with ExitStack() as stack:
        replicas = [stack.enter_context(deployed(config)) for _ in range(2)]
        token = replicas[0].token("dashboard", "viewer")
        assert [r.call("GET", "/api/findings", token).status_code for r in replicas] == [200, 200]
        revoke_token(replicas[1].running.store, "dashboard")
        assert [r.call("GET", "/api/findings", token).status_code for r in replicas] == [401, 401]
