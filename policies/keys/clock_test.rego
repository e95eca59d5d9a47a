package keyguard.keys.clock_test

import rego.v1

import data.keyguard.keys.clock
import data.keyguard.keys.fixture_test as fixture

results(keys) := found if {
	found := clock.deny with input as fixture.doc(keys)
}

with_offset(offset) := fixture.with_fields(fixture.key, {"server_time_offset_ms": offset})

test_small_clock_offset_is_quiet if {
	count(results([fixture.key, with_offset(-4900), with_offset(999)])) == 0
}

test_host_clock_ahead_of_exchange_is_high if {
	some finding in results([with_offset(1000)])
	finding.id == "KG-ROT-106"
	finding.severity == "high"
	finding.evidence == {"server_time_offset_ms": 1000}
}

test_host_clock_behind_beyond_recv_window_is_high if {
	some finding in results([with_offset(-5001)])
	finding.id == "KG-ROT-106"
}

test_unmeasured_offset_is_quiet if {
	count(results([with_offset(null)])) == 0
}

test_impossible_inventory_clock_is_high if {
	some finding in clock.deny with input as {"kind": "keys", "now": "2026-02-30T00:00:00Z", "keys": [fixture.key]}
	finding.id == "KG-ROT-107"
	finding.severity == "high"
	finding.evidence == {"now": "2026-02-30T00:00:00Z"}
}

test_valid_inventory_clock_is_quiet if {
	count(results([fixture.key])) == 0
}
