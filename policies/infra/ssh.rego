package keyguard.infra.ssh

import rego.v1

import data.keyguard.infra.common
import data.keyguard.lib

# METADATA
# title: SSH is reachable only from one /32 admin address
# description: >-
#   Any ingress reaching the SSH port (a range containing it, or all protocols) must come from exactly one
#   IPv4 /32 admin address; wider ranges, IPv6 ranges and peer security groups widen who can try to log in.
# custom:
#   id: KG-INF-103
#   severity: high
#   remediation: >-
#     Restrict SSH ingress to the single admin address (x.x.x.x/32), or drop it and use SSM Session
#     Manager.
deny contains result if {
	some rule in reaching_rules
	some source in array.concat(rule.cidrs, rule.peer_groups)
	not admin_address(source)
	result := lib.finding(
		rego.metadata.rule(),
		common.resource_id(rule.resource),
		sprintf(
			"%s lets %s reach SSH port %d; only one /32 admin address may",
			[common.resource_id(rule.resource), source, data.infra.ssh_port],
		),
		{"source": source},
	)
}

# METADATA
# title: SSH is reachable only from one /32 admin address
# custom:
#   id: KG-INF-103
#   severity: high
#   remediation: >-
#     Restrict SSH ingress to the single admin address (x.x.x.x/32), or drop it and use SSM Session
#     Manager.
deny contains result if {
	some group in {rule.group | some rule in reaching_rules}
	sources := {source_key(source) |
		some rule in reaching_rules
		rule.group == group
		some source in array.concat(rule.cidrs, rule.peer_groups)
	}
	count(sources) > data.infra.max_ssh_admin_sources
	some rule in reaching_rules
	rule.group == group
	result := lib.finding(
		rego.metadata.rule(),
		common.resource_id(rule.resource),
		sprintf(
			"security group %v lets %d sources reach SSH port %d; at most %d admin address may",
			[group, count(sources), data.infra.ssh_port, data.infra.max_ssh_admin_sources],
		),
		{"sources": sort(sources)},
	)
}

# Normalised ingress rules (see common.ingress) that reach the SSH port.
reaching_rules contains rule if {
	some rule in common.ingress
	common.reaches_port(rule, data.infra.ssh_port)
}

# One IPv4 address, in any spelling (198.51.100.7/32, 198.51.100.7, ::ffff:198.51.100.7).
admin_address(source) if {
	lib.single_address(source)
	not contains(lib.cidr(source), ":")
	lib.prefix_length(lib.cidr(source)) == data.infra.ssh_admin_prefix_length
}

# Sources compared canonically, so one address written two ways is one source.
source_key(source) := canonical if canonical := lib.cidr(source)

else := source
