package keyguard.infra.kms_rotation

import rego.v1

import data.keyguard.infra.common
import data.keyguard.lib

# METADATA
# title: Customer-managed KMS keys rotate automatically
# description: Rotation bounds how much ciphertext one key version protects; AWS-managed keys rotate on their own.
# custom:
#   id: KG-INF-107
#   severity: medium
#   remediation: Set enableKeyRotation to true on the KMS key.
deny contains result if {
	some key in common.of_type("aws:kms/key:Key")
	common.prop(key, "keyManager") != "AWS"
	not common.prop(key, "enableKeyRotation") == true
	result := lib.finding(
		rego.metadata.rule(),
		common.resource_id(key),
		sprintf("KMS key %s does not rotate automatically", [key.name]),
		{"enableKeyRotation": common.prop(key, "enableKeyRotation")},
	)
}
