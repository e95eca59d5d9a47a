package keyguard.infra.volumes

import rego.v1

import data.keyguard.infra.common
import data.keyguard.lib

# METADATA
# title: Instance root volumes are encrypted
# description: >-
#   Keys fetched from the vault end up in memory, swap and logs on the root volume; an unencrypted volume
#   or snapshot leaks them to anyone who can read the snapshot.
# custom:
#   id: KG-INF-105
#   severity: high
#   remediation: >-
#     Set rootBlockDevice.encrypted to true (with the vault's KMS key or the EBS default key) and replace
#     the instance.
deny contains result if {
	some host in common.of_type("aws:ec2/instance:Instance")

	# A missing or null rootBlockDevice is an unknown volume, which is never taken as encrypted.
	not common.prop_path(host, ["rootBlockDevice", "encrypted"]) == true
	result := lib.finding(
		rego.metadata.rule(),
		common.resource_id(host),
		sprintf("instance %s has an unencrypted root volume", [host.name]),
		{"rootBlockDevice": common.prop(host, "rootBlockDevice")},
	)
}
