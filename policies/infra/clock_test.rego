package keyguard.infra.clock_test

import rego.v1

import data.keyguard.infra.clock

test_impossible_infra_clock_is_medium if {
	some finding in clock.deny with input as {"kind": "infra", "now": "2026-13-01T00:00:00Z", "resources": []}
	finding.id == "KG-INF-113"
	finding.severity == "medium"
}

test_valid_or_absent_infra_clock_is_quiet if {
	count(clock.deny) == 0 with input as {"kind": "infra", "now": "2026-11-25T00:00:00Z", "resources": []}
	count(clock.deny) == 0 with input as {"kind": "infra", "resources": []}
}
