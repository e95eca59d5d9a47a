"""Every rule someone can be paged for has a playbook that starts with containment, and the alert points at it."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime

import pytest

from keyguard.checks.scheduler import CHECK_FAILED_RULE
from keyguard.checks.transitions import Transition, alert_for
from keyguard.errors import ConfigError
from keyguard.incidents import load_playbooks, playbook_for
from keyguard.policy.catalogue import load_rules
from keyguard.store.models import FindingRecord
from keyguard.tools import POLICY_DIR, PROJECT_ROOT


def test_every_rule_in_the_catalogue_and_the_service_rule_has_a_playbook() -> None:
    rule_ids = [r["id"] for r in load_rules(POLICY_DIR)] + [CHECK_FAILED_RULE]
    missing = []
    for rule_id in rule_ids:
        try:
            book = playbook_for(rule_id)
        except ConfigError:
            missing.append(rule_id)
            continue
        assert book.contain, f"{rule_id}: a playbook must start with containment steps"
    assert missing == []


def test_most_specific_playbook_wins() -> None:
    assert playbook_for("KG-EXE-206").key == "KG-EXE-206"
    assert playbook_for("KG-EXE-203").key == "KG-EXE-2"
    assert playbook_for("KG-EXE-101").key == "KG-EXE-"
    assert playbook_for("KG-KEY-101").key == "KG-KEY-101"
    assert playbook_for("KG-KEY-105").key == "KG-KEY-"


def test_unknown_rule_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="no playbook for rule 'KG-NOPE-1'"):
        playbook_for("KG-NOPE-1")


def test_malformed_playbook_file_names_the_entry(tmp_path) -> None:
    bad = tmp_path / "playbooks.yaml"
    bad.write_text("playbooks:\n  KG-X-:\n    title: t\n    contain: []\n")
    with pytest.raises(ConfigError, match="playbook KG-X-"):
        load_playbooks(bad)


def test_alert_text_points_at_the_playbook() -> None:
    record = FindingRecord(scope="keys", fingerprint="f", rule_id="KG-KEY-101", severity="critical",
                           resource="binance/bot", message="bot key can withdraw", remediation="Disable it.")
    alert = alert_for(Transition("new", record), datetime.now(UTC))
    assert "Playbook: keyguard incident show KG-KEY-101" in alert.body


def test_incident_show_prints_containment_first() -> None:
    proc = subprocess.run([sys.executable, "-m", "keyguard.cli", "incident", "show", "kg-ip-101"],
                          capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.index("Contain now") < proc.stdout.index("Then")
    assert "static IP" in proc.stdout
