"""Real servers for tests, on loopback: PostgreSQL from Debian's package and an HTTP alert receiver."""

from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# `uv run` names itself in UV; the tests that build the wheel or install it call the same uv.
UV = os.environ.get("UV") or shutil.which("uv") or "uv"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def postgres_server() -> Iterator[str]:
    """initdb + pg_ctl start in a temp dir (as the postgres user when running as root); yields a URL."""
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))
    if not bins:
        raise RuntimeError("PostgreSQL server binaries not found: run `make setup` (installs Debian's postgresql)")
    bindir = bins[-1]
    root = tempfile.mkdtemp(prefix="keyguard-pg-")
    data, sock = os.path.join(root, "data"), os.path.join(root, "sock")
    os.makedirs(sock)
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(sock, "postgres")
        os.chmod(root, 0o755)  # noqa: S103 - the postgres user must traverse it
        as_user = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    subprocess.run([*as_user, f"{bindir}/initdb", "-D", data, "-A", "trust", "-U", "keyguard", "--no-sync",
                    "-E", "UTF8"], check=True, capture_output=True)
    opts = (f"-c listen_addresses=127.0.0.1 -p {port} -k {sock} -c fsync=off -c full_page_writes=off "
            "-c timezone=UTC")
    subprocess.run([*as_user, f"{bindir}/pg_ctl", "-D", data, "-o", opts, "-l", os.path.join(root, "log"), "-w",
                    "start"], check=True, capture_output=True)
    try:
        yield f"postgresql://keyguard@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, f"{bindir}/pg_ctl", "-D", data, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


class AlertReceiver:
    """An HTTP receiver on loopback standing in for a webhook, PagerDuty or Opsgenie: records every request
    (method, path, query, headers, JSON body) and the bodies it accepted. `fail_next` answers 500 that many
    times, `delay_s` answers late, `down()` refuses connections until `up()` (same port)."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.requests: list[dict[str, Any]] = []
        self.fail_next = 0
        self.delay_s = 0.0
        self.answer: dict[str, Any] = {"result": "Request will be processed", "requestId": "req-1"}
        self._lock = threading.Lock()
        self._port = 0
        self.server: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                path, _, query = self.path.partition("?")
                body = json.loads(raw or b"{}")
                if receiver.delay_s:
                    time.sleep(receiver.delay_s)
                with receiver._lock:
                    receiver.requests.append({"method": "POST", "path": path, "query": query,
                                              "headers": dict(self.headers), "body": body})
                    failing = receiver.fail_next > 0
                    if failing:
                        receiver.fail_next -= 1
                    else:
                        receiver.received.append(body)
                answer = json.dumps(receiver.answer).encode()
                self.send_response(500 if failing else 202)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self._port}/alerts"

    def up(self) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", self._port), self._handler())
        self.server.daemon_threads = True
        self._port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def down(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def __enter__(self) -> AlertReceiver:
        self.up()
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()


@contextmanager
def fresh_postgres_database(server_url: str) -> Iterator[str]:
    """A database of its own on the session's PostgreSQL, so tests never see each other's schema or rows."""
    import uuid

    from sqlalchemy import create_engine

    name = f"kg_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server_url.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield f"{server_url.rsplit('/', 1)[0]}/{name}"
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()
