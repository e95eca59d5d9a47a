# METADATA
# title: IP allowlist of exchange API keys
# description: >-
#   A leaked key must be useless from anywhere but the execution host: every key is bound to single
#   addresses that an authorized host owns, each with a reason, and the binding is verified by a probe.
package keyguard.keys.ip_allowlist

import rego.v1

import data.keyguard.lib

# METADATA
# title: A key is restricted to an IP allowlist at the exchange
# custom:
#   id: KG-IP-101
#   severity: critical
#   remediation: Enable IP restriction on the key at the exchange and allow only the execution host's static IP.
deny contains finding if {
	some key in input.keys
	restricted := object.get(key, "ip_restricted", null)
	restricted != true
	finding := lib.finding(
		rego.metadata.rule(),
		lib.key_resource(key),
		sprintf("key %s is not IP-restricted (ip_restricted is %v)", [key.id, restricted]),
		{"ip_restricted": restricted},
	)
}

# METADATA
# title: A key is restricted to an IP allowlist at the exchange
# description: >-
#   A key that says it is restricted but lists no address claims what nobody can check: the allowlist
#   could be empty (any address) or anything else.
# custom:
#   id: KG-IP-101
#   severity: critical
#   remediation: Enable IP restriction on the key at the exchange and allow only the execution host's static IP.
deny contains finding if {
	some key in input.keys
	key.ip_restricted == true
	count(entries(key)) == 0
	finding := lib.finding(
		rego.metadata.rule(),
		lib.key_resource(key),
		sprintf(
			"key %s says it is IP-restricted but lists no allowed address, so its restriction cannot be checked",
			[key.id],
		),
		{"ip_restricted": true, "allowed_ips": object.get(key, "allowed_ips", null)},
	)
}

# METADATA
# title: Every allowlist entry is one address, not a range or wildcard
# custom:
#   id: KG-IP-102
#   severity: high
#   remediation: Replace the range with the single static address (/32 or /128) of the execution host.
deny contains finding if {
	some key in input.keys
	some entry in entries(key)
	not lib.single_address(entry.value)
	finding := lib.finding(
		rego.metadata.rule(),
		entry_resource(key, entry),
		sprintf("key %s allows %v, which is not one address", [key.id, entry.value]),
		{"allowed_ip": entry},
	)
}

# METADATA
# title: Every allowed address belongs to an authorized host
# custom:
#   id: KG-IP-103
#   severity: high
#   remediation: >-
#     Remove the address from the key's allowlist (it is stale, e.g. after a host migration) or register
#     the host that owns it as authorized.
deny contains finding if {
	some key in input.keys
	some entry in entries(key)
	lib.single_address(entry.value)
	not authorized(entry.value)
	finding := lib.finding(
		rego.metadata.rule(),
		entry_resource(key, entry),
		sprintf("key %s allows %s, which no authorized host owns", [key.id, entry.value]),
		{"allowed_ip": entry, "authorized_ips": sort(authorized_ips)},
	)
}

# METADATA
# title: Every allowed address has a documented reason
# custom:
#   id: KG-IP-104
#   severity: low
#   remediation: Add a reason to the allowlist entry saying which host owns the address and why it needs the key.
deny contains finding if {
	some key in input.keys
	some entry in entries(key)
	not documented(entry)
	finding := lib.finding(
		rego.metadata.rule(),
		entry_resource(key, entry),
		sprintf("key %s allows %v without a documented reason", [key.id, entry.value]),
		{"allowed_ip": entry},
	)
}

# METADATA
# title: An IP binding is verified by a probe or reported by the exchange
# custom:
#   id: KG-IP-105
#   severity: medium
#   remediation: >-
#     Run the IP-binding probe from the host (keyguard keys check) so the binding is verified, not only
#     declared.
deny contains finding if {
	some key in input.keys
	key.ip_restricted == true
	source := object.get(key, "ip_binding_source", null)
	not source in data.keys.ip.verified_binding_sources
	finding := lib.finding(
		rego.metadata.rule(),
		lib.key_resource(key),
		sprintf("IP binding of key %s is only %v, not verified by a probe", [key.id, source]),
		{"ip_binding_source": source},
	)
}

entry_resource(key, entry) := sprintf("%s/ip/%v", [lib.key_resource(key), entry.value])

# A missing or null allowlist lists nothing.
entries(key) := [entry | some entry in object.get(key, "allowed_ips", [])]

authorized_ips contains host.ip if {
	some host in object.get(input, "hosts", [])
	host.authorized == true
	is_string(host.ip)
}

# Compared canonically: 203.0.113.10, 203.0.113.10/32 and ::ffff:203.0.113.10 are one address.
authorized(value) if {
	some ip in authorized_ips
	lib.single_address(ip)
	lib.same_address(ip, value)
}

documented(entry) if trim_space(entry.reason) != ""
