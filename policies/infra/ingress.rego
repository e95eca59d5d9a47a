package keyguard.infra.ingress

import rego.v1

import data.keyguard.infra.common
import data.keyguard.lib

# METADATA
# title: No security group admits traffic from the whole internet
# description: >-
#   The execution host holds every exchange key in memory; any port open to everywhere (0.0.0.0/0, ::/0 in
#   any spelling, an IPv4-mapped ::ffff:0:0/96, ranges that add up to everything, or a source that is no
#   valid CIDR) is an entry point for anyone, including all-protocol rules and port ranges. The VPC's default
#   security group must admit nothing: anything launched without a group gets it, so its ingress counts as open.
# custom:
#   id: KG-INF-102
#   severity: critical
#   remediation: >-
#     Remove the world-open ingress; reach the host through SSM Session Manager or SSH from one /32 admin
#     address.
deny contains result if {
	some rule in common.ingress
	some problem in open_sources(rule)
	result := lib.finding(
		rego.metadata.rule(),
		common.resource_id(rule.resource),
		sprintf(
			"%s admits %s protocol %s ports %v-%v",
			[common.resource_id(rule.resource), problem, rule.protocol, rule.from, rule.to],
		),
		{"cidr": problem, "protocol": rule.protocol, "from_port": rule.from, "to_port": rule.to},
	)
}

open_sources(rule) := (({cidr |
	some cidr in rule.cidrs
	lib.everywhere(cidr)
} | {sprintf("%v (not a valid CIDR, so who it admits is unknown)", [cidr]) |
	some cidr in rule.cidrs
	not lib.cidr(cidr)
}) | {sprintf("everywhere (%s together)", [concat(", ", rule.cidrs)]) |
	count(rule.cidrs) > 1
	not any_everywhere(rule.cidrs)
	lib.everywhere_together(rule.cidrs)
}) | {sprintf("%s through the VPC's default security group", [source]) |
	rule.default_group
	some source in array.concat(rule.cidrs, rule.peer_groups)
	not lib.everywhere(source)
}

any_everywhere(cidrs) if {
	some cidr in cidrs
	lib.everywhere(cidr)
}
