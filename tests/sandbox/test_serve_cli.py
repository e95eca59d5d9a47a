"""`keyguard sandbox serve` starts a sandbox a stock client can talk to and stops on Ctrl-C."""

from __future__ import annotations

import re
import signal
import subprocess
import sys

import httpx

from keyguard.errors import ToolError


def test_serve_prints_its_url_and_admin_token_and_answers_until_interrupted() -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", "from keyguard.sandbox.cli import app; app()", "serve", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={"COLUMNS": "200", "PATH": ""},
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        second = process.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:\d+", first)
        if match is None:
            stderr = process.stderr.read() if process.stderr else ""
            raise ToolError(f"sandbox serve printed {first!r}; stderr: {stderr}")
        url = match.group(0)
        token = second.rsplit("token:", 1)[1].strip()
        assert httpx.get(f"{url}/api/v3/time").json()["serverTime"] > 0
        assert httpx.get(f"{url}/admin/keys", headers={"Authorization": f"Bearer {token}"}).json() == []
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=15)
    assert process.returncode == 0
