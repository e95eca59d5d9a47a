package keyguard.vendors.clock_test

import rego.v1

import data.keyguard.vendors.clock
import data.keyguard.vendors.fixture_test as fixture

test_impossible_vendors_clock_is_medium if {
	some finding in clock.deny with input as object.union(fixture.doc([fixture.vendor]), {"now": "2026-02-29T00:00:00Z"})
	finding.id == "KG-VEN-107"
	finding.severity == "medium"
}

test_valid_or_absent_vendors_clock_is_quiet if {
	count(clock.deny) == 0 with input as fixture.doc([fixture.vendor])
	count(clock.deny) == 0 with input as object.union(fixture.doc([fixture.vendor]), {"now": "2028-02-29T00:00:00Z"})
}
