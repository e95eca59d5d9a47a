package keyguard.execution.kill_switch_test

import rego.v1

import data.keyguard.execution.fixture_test as fixture
import data.keyguard.execution.kill_switch

results(doc) := found if {
	found := kill_switch.deny with input as doc
}

ids(doc) := {finding.id | some finding in results(doc)}

test_enabled_and_recently_tested_kill_switch_is_quiet if {
	count(results(fixture.doc)) == 0
}

test_disabled_or_missing_kill_switch_is_high if {
	disabled := {"enabled": false, "last_tested_at": "2026-11-20T00:00:00Z"}
	some finding in results(fixture.with_config({"kill_switch": disabled}))
	finding.id == "KG-EXE-105"
	finding.severity == "high"
	"KG-EXE-105" in ids(fixture.without_config(["kill_switch"]))
}

test_never_tested_kill_switch_is_high if {
	some finding in results(fixture.with_config({"kill_switch": {"enabled": true, "last_tested_at": null}}))
	finding.id == "KG-EXE-106"
	finding.severity == "high"
}

test_kill_switch_tested_too_long_ago_is_high if {
	"KG-EXE-106" in ids(fixture.with_config({"kill_switch": {"enabled": true, "last_tested_at": "2026-09-01T00:00:00Z"}}))
}

test_kill_switch_test_in_the_future_is_not_a_test if {
	"KG-EXE-106" in ids(fixture.with_config({"kill_switch": {"enabled": true, "last_tested_at": "2027-01-01T00:00:00Z"}}))
}
