package keyguard.vendors.accountability_test

import rego.v1

import data.keyguard.vendors.accountability
import data.keyguard.vendors.fixture_test as fixture

results(vendors) := found if {
	found := accountability.deny with input as fixture.doc(vendors)
}

ids(vendors) := {finding.id | some finding in results(vendors)}

test_accountable_vendor_is_quiet if {
	count(results([fixture.vendor])) == 0
}

test_vendor_without_audit_log_is_medium if {
	some finding in results([fixture.with_fields({"audit_log": false})])
	finding.id == "KG-VEN-103"
	finding.severity == "medium"
}

test_vendor_without_two_factor_is_high if {
	some finding in results([fixture.with_fields({"two_factor": false})])
	finding.id == "KG-VEN-105"
	finding.severity == "high"
}

test_vendor_with_undisclosed_incidents_is_medium if {
	some finding in results([fixture.with_fields({"incidents_disclosed": false})])
	finding.id == "KG-VEN-106"
	finding.severity == "medium"
}

test_vendor_with_nothing_declared_fails_every_control if {
	ids([{"name": "mystery"}]) == {"KG-VEN-103", "KG-VEN-105", "KG-VEN-106"}
}
