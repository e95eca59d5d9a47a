"""Shared fixtures: real servers on loopback, started once and stopped cleanly."""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from moto.server import ThreadedMotoServer

from keyguard.policy import PolicyEngine
from keyguard.tools import PROJECT_ROOT
from tests.servers import UV, AlertReceiver, fresh_postgres_database, postgres_server


@pytest.fixture(scope="session")
def policy_engine() -> Iterator[PolicyEngine]:
    """A managed `opa run --server` on 127.0.0.1 with the project's rule set loaded."""
    with PolicyEngine.managed() as engine:
        yield engine


@pytest.fixture(scope="session")
def built_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel as a user gets it (the policy bundle inside), built once per session from this checkout."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([UV, "build", "--wheel", "--quiet", "--out-dir", str(out)], cwd=PROJECT_ROOT, check=True,
                   timeout=300)
    [wheel] = out.glob("keyguard-*-py3-none-any.whl")
    return wheel


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL (Debian's package) on 127.0.0.1, initdb'd for this test session."""
    with postgres_server() as url:
        yield url


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    """moto's AWS server on 127.0.0.1 over real HTTP. moto's backends are process-global, so there is one server
    for the whole session, started with the AWS managed IAM policies the Pulumi program attaches."""
    os.environ["MOTO_IAM_LOAD_MANAGED_POLICIES"] = "true"
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials and region for boto3 against moto's server (never a real account)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")


@pytest.fixture
def pg_store_url(postgres_url: str) -> Iterator[str]:
    """A fresh database on the session's PostgreSQL for one test."""
    with fresh_postgres_database(postgres_url) as url:
        yield url


@pytest.fixture
def alert_receiver() -> Iterator[AlertReceiver]:
    with AlertReceiver() as receiver:
        yield receiver


@pytest.fixture(autouse=True)
def own_rate_budget(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test (and the processes it starts) gets its own host rate budget: a back-off one test earns must not
    hold the next test's requests. In production every process on the host shares the default directory."""
    monkeypatch.setenv("KEYGUARD_BUDGET_DIR", str(tmp_path_factory.mktemp("budget")))
