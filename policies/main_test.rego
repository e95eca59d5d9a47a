package keyguard.main_test

import rego.v1

import data.keyguard.keys.fixture_test as keys_fixture
import data.keyguard.main

test_kinds_are_the_four_rule_areas if {
	main.kinds == {"keys", "execution", "infra", "vendors"}
}

test_findings_collect_every_keys_concern if {
	key := keys_fixture.with_fields(keys_fixture.key, {
		"permissions": {"read": true, "trade": true, "transfer": false, "withdraw": true},
		"ip_restricted": false,
		"storage": {"backend": "plaintext"},
		"created_at": "2026-01-01T00:00:00Z",
		"server_time_offset_ms": 7000,
	})
	found := main.findings with input as keys_fixture.doc([key])
	{finding.id | some finding in found} == {"KG-KEY-101", "KG-IP-101", "KG-STO-102", "KG-ROT-101", "KG-ROT-106"}
}

test_compliant_keys_give_an_empty_set_not_undefined if {
	found := main.findings with input as keys_fixture.doc([keys_fixture.key])
	found == set()
}

test_every_known_kind_gives_a_set if {
	every kind in main.kinds {
		found := main.findings with input as {"kind": kind, "now": keys_fixture.now}
		is_set(found)
	}
}

test_findings_only_come_from_the_requested_area if {
	vendor := {"name": "shady", "requires_withdraw": true}
	found := main.findings with input as {"kind": "keys", "now": keys_fixture.now, "keys": [], "vendors": [vendor]}
	found == set()
}

test_unknown_kind_is_undefined_so_the_engine_reports_it if {
	not main.findings with input as {"kind": "spaceships"}
}

test_every_result_has_the_contract_fields if {
	key := keys_fixture.with_fields(keys_fixture.key, {"ip_restricted": null, "allowed_ips": [{"value": "10.0.0.0/8"}]})
	found := main.findings with input as keys_fixture.doc([key])
	count(found) > 0
	every finding in found {
		object.keys(finding) == {"id", "severity", "resource", "message", "remediation", "evidence"}
		regex.match(`^KG-[A-Z]+-[0-9]{3}$`, finding.id)
		finding.severity in data.lib.severities
		finding.remediation != ""
		is_object(finding.evidence)
	}
}
