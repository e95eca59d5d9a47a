# METADATA
# title: Controls a vendor must offer over the keys it holds
# description: A vendor-held key must be bindable to the vendor's IPs and revocable at once.
package keyguard.vendors.key_controls

import rego.v1

import data.keyguard.lib

# METADATA
# title: A vendor accepts IP-restricted keys
# custom:
#   id: KG-VEN-102
#   severity: high
#   remediation: >-
#     Only use a vendor that publishes static egress IPs and accepts an IP-restricted key; bind the key to
#     those IPs.
deny contains finding if {
	some vendor in input.vendors
	lacks(vendor, "supports_ip_restriction")
	finding := lib.finding(
		rego.metadata.rule(),
		sprintf("vendor/%s", [vendor.name]),
		sprintf("vendor %s cannot take an IP-restricted key", [vendor.name]),
		{"supports_ip_restriction": object.get(vendor, "supports_ip_restriction", null)},
	)
}

# METADATA
# title: A vendor can revoke a key instantly
# custom:
#   id: KG-VEN-104
#   severity: high
#   remediation: >-
#     Require instant key revocation from the vendor, or plan to delete the key at the exchange as the
#     only revocation path.
deny contains finding if {
	some vendor in input.vendors
	lacks(vendor, "instant_revocation")
	finding := lib.finding(
		rego.metadata.rule(),
		sprintf("vendor/%s", [vendor.name]),
		sprintf("vendor %s cannot revoke a key instantly", [vendor.name]),
		{"instant_revocation": object.get(vendor, "instant_revocation", null)},
	)
}

# Anything but an explicit true is a missing control: unknown is never safe.
lacks(vendor, capability) if object.get(vendor, capability, null) != true
