package keyguard.infra.key_binding

import rego.v1

import data.keyguard.infra.common
import data.keyguard.lib

# METADATA
# title: Every exchange key is bound only to the live Elastic IP
# description: >-
#   Keys are IP-bound to the execution host's static address (compared canonically: a /32 or /128 of it,
#   or any spelling of it, is that address). After a migration or a released EIP, a key
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
	stray := {ip | some ip in ips(binding); not live_eip(ip)}
	problem := binding_problem(binding, stray)
	result := lib.finding(
		rego.metadata.rule(),
		sprintf("key/%s", [binding.key]),
		sprintf("key %s %s", [binding.key, problem]),
		{"bound_ips": ips(binding), "live_eips": sort(common.live_eips)},
	)
}

binding_problem(_, stray) := problem if {
	count(stray) > 0
	problem := sprintf("is bound to %s, which is not a live Elastic IP of the host", [concat(", ", sort(stray))])
}

binding_problem(binding, _) := "is bound to no IP address, so it is not tied to the host's Elastic IP" if {
	count(ips(binding)) == 0
}

# A missing or null list binds nothing.
ips(binding) := [ip | some ip in object.get(binding, "ips", [])]

# That address exactly, in any spelling (203.0.113.75, 203.0.113.75/32); a range holding it is not it.
live_eip(ip) if {
	lib.single_address(ip)
	some eip in common.live_eips
	lib.same_address(ip, eip)
}
