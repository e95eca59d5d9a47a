package keyguard.execution.clock_test

import rego.v1

import data.keyguard.execution.clock
import data.keyguard.execution.fixture_test as fixture
import data.keyguard.execution.kill_switch

test_valid_worker_clock_is_quiet if {
	count(clock.deny) == 0 with input as fixture.doc
}

test_impossible_worker_clock_is_high if {
	some finding in clock.deny with input as fixture.with_doc({"now": "2026-02-30T00:00:00Z"})
	finding.id == "KG-EXE-113"
	finding.severity == "high"
	finding.resource == "worker-1/now"
}

test_impossible_worker_clock_never_passes_a_drill_by_the_wall_clock if {
	doc := fixture.with_doc({"now": "2026-02-30T00:00:00Z"})
	"KG-EXE-106" in {f.id | some f in kill_switch.deny} with input as doc
}
