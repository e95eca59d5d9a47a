package keyguard.infra.key_binding

import rego.v1

import data.keyguard.infra.common
import data.keyguard.lib

# METADATA
# title: Every exchange key is bound only to the live Elastic IP
# description: >-
#   Keys are IP-bound to the execution host's static address. After a migration or a released EIP, a key
#   still bound to the old address either stops working or, worse, stays usable from an address that is
#   no longer ours.
# custom:
#   id: KG-INF-111
#   severity: high
#   remediation: >-
#     Re-bind the key at the exchange to the host's current Elastic IP (stack output staticIp) and remove
#     the old address.
deny contains result if {
	some binding in object.get(input, "key_bindings", [])
	stray := {ip | some ip in binding.ips; not ip in common.live_eips}
	problem := binding_problem(binding, stray)
	result := lib.finding(
		rego.metadata.rule(),
		sprintf("key/%s", [binding.key]),
		sprintf("key %s %s", [binding.key, problem]),
		{"bound_ips": binding.ips, "live_eips": sort(common.live_eips)},
	)
}

binding_problem(_, stray) := problem if {
	count(stray) > 0
	problem := sprintf("is bound to %s, which is not a live Elastic IP of the host", [concat(", ", sort(stray))])
}

binding_problem(binding, _) := "is bound to no IP address, so it is not tied to the host's Elastic IP" if {
	count(binding.ips) == 0
}
