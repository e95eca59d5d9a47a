package keyguard.infra.ingress

import rego.v1

import data.keyguard.infra.common
import data.keyguard.lib

# METADATA
# title: No security group admits traffic from the whole internet
# description: >-
#   The execution host holds every exchange key in memory; any port open to 0.0.0.0/0 or ::/0
#   (including all-protocol rules and port ranges) is an entry point for anyone.
# custom:
#   id: KG-INF-102
#   severity: critical
#   remediation: >-
#     Remove the world-open ingress; reach the host through SSM Session Manager or SSH from one /32 admin
#     address.
deny contains result if {
	some rule in common.ingress
	some cidr in rule.cidrs
	cidr in data.infra.world_cidrs
	result := lib.finding(
		rego.metadata.rule(),
		common.resource_id(rule.resource),
		sprintf(
			"%s admits %s protocol %s ports %v-%v",
			[common.resource_id(rule.resource), cidr, rule.protocol, rule.from, rule.to],
		),
		{"cidr": cidr, "protocol": rule.protocol, "from_port": rule.from, "to_port": rule.to},
	)
}
