package keyguard.infra.eip

import rego.v1

import data.keyguard.infra.common
import data.keyguard.lib

# METADATA
# title: Every execution host has an associated Elastic IP
# description: >-
#   Exchange keys are bound to one static IP; a host without an associated Elastic IP egresses from an
#   address that changes on stop/start, so every key bound to it breaks or must be re-bound loosely.
# custom:
#   id: KG-INF-101
#   severity: high
#   remediation: >-
#     Associate an aws.ec2.Eip with the instance (Eip.instance or EipAssociation) and bind keys to that
#     address.
deny contains result if {
	some host in common.of_type("aws:ec2/instance:Instance")
	associated := {host.id |
		some e in common.of_type("aws:ec2/eip:Eip")
		host.id in common.eip_instances(e)
	}
	count(associated) == 0
	result := lib.finding(
		rego.metadata.rule(),
		common.resource_id(host),
		sprintf("execution host %s has no associated Elastic IP, so its egress address is not static", [host.name]),
		{"instance_id": host.id},
	)
}
