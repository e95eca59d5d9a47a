# METADATA
# title: A vendor's accountability for the accounts that hold keys
# description: Who did what must be traceable, vendor accounts must resist takeover, and past breaches must be known.
package keyguard.vendors.accountability

import rego.v1

import data.keyguard.lib

# METADATA
# title: A vendor keeps an audit log of actions taken with the key
# custom:
#   id: KG-VEN-103
#   severity: medium
#   remediation: >-
#     Prefer a vendor with an exportable audit log; otherwise reconcile its actions from the exchange's
#     trade history.
deny contains finding if {
	some vendor in input.vendors
	lacks(vendor, "audit_log")
	finding := lib.finding(
		rego.metadata.rule(),
		sprintf("vendor/%s", [vendor.name]),
		sprintf("vendor %s keeps no audit log", [vendor.name]),
		{"audit_log": object.get(vendor, "audit_log", null)},
	)
}

# METADATA
# title: A vendor account is protected by two-factor authentication
# custom:
#   id: KG-VEN-105
#   severity: high
#   remediation: Enable two-factor authentication on the vendor account, or do not give the vendor a key.
deny contains finding if {
	some vendor in input.vendors
	lacks(vendor, "two_factor")
	finding := lib.finding(
		rego.metadata.rule(),
		sprintf("vendor/%s", [vendor.name]),
		sprintf("vendor %s account has no two-factor authentication", [vendor.name]),
		{"two_factor": object.get(vendor, "two_factor", null)},
	)
}

# METADATA
# title: A vendor has disclosed its past security incidents
# custom:
#   id: KG-VEN-106
#   severity: medium
#   remediation: >-
#     Ask the vendor for its incident history and post-mortems; treat a vendor that will not disclose as
#     breached.
deny contains finding if {
	some vendor in input.vendors
	lacks(vendor, "incidents_disclosed")
	finding := lib.finding(
		rego.metadata.rule(),
		sprintf("vendor/%s", [vendor.name]),
		sprintf("vendor %s has not disclosed its past incidents", [vendor.name]),
		{"incidents_disclosed": object.get(vendor, "incidents_disclosed", null)},
	)
}

# Anything but an explicit true is a missing control: unknown is never safe.
lacks(vendor, capability) if object.get(vendor, capability, null) != true
