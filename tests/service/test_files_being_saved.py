"""A declared file saved while the service checks it: an editor truncates the file and then writes it, and a check
that reads in between must not page the person on call for a failed check. A file that stays broken still does."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import yaml
from tests.servers import AlertReceiver
from tests.service.live import wait_for

from keyguard.config import load_settings
from keyguard.policy.documents import load_document
from keyguard.runtime import document_collector, read_settled, run_service

TOKEN = "test-token-0123456789abcdef"
VENDOR = {"name": "tradebot-cloud", "requires_withdraw": False, "supports_ip_restriction": True, "audit_log": True,
          "instant_revocation": True, "two_factor": True, "incidents_disclosed": True}
CONTENT = yaml.safe_dump({"kind": "vendors", "vendors": [VENDOR]})


def save_like_an_editor(path: Path, content: str, gap_s: float) -> None:
    """Truncate, then write the new content `gap_s` later (as nano or an IDE saving over the file does)."""
    with path.open("w") as out:
        out.flush()
        time.sleep(gap_s)
        out.write(content)


def test_a_check_that_reads_a_file_mid_save_waits_for_the_save_and_pages_nobody(
        tmp_path: Path, alert_receiver: AlertReceiver) -> None:
    vendors = tmp_path / "vendors.yaml"
    vendors.write_text(CONTENT)
    settings = load_settings(store={"url": f"sqlite:///{tmp_path / 'kg.db'}"}, service={"port": 0},
                             checks={"interval_s": 0.05}, alerts={"routes": [{"url": alert_receiver.url}]})
    with run_service(settings, [document_collector(vendors)], TOKEN):
        for _ in range(15):  # 15 saves, each leaving the file empty for 0.1 s, checks every 0.05 s meanwhile
            save_like_an_editor(vendors, CONTENT, 0.1)
            time.sleep(0.05)
        time.sleep(1.0)
        assert [m["title"] for m in alert_receiver.received] == [], "a save in progress paged someone"

        # A file that stays broken is the file's own fault: it is still reported, and paged.
        vendors.write_text("kind: vendors\nvendors: [\n")
        titles = wait_for(lambda: [m["title"] for m in alert_receiver.received], timeout_s=20)
    assert titles == ["[keyguard] NEW HIGH KG-SVC-001 on file:vendors.yaml"]


def test_a_writer_racing_the_reader_is_read_once_it_has_written(tmp_path: Path) -> None:
    path = tmp_path / "vendors.yaml"
    path.write_text("")
    writer = threading.Timer(0.3, lambda: path.write_text(CONTENT))
    writer.start()
    try:
        assert read_settled(path, load_document)["vendors"][0]["name"] == "tradebot-cloud"
    finally:
        writer.join()
