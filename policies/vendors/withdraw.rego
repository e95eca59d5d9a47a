# METADATA
# title: Third-party tools never hold a key that can withdraw
# description: A vendor breach must not be able to empty the account.
package keyguard.vendors.withdraw

import rego.v1

import data.keyguard.lib

# METADATA
# title: A vendor does not require withdrawal permission
# custom:
#   id: KG-VEN-101
#   severity: critical
#   remediation: Do not give this vendor a key; use a vendor that works with trade-only (or read-only) keys.
deny contains finding if {
	some vendor in input.vendors
	required := object.get(vendor, "requires_withdraw", null)
	required != false
	finding := lib.finding(
		rego.metadata.rule(),
		sprintf("vendor/%s", [vendor.name]),
		sprintf("vendor %s requires withdrawal permission (requires_withdraw is %v)", [vendor.name, required]),
		{"requires_withdraw": required},
	)
}
