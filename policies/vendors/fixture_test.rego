# METADATA
# title: Shared inputs for the vendors rule tests
package keyguard.vendors.fixture_test

import rego.v1

vendor := {
	"name": "3commas",
	"requires_withdraw": false,
	"supports_ip_restriction": true,
	"audit_log": true,
	"instant_revocation": true,
	"two_factor": true,
	"incidents_disclosed": true,
}

doc(vendors) := {"kind": "vendors", "vendors": vendors}

# The vendor with some fields replaced.
with_fields(fields) := object.union(vendor, fields)
