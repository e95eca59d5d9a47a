package keyguard.vendors.withdraw_test

import rego.v1

import data.keyguard.vendors.fixture_test as fixture
import data.keyguard.vendors.withdraw

results(vendors) := found if {
	found := withdraw.deny with input as fixture.doc(vendors)
}

test_vendor_without_withdraw_is_quiet if {
	count(results([fixture.vendor])) == 0
}

test_vendor_requiring_withdraw_is_critical if {
	some finding in results([fixture.with_fields({"requires_withdraw": true})])
	finding.id == "KG-VEN-101"
	finding.severity == "critical"
	finding.resource == "vendor/3commas"
}

test_vendor_with_unknown_withdraw_need_is_critical if {
	count(results([object.remove(fixture.vendor, ["requires_withdraw"])])) == 1
}
