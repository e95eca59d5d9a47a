package keyguard.vendors.key_controls_test

import rego.v1

import data.keyguard.vendors.fixture_test as fixture
import data.keyguard.vendors.key_controls

results(vendors) := found if {
	found := key_controls.deny with input as fixture.doc(vendors)
}

ids(vendors) := {finding.id | some finding in results(vendors)}

test_vendor_with_key_controls_is_quiet if {
	count(results([fixture.vendor])) == 0
}

test_vendor_without_ip_restriction_is_high if {
	some finding in results([fixture.with_fields({"supports_ip_restriction": false})])
	finding.id == "KG-VEN-102"
	finding.severity == "high"
}

test_vendor_without_instant_revocation_is_high if {
	some finding in results([fixture.with_fields({"instant_revocation": false})])
	finding.id == "KG-VEN-104"
	finding.severity == "high"
}

test_unknown_key_controls_are_findings if {
	vendor := fixture.with_fields({"supports_ip_restriction": null, "instant_revocation": null})
	ids([vendor]) == {"KG-VEN-102", "KG-VEN-104"}
}
